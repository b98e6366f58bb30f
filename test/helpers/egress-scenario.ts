// Run inside a private network namespace, the "pod" (see test/integration/egress.test.ts). This script
// starts itself again as `outside` in a second, nested namespace, joined to the pod by a veth pair:
// 10.203.0.1 there is a host outside the mesh (a private address, as many egress targets are), and
// 10.203.0.2 is the pod's own address. The pod's loopback also holds the cloud metadata addresses
// 169.254.169.254 and 169.254.170.2, where a trap counts every connection. Sidecars with different
// egress.allow lists are asked to reach them by many spellings; one JSON line tells what happened.
import { spawn, spawnSync } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { parseSamples } from './prometheus.ts';
import { header, rawHttp } from './raw-http.ts';
import { NODE, SidecarProcess, sidecarConfig } from './sidecar-process.ts';
import { until } from './wait.ts';

const EXTERNAL = '10.203.0.1';
const OWN = '10.203.0.2';

if (process.argv[2] === 'outside') {
  // The host outside: an HTTP server; what it saw is printed when stdin closes.
  const seen: string[] = [];
  const external = createHttpServer((req, res) => {
    seen.push(`${req.method} ${req.url} host=${req.headers.host}`);
    res.setHeader('x-external', 'yes');
    res.end('from outside');
  });
  await new Promise<void>((resolve) => external.listen(0, '0.0.0.0', resolve));
  process.stdout.write(`${JSON.stringify({ port: (external.address() as AddressInfo).port })}\n`);
  process.stdin.resume().once('end', () => {
    process.stdout.write(`${JSON.stringify({ seen })}\n`);
    process.exit(0);
  });
} else {
  await pod();
}

