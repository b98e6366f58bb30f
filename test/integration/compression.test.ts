// Per-message compression between two real sidecar processes, proven on the wire: the caller's link
// to the callee runs through a byte-counting TCP relay, and the same large, repetitive call is sent
// on a route with compression and on one without.
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startTestApp, type TestApp } from '../helpers/apps.ts';
import { policyFolder, removeDir } from '../helpers/async.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

/** A TCP relay to `target` that counts the bytes each way. */
async function countingRelay(target: number): Promise<{ port: number; up: () => number; down: () => number; close: () => Promise<void> }> {
  let up = 0;
  let down = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)); }
    client.on('data', (chunk: Buffer) => { up += chunk.length; });
    upstream.on('data', (chunk: Buffer) => { down += chunk.length; });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port, up: () => up, down: () => down,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

const POLICIES = `apiVersion: mcp-mesh.io/v1
kind: Policy
metadata: { name: payments }
spec:
  service: payments
  compression: { algorithm: lz4, minBytes: 1024 }
---
apiVersion: mcp-mesh.io/v1
kind: Policy
metadata: { name: payments-plain }
spec:
  service: payments
  route: { name: plain, match: { path: { prefix: /plain } } }
  compression: { algorithm: none }
`;

describe('compression between sidecars', { timeout: 30_000 }, () => {
  let app: TestApp;
  let callee: SidecarProcess;
  let caller: SidecarProcess;
  let relay: Awaited<ReturnType<typeof countingRelay>>;
  let policies: string;

  before(async () => {
    app = await startTestApp();
    callee = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port }) });
    relay = await countingRelay(callee.ports.inbound);
    policies = policyFolder({ 'payments.yaml': POLICIES });
    caller = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: [`127.0.0.1:${relay.port}`] }, extra: { policies: [policies] } }),
    });
    await caller.waitForLog((l) => l.msg === 'link ready');
  });
  after(async () => {
    await Promise.all([caller?.stop(), callee?.stop()]);
    await relay?.close();
    await app?.close();
    removeDir(policies);
  });

  /** Bytes each way on the link for one call, and the echo the app sent back. */
  const measured = async (path: string, body: string) => {
    const [up0, down0] = [relay.up(), relay.down()];
    const response = await request(`${caller.outboundUrl}${path}`, { method: 'POST', headers: { host: 'payments', 'content-type': 'application/json' }, body });
    const echo = await response.body.json() as { body: string; url: string };
    assert.equal(response.statusCode, 200);
    return { up: relay.up() - up0, down: relay.down() - down0, echo };
  };

  test('a large repetitive body and its answer cross the link compressed, and arrive intact', async () => {
    const body = JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ item: i % 7, name: 'widget', price: 12.5, tags: ['a', 'b', 'c'] })));
    assert.ok(body.length > 20_000);
    const plain = await measured('/plain/echo', body);
    const compressed = await measured('/echo', body);
    assert.equal(plain.echo.body, body, 'the app got the body whole');
    assert.equal(compressed.echo.body, body, 'the app got the body decompressed');
    assert.ok(plain.up > body.length, `uncompressed request: ${plain.up} bytes for ${body.length}`);
    assert.ok(compressed.up * 3 < plain.up, `compressed request: ${compressed.up} bytes vs ${plain.up}`);
    assert.ok(compressed.down * 3 < plain.down, `compressed answer: ${compressed.down} bytes vs ${plain.down}`);
  });

  test('a body under minBytes goes as it is', async () => {
    const small = JSON.stringify({ tiny: 'x'.repeat(900) }); // under 1024, and lz4 would shrink it to a tenth
    const a = await measured('/plain/echo', small);
    const b = await measured('/echo', small);
    assert.equal(b.echo.body, small);
    // Within a heartbeat's size (one may cross the link meanwhile); compressed, it would be ~800 bytes less.
    assert.ok(Math.abs(a.up - b.up) < 150, `same size either way: ${a.up} vs ${b.up}`);
  });
});
