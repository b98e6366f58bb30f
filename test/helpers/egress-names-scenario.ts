// Run inside private network and mount namespaces (see test/integration/egress-names.test.ts), where
// /etc/hosts is a test file bind-mounted over the machine's: the system resolver the sidecar uses
// (getaddrinfo, as Node's dns.lookup) answers the names below with loopback and metadata addresses,
// as a hostile or stale DNS record would. A trap listens on every one of those addresses and counts
// connections; a sidecar with egress.allow ["*"] is asked to reach each name. One JSON line tells
// what happened.
import { createServer, type Server } from 'node:net';
import { header, rawHttp } from './raw-http.ts';
import { SidecarProcess, sidecarConfig } from './sidecar-process.ts';

/** Name → the address the test hosts file gives it, from the test (EGRESS_TEST_NAMES, JSON). */
const names = JSON.parse(process.env.EGRESS_TEST_NAMES ?? '{}') as Record<string, string>;
/** The trap listens on each of them; 0.0.0.0 is not listened on: a connection to it reaches 127.0.0.1. */
const trapAddresses = [...new Set(Object.values(names).filter((a) => a !== '0.0.0.0'))];

export interface NamesResult {
  /** Per request: what came back (status, mcp-mesh-error, the error's message). */
  answers: { name: string; request: string; status: number; code: string; message: string }[];
  trapped: number;
  refusalLog: unknown;
}

const result = await run();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);

async function run(): Promise<NamesResult> {
  const trap = { connections: 0 };
  const port = await listenEverywhere(trap);
  const sidecar = await SidecarProcess.start({ config: sidecarConfig({ service: 'web', appPort: 1, extra: { egress: { allow: ['*'] } } }) });
  try {
    const answers: NamesResult['answers'] = [];
    const ask = async (name: string, lines: string[]) => {
      const response = await rawHttp(sidecar.ports.outbound, lines);
      const body = response.body.toString();
      let message = body;
      try { message = (JSON.parse(body) as { error: { message: string } }).error.message; } catch { /* not a mesh error: kept as it is */ }
      answers.push({ name, request: lines[0]!, status: response.status, code: header(response, 'mcp-mesh-error')[0] ?? '', message });
    };
    const since = sidecar.mark();
    for (const name of Object.keys(names)) {
      for (const spelling of [name, name.toUpperCase()]) {
        const authority = `${spelling}:${port}`;
        await ask(name, [`GET http://${authority}/ HTTP/1.1`, `Host: ${authority}`, 'Connection: close']);
        await ask(name, ['GET / HTTP/1.1', `Host: ${authority}`, 'Connection: close']);
        await ask(name, [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`]);
      }
    }
    const refusalLog = await sidecar.waitForLog((l) => l.direction === 'outbound' && l.code === 'EGRESS_NOT_ALLOWED'
      && (l.egress as { host?: string } | undefined)?.host === 'metadata.test', { since, timeoutMs: 5_000 }).catch(() => undefined);
    return { answers, trapped: trap.connections, refusalLog: refusalLog?.egress ?? null };
  } finally {
    await sidecar.stop();
  }
}

/** One port free on every trap address, each listener counting (and closing) what connects. */
async function listenEverywhere(trap: { connections: number }): Promise<number> {
  for (let tries = 0; tries < 10; tries++) {
    const servers: Server[] = [];
    try {
      let port = 0;
      for (const host of trapAddresses) {
        const server = createServer((socket) => { trap.connections++; socket.destroy(); });
        servers.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, host, () => resolve());
        });
        port = (server.address() as { port: number }).port;
      }
      return port;
    } catch {
      for (const server of servers) server.close(); // that port is taken on one of them: try another
    }
  }
  throw new Error('no port free on every trap address');
}
