// Errors made by the mesh: each one a coded response (status, `mcp-mesh-error`, JSON body), and
// the calls behind them really abandoned.
//
//   test ─▶ sidecar orders ═▶ sidecar payments ─▶ test app
//                          ═▶ sidecar down     ─▶ (nothing listening)
//                          ═▶ ghost (no sidecar at that address)
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request, type Dispatcher } from 'undici';
import { closedPort, startTestApp, type TestApp } from '../helpers/apps.ts';
import { assertMeshError } from '../helpers/mesh.ts';
import { header, rawHttp } from '../helpers/raw-http.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

const MAX_BODY = 128 * 1024;

describe('mesh errors', { timeout: 60_000 }, () => {
  let app: TestApp;
  let payments: SidecarProcess;
  let down: SidecarProcess;
  let orders: SidecarProcess;
  let junk: SidecarProcess;
  let junkApp: Server;

  before(async () => {
    app = await startTestApp();
    [payments, down] = await Promise.all([
      SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port }) }),
      SidecarProcess.start({ config: sidecarConfig({ service: 'down', appPort: await closedPort() }) }),
    ]);
    // An "app" that answers every connection with bytes that are not HTTP.
    junkApp = createServer((socket) => socket.end('this is not HTTP\r\n\r\n'));
    await new Promise<void>((resolve) => junkApp.listen(0, '127.0.0.1', resolve));
    junk = await SidecarProcess.start({ config: sidecarConfig({ service: 'junk', appPort: (junkApp.address() as AddressInfo).port }) });
    const ghost = `127.0.0.1:${await closedPort()}`;
    orders = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'orders', appPort: 1,
        peers: { payments: [payments.inboundAddress], down: [down.inboundAddress], junk: [junk.inboundAddress], ghost: [ghost] },
        extra: { limits: { maxBodyBytes: MAX_BODY }, timeouts: { connect: '500ms' } },
      }),
    });
    await Promise.all([payments, down, junk].map((peer) => orders.waitForLog((l) => l.msg === 'link ready' && l.peer === peer.inboundAddress)));
  });
  after(async () => {
    await Promise.all([orders, payments, down, junk].map((s) => s?.stop()));
    junkApp?.close();
    await app?.close();
  });

  const call = (host: string, path: string, options: { method?: Dispatcher.HttpMethod; body?: Buffer | Readable | string; headers?: Record<string, string> } = {}) =>
    request(`${orders.outboundUrl}${path}`, { ...options, headers: { host, ...options.headers } });

  test('unknown service: 404 UNKNOWN_SERVICE', async () => {
    const error = await assertMeshError(await call('billing', '/x'), 404, 'UNKNOWN_SERVICE');
    assert.equal(error.service, 'billing.default');
  });

  test('a request for the sidecar itself on a path that is no mesh API route: 404 UNKNOWN_ROUTE', async () => {
    const response = await request(`${orders.outboundUrl}/no/such/route`);
    await assertMeshError(response, 404, 'UNKNOWN_ROUTE');
  });

  test('an app that answers with something that is not HTTP: 502 APP_RESET', async () => {
    const error = await assertMeshError(await call('junk', '/x'), 502, 'APP_RESET');
    assert.match(error.message, /not valid HTTP/);
  });

  test('an IP address (or any name outside the mesh) as Host: 403 EGRESS_NOT_ALLOWED, saying how to allow it', async () => {
    const error = await assertMeshError(await call('10.1.2.3:8080', '/x'), 403, 'EGRESS_NOT_ALLOWED');
    assert.match(error.message, /egress\.allow/);
    await assertMeshError(await call('api.partner.example', '/x'), 403, 'EGRESS_NOT_ALLOWED');
  });

  test('a request that names no service (HTTP/1.0, no Host): 400 BAD_REQUEST', async () => {
    const response = await rawHttp(orders.ports.outbound, ['GET /x HTTP/1.0']);
    assert.equal(response.status, 400);
    assert.deepEqual(header(response, 'mcp-mesh-error'), ['BAD_REQUEST']);
    assert.equal((JSON.parse(response.body.toString()) as { error: { code: string } }).error.code, 'BAD_REQUEST');
  });

  test('app down behind the peer sidecar: 502 APP_UNAVAILABLE', async () => {
    const error = await assertMeshError(await call('down', '/x'), 502, 'APP_UNAVAILABLE');
    assert.match(error.service ?? '', /^down(\.default)?$/, 'the error names the service called');
    // Streamed requests fail the same way.
    await assertMeshError(await call('down', '/x', { method: 'POST', body: Readable.from([Buffer.alloc(100 * 1024)]) }), 502, 'APP_UNAVAILABLE');
  });

  test('no sidecar at the only endpoint: 503 NO_HEALTHY_ENDPOINT', async () => {
    const error = await assertMeshError(await call('ghost', '/x'), 503, 'NO_HEALTHY_ENDPOINT');
    assert.match(error.service ?? '', /^ghost(\.default)?$/);
  });

  for (const path of ['unary', 'stream'] as const) {
    test(`deadline (${path} call): app slower than mcp-mesh-timeout → 504 DEADLINE_EXCEEDED, and the app's request is abandoned`, async () => {
      const held = app.nextHeld();
      const started = performance.now();
      const response = await call('payments', `/hold/${path}`, {
        method: 'POST',
        headers: { 'mcp-mesh-timeout': '300ms', ...(path === 'stream' ? { accept: 'text/event-stream' } : {}) },
        body: 'slow please',
      });
      const elapsed = performance.now() - started;
      const error = await assertMeshError(response, 504, 'DEADLINE_EXCEEDED');
      assert.match(error.service ?? '', /^payments(\.default)?$/);
      // The deadline that ended the call is the caller's 300 ms, not the 15 s default: the error names
      // it (the caller's sidecar, or the callee's with the few ms it had left, whichever came first).
      assert.match(error.message, /within 300 ms|caller's deadline \((29\d|300) ms\)/, `the error names the deadline: ${error.message}`);
      // A timer never fires early, so this lower bound cannot flake (how late is not measured).
      assert.ok(elapsed >= 290, `not before the deadline (${elapsed.toFixed(0)} ms)`);
      // The app got the request, and the callee sidecar gave up on it: its connection closed
      // before the app answered (this waits on the app's 'close' event, bounded by the test timeout).
      const request = await within(held, 5000, 'the app never got the call');
      await within(request.aborted, 5000, 'the app\'s request was not abandoned');
      assert.ok(!request.res.writableFinished);
    });
  }

  test('a body over limits.maxBodyBytes (content-length): 413 BODY_TOO_LARGE, the app is not called', async () => {
    const before = app.count('/big');
    const error = await assertMeshError(await call('payments', '/big', { method: 'PUT', body: Buffer.alloc(MAX_BODY + 1) }), 413, 'BODY_TOO_LARGE');
    assert.match(error.service ?? '', /^payments(\.default)?$/);
    assert.equal(app.count('/big'), before);
  });

  test('a chunked body that grows over limits.maxBodyBytes: 413 BODY_TOO_LARGE', async () => {
    const chunks = Array.from({ length: 5 }, () => Buffer.alloc(MAX_BODY / 4, 1)); // 1.25 × the limit
    await assertMeshError(await call('payments', '/big-chunked', { method: 'POST', body: Readable.from(chunks) }), 413, 'BODY_TOO_LARGE');
  });

  test('a body of exactly limits.maxBodyBytes passes', async () => {
    const response = await call('payments', '/upload', { method: 'POST', body: Buffer.alloc(MAX_BODY, 2) });
    const result = await response.body.json() as { bytes: number };
    assert.equal(response.statusCode, 200);
    assert.equal(result.bytes, MAX_BODY);
  });
});
