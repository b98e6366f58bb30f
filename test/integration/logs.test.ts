// Request logs from real sidecars at log level debug: one line per call on each side, with its
// fields, and no credential anywhere in what either process writes (stdout and stderr).
//
//   test (as app "orders") ─HTTP─▶ sidecar orders ══MCP══▶ sidecar payments ─HTTP─▶ test app
//                                                 ══MCP══▶ ghost (nothing listening)
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { closedPort, listen, startTestApp, type RunningServer, type TestApp } from '../helpers/apps.ts';
import { assertMeshError } from '../helpers/mesh.ts';
import { SidecarProcess, sidecarConfig, type LogLine } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

const SECRETS = ['s3cr3t-token', 's3cr3t-cookie', 's3cr3t-proxy', 's3cr3t-query'];
const CREDENTIALS = {
  authorization: 'Bearer s3cr3t-token',
  cookie: 'session=s3cr3t-cookie',
};
const DEBUG = 20;
const WARN = 40;

describe('request logs', { timeout: 60_000 }, () => {
  let app: TestApp;
  let payments: SidecarProcess;
  let orders: SidecarProcess;
  // Tracing off, whatever the environment of the test runner says.
  const env = { OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'none' };

  before(async () => {
    app = await startTestApp();
    payments = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port, extra: { log: { level: 'debug' } } }), env });
    const ghost = `127.0.0.1:${await closedPort()}`;
    orders = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'orders', appPort: 1, peers: { payments: [payments.inboundAddress], ghost: [ghost] },
        extra: { log: { level: 'debug' }, timeouts: { connect: '500ms' } },
      }),
      env,
    });
    await orders.waitForLog((l) => l.msg === 'link ready' && l.peer === payments.inboundAddress);
  });
  after(async () => {
    await Promise.all([orders, payments].map((s) => s?.stop()));
    await app?.close();
  });

  const call = (host: string, path: string, options: { method?: 'GET' | 'POST'; body?: string; headers?: Record<string, string> } = {}) =>
    request(`${orders.outboundUrl}${path}`, { method: options.method ?? 'GET', body: options.body, headers: { host, ...CREDENTIALS, ...options.headers } });

  /** The request log line of a call, on `sidecar`, logged after `since`. */
  const requestLine = (sidecar: SidecarProcess, since: number, match: (l: LogLine) => boolean) =>
    sidecar.waitForLog((l) => typeof l.direction === 'string' && match(l), { since });

  test('one debug line per call on each side, with its fields, no query string and no trace ids (tracing off)', async () => {
    const [o, p] = [orders.mark(), payments.mark()];
    const response = await call('payments', '/orders/42?token=s3cr3t-query', { method: 'POST', body: '{"amount":1}', headers: { 'content-type': 'application/json' } });
    assert.equal(response.statusCode, 200);
    assert.ok((await response.body.text()).includes('s3cr3t-token'), 'the app got the Authorization header (it is not the mesh\'s to drop)');

    const out = await requestLine(orders, o, (l) => l.direction === 'outbound');
    assert.equal(out.level, DEBUG);
    assert.equal(out.msg, 'outbound call');
    assert.equal(out.service, 'orders');
    assert.equal(out.kind, 'call');
    assert.equal(out.target, 'payments.default');
    assert.equal(out.method, 'POST');
    assert.equal(out.path, '/orders/42');
    assert.equal(out.status, 200);
    assert.equal(out.attempts, 1);
    assert.equal(typeof out.route, 'string');
    assert.equal(typeof out.durationMs, 'number');
    assert.ok(!('code' in out));

    const inbound = await requestLine(payments, p, (l) => l.direction === 'inbound');
    assert.equal(inbound.level, DEBUG);
    assert.equal(inbound.msg, 'inbound call');
    assert.equal(inbound.service, 'payments');
    assert.equal(inbound.kind, 'call');
    assert.equal(inbound.source, 'orders.default');
    assert.equal(inbound.method, 'POST');
    assert.equal(inbound.path, '/orders/42');
    assert.equal(inbound.status, 200);
    assert.equal(typeof inbound.durationMs, 'number');
    for (const line of [out, inbound]) {
      assert.ok(!('trace_id' in line) && !('span_id' in line), `no trace ids when tracing is off: ${JSON.stringify(line)}`);
      assert.ok(!('headers' in line), 'no headers in a request line');
    }
  });

  test('the app\'s 5xx is its answer: logged at debug, with no mesh error code', async () => {
    const o = orders.mark();
    const response = await call('payments', '/status/500?session=s3cr3t-query');
    await response.body.dump();
    assert.equal(response.statusCode, 500);
    const line = await requestLine(orders, o, (l) => l.direction === 'outbound' && l.path === '/status/500');
    assert.equal(line.level, DEBUG);
    assert.equal(line.status, 500);
    assert.ok(!('code' in line));
  });

  test('a batch entry is logged as kind "batch"', async () => {
    const o = orders.mark();
    const response = await request(`${orders.outboundUrl}/mesh/v1/batch`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...CREDENTIALS },
      body: JSON.stringify({ calls: [{ service: 'payments', path: '/batch/1?key=s3cr3t-query', headers: { ...CREDENTIALS, 'proxy-authorization': 'Basic s3cr3t-proxy' } }] }),
    });
    assert.equal(response.statusCode, 200);
    await response.body.dump();
    const line = await requestLine(orders, o, (l) => l.direction === 'outbound' && l.path === '/batch/1');
    assert.equal(line.kind, 'batch');
    assert.equal(line.level, DEBUG);
  });

  test('a mesh error is logged once, at warn, with its code', async () => {
    const o = orders.mark();
    await assertMeshError(await call('ghost', '/charge?token=s3cr3t-query', { headers: { 'proxy-authorization': 'Basic s3cr3t-proxy' } }), 503, 'NO_HEALTHY_ENDPOINT');
    const line = await requestLine(orders, o, (l) => l.code === 'NO_HEALTHY_ENDPOINT');
    assert.equal(line.level, WARN);
    assert.equal(line.direction, 'outbound');
    assert.equal(line.target, 'ghost.default');
    assert.equal(line.path, '/charge');
    assert.equal(line.status, 503);
    assert.ok(!('trace_id' in line) && !('span_id' in line));
    assert.match(line.msg, /^outbound call failed: NO_HEALTHY_ENDPOINT/);
    // Lines are written in order: once the next call's line is in, a second line of the failure would be too.
    const next = orders.mark();
    await (await call('payments', '/after-ghost')).body.dump();
    await requestLine(orders, next, (l) => l.path === '/after-ghost');
    assert.equal(orders.logs.slice(o).filter((l) => l.code === 'NO_HEALTHY_ENDPOINT').length, 1);
  });

  test('a deadline passing: warn on the caller, and the callee\'s line has the code', async () => {
    const [o, p] = [orders.mark(), payments.mark()];
    const held = app.nextHeld();
    const answer = call('payments', '/hold/slow?token=s3cr3t-query', { headers: { 'mcp-mesh-timeout': '200ms' } });
    const heldRequest = await within(held, 10_000, 'the app never got the call');
    await assertMeshError(await answer, 504, 'DEADLINE_EXCEEDED');
    await within(heldRequest.aborted, 10_000, 'the call to the app was not abandoned');
    const out = await requestLine(orders, o, (l) => l.direction === 'outbound' && l.path === '/hold/slow');
    assert.deepEqual([out.level, out.code, out.status], [WARN, 'DEADLINE_EXCEEDED', 504]);
    // The callee ends its call by its own deadline timer or by the caller's cancel, whichever comes first.
    const inbound = await requestLine(payments, p, (l) => l.direction === 'inbound' && l.path === '/hold/slow');
    assert.ok(inbound.code === 'DEADLINE_EXCEEDED' || inbound.code === 'CLIENT_CLOSED', `the inbound line has the code: ${JSON.stringify(inbound)}`);
    assert.equal(inbound.level, inbound.code === 'CLIENT_CLOSED' ? DEBUG : WARN);
  });

  test('a call that never reaches the pipeline (a bad target) is still logged at warn, once', async () => {
    const o = orders.mark();
    await assertMeshError(await call('a.b.c', '/x?token=s3cr3t-query'), 403, 'EGRESS_NOT_ALLOWED');
    const line = await orders.waitForLog((l) => l.code === 'EGRESS_NOT_ALLOWED', { since: o });
    assert.equal(line.level, WARN);
    assert.equal(line.direction, 'outbound');
    assert.equal(line.target, 'a.b.c');
    const next = orders.mark();
    await (await call('payments', '/after-bad-target')).body.dump();
    await requestLine(orders, next, (l) => l.path === '/after-bad-target');
    assert.equal(orders.logs.slice(o).filter((l) => l.code === 'EGRESS_NOT_ALLOWED').length, 1);
  });

  test('no credential and no query string anywhere in either sidecar\'s output', async () => {
    // Everything written: stop both and read stdout and stderr to their end.
    const ends = [orders, payments].flatMap((s) => [once(s.child.stdout!, 'close'), once(s.child.stderr!, 'close')]);
    await Promise.all([orders.stop(), payments.stop()]);
    await within(Promise.all(ends), 10_000, 'the sidecars\' output did not end');
    for (const sidecar of [orders, payments]) {
      assert.ok(sidecar.logs.some((l) => l.level === DEBUG && typeof l.direction === 'string'), `${sidecar.name} wrote request lines`);
      const everything = `${sidecar.logs.map((l) => JSON.stringify(l)).join('\n')}\n${sidecar.stderr}`;
      for (const secret of SECRETS) assert.ok(!everything.includes(secret), `${sidecar.name} wrote "${secret}":\n${everything}`);
    }
  });
});