async function pod(): Promise<void> {
  const outside = spawn('unshare', ['-n', NODE, fileURLToPath(import.meta.url), 'outside'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: outside.stdout! })[Symbol.asyncIterator]();
  const { port } = JSON.parse((await lines.next()).value as string) as { port: number };
  // `unshare` execs node in the new namespace: the child's pid names it.
  sh(`ip link add veth-pod type veth peer name veth-out netns ${outside.pid} && ip addr add ${OWN}/24 dev veth-pod && ip link set veth-pod up`);
  sh(`nsenter -t ${outside.pid} -n sh -c 'ip link set lo up && ip addr add ${EXTERNAL}/24 dev veth-out && ip link set veth-out up'`);
  await until(async () => (await request(`http://${EXTERNAL}:${port}/ready`).then((r) => r.body.text().then(() => true), () => false)), { ms: 5_000, message: 'the outside namespace answers' });

  // The trap: every address of the pod (loopback, metadata, its own), both families.
  let trapped = 0;
  const trap = createTcpServer((socket) => { trapped++; socket.destroy(); });
  await new Promise<void>((resolve) => trap.listen(0, '::', resolve));
  const trapPort = (trap.address() as AddressInfo).port;

  const start = (allow: string[]) => SidecarProcess.start({
    config: sidecarConfig({ service: 'web', appPort: 1, extra: { egress: { allow }, log: { level: 'debug' } } }),
  });
  const listed = await start([EXTERNAL, 'localhost', '169.254.169.254']);
  const any = await start(['*']);
  const ranged = await start(['*.example', '10.203.0.0/24']);

  const call = async (sidecar: SidecarProcess, authority: string, path: string) => {
    const response = await request(`${sidecar.outboundUrl}${path}`, { headers: { host: authority } });
    return { status: response.statusCode, code: response.headers['mcp-mesh-error'] ?? null, external: response.headers['x-external'] ?? null, body: await response.body.text() };
  };
  /** GET in absolute form and CONNECT for each spelling; the ones not refused with 403 EGRESS_NOT_ALLOWED. */
  const notRefused = async (sidecar: SidecarProcess, hosts: string[], targetPort: number) => {
    const outcomes: string[] = [];
    for (const host of hosts) {
      const authority = `${host}:${targetPort}`;
      for (const lines of [[`GET http://${authority}/ HTTP/1.1`, `Host: ${authority}`, 'Connection: close'], [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`]]) {
        // Should a tunnel open, the request inside makes the far end answer and close it.
        const outcome = await rawHttp(sidecar.ports.outbound, lines, lines[0]!.startsWith('CONNECT') ? 'GET /through-tunnel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' : '').then(
          (response) => `${response.status} ${header(response, 'mcp-mesh-error')[0] ?? ''}`,
          (err: Error) => `no answer (${err.message.slice(0, 60)})`);
        if (outcome !== '403 EGRESS_NOT_ALLOWED') outcomes.push(`${lines[0]} → ${outcome}`);
      }
    }
    return outcomes;
  };

  const results = {
    allowed: await call(listed, `${EXTERNAL}:${port}`, '/hello?x=1'),
    notListed: await call(listed, 'api.partner.example', '/x'),
    loopbackName: await call(listed, `localhost:${port}`, '/x'),
    metadata: await call(listed, '169.254.169.254', '/latest/meta-data/'),
    // With "*": metadata in every spelling, loopback carried in IPv6 (NAT64, 6to4, compatible), the pod's own address.
    anyNotRefused: await notRefused(any, [
      '169.254.169.254', '[::ffff:a9fe:a9fe]', '[::ffff:169.254.169.254]', '[0:0:0:0:0:ffff:a9fe:a9fe]', '2852039166', '0xa9.0xfe.0xa9.0xfe',
      '0251.0376.0251.0376', '169.254.43518', '169.254.169.254.', '[64:ff9b::a9fe:a9fe]', '[2002:a9fe:a9fe::1]', '[::a9fe:a9fe]',
      '169.254.170.2', '[::ffff:a9fe:aa02]', '[64:ff9b::7f00:1]', '[2002:7f00:1::]', '[::127.0.0.1]', OWN, '[::ffff:acb:2]',
    ], trapPort),
    // With "*" alone a private address is not named: the outside host is refused however it is spelled.
    privateNotNamed: await notRefused(any, [EXTERNAL, '[::ffff:10.203.0.1]', '0xa.0xcb.0.1', '181075969'], port),
    // A CIDR entry names it: reached in another spelling, by GET and through a CONNECT tunnel.
    ranged: await call(ranged, `[::ffff:acb:1]:${port}`, '/ranged'),
    rangedTunnel: (await rawHttp(ranged.ports.outbound, [`CONNECT 0xa.0xcb.0.1:${port} HTTP/1.1`, `Host: 0xa.0xcb.0.1:${port}`],
      `GET /tunnel HTTP/1.1\r\nHost: ${EXTERNAL}:${port}\r\nConnection: close\r\n\r\n`)).body.toString('latin1'),
    trapped,
    allowedLog: listed.logs.find((l) => l.direction === 'outbound' && l.status === 200)?.egress ?? null,
    rangedTunnelLog: ranged.logs.find((l) => l.direction === 'outbound' && l.method === 'CONNECT')?.egress ?? null,
  };
  const metrics = await (await request(`http://127.0.0.1:${listed.ports.admin}/metrics`)).body.text();
  await Promise.all([listed.stop(), any.stop(), ranged.stop()]);
  trap.close();
  outside.stdin!.end();
  const { seen } = JSON.parse((await lines.next()).value as string) as { seen: string[] };
  process.stdout.write(`${JSON.stringify({ ...results, seen: seen.filter((s) => !s.startsWith('GET /ready')), metricsLine: parseSamples(metrics, 'mcp_requests_total').find((m) => m.labels.service?.startsWith('egress:'))?.text ?? null })}\n`);
}

function sh(command: string): void {
  const run = spawnSync('sh', ['-c', command], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${command}: ${run.stderr}`);
}
