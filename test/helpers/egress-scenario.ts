// Run inside a private network namespace (see test/integration/egress.test.ts): 10.203.0.1 is an
// address of this namespace only, standing for a host outside the mesh. Starts an "external" HTTP
// server there and a sidecar whose egress.allow lists it, makes the calls, and prints one JSON line
// with what each call got.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { SidecarProcess, sidecarConfig } from './sidecar-process.ts';

const EXTERNAL = '10.203.0.1';
const seen: string[] = [];
const external = createServer((req, res) => {
  seen.push(`${req.method} ${req.url} host=${req.headers.host}`);
  res.setHeader('x-external', 'yes');
  res.end('from outside');
});
await new Promise<void>((resolve) => external.listen(0, EXTERNAL, resolve));
const port = (external.address() as AddressInfo).port;

const sidecar = await SidecarProcess.start({
  config: sidecarConfig({ service: 'web', appPort: 1, extra: { egress: { allow: [EXTERNAL, 'localhost', '169.254.169.254'] } } }),
});
const call = async (authority: string, path: string) => {
  const response = await request(`${sidecar.outboundUrl}${path}`, { headers: { host: authority } });
  return { status: response.statusCode, code: response.headers['mcp-mesh-error'] ?? null, external: response.headers['x-external'] ?? null, body: await response.body.text() };
};
const results = {
  allowed: await call(`${EXTERNAL}:${port}`, '/hello?x=1'),
  notListed: await call('api.partner.example', '/x'),
  loopbackName: await call(`localhost:${port}`, '/x'),
  metadata: await call('169.254.169.254', '/latest/meta-data/'),
  seen,
};
const metrics = await (await request(`http://127.0.0.1:${sidecar.ports.admin}/metrics`)).body.text();
await sidecar.stop();
external.close();
process.stdout.write(`${JSON.stringify({ ...results, metricsLine: metrics.split('\n').find((l) => l.startsWith('mcp_requests_total') && l.includes('egress:')) ?? null })}\n`);