describe('request logs of traced calls', { timeout: 60_000 }, () => {
  let app: TestApp;
  let collector: RunningServer;
  let payments: SidecarProcess;
  let orders: SidecarProcess;

  before(async () => {
    app = await startTestApp();
    // An OTLP/HTTP endpoint that takes every export (an empty body is an empty ExportTraceServiceResponse).
    collector = await listen(createServer((req, res) => { req.resume(); req.once('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()); }));
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`, OTEL_TRACES_SAMPLER: 'parentbased_always_on' };
    const debug = { log: { level: 'debug' } };
    payments = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port, extra: debug }), env });
    orders = await SidecarProcess.start({ config: sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: [payments.inboundAddress] }, extra: debug }), env });
    await orders.waitForLog((l) => l.msg === 'link ready' && l.peer === payments.inboundAddress);
  });
  after(async () => {
    await Promise.all([orders, payments].map((s) => s?.stop()));
    await Promise.all([app?.close(), collector?.close()]);
  });

  test('carry trace_id and span_id: the app\'s trace on both sides, each sidecar\'s own span', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';
    const [o, p] = [orders.mark(), payments.mark()];
    const response = await request(`${orders.outboundUrl}/traced?token=s3cr3t-query`, { headers: { host: 'payments', traceparent: `00-${traceId}-${parentId}-01`, ...CREDENTIALS } });
    assert.equal(response.statusCode, 200);
    await response.body.dump();
    const out = await orders.waitForLog((l) => l.direction === 'outbound' && l.path === '/traced', { since: o });
    const inbound = await payments.waitForLog((l) => l.direction === 'inbound' && l.path === '/traced', { since: p });
    assert.equal(out.trace_id, traceId);
    assert.equal(inbound.trace_id, traceId);
    for (const line of [out, inbound]) assert.match(String(line.span_id), /^[0-9a-f]{16}$/);
    assert.notEqual(out.span_id, parentId, 'the caller\'s span is a child of the app\'s');
    assert.notEqual(inbound.span_id, out.span_id, 'each sidecar logs its own span');
    for (const line of [out, inbound]) for (const secret of SECRETS) assert.ok(!JSON.stringify(line).includes(secret));
  });
});
