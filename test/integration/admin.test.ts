// The admin API of a real sidecar process: probes, /endpoints per endpoint (health, EWMA, in flight,
// breaker, ejection), /logging (read, change at run time, refuse a bad level), the status page and
// /status.json.
//
//   test ─HTTP─▶ orders sidecar ══MCP══▶ hello sidecar  ─▶ app (answers)
//                      ║
//                      ╚════MCP══▶ broken sidecar ─▶ app (503 to every /work)
//
// The caller's policy for `broken` opens its breakers and ejects its endpoint after 3 failures.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import type { EndpointsView } from '../../sidecar/src/admin/endpoints-view.ts';
import type { StatusDocument } from '../../sidecar/src/admin/status-view.ts';
import { startTestApp, type TestApp } from '../helpers/apps.ts';
import { adminJson, callService } from '../helpers/fleet.ts';
import { policy } from '../helpers/policies.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

async function admin(sidecar: SidecarProcess, p: string, options: { method?: 'GET' | 'PUT' | 'POST'; body?: string; headers?: Record<string, string> } = {}) {
  const response = await request(`http://127.0.0.1:${sidecar.ports.admin}${p}`, { method: options.method ?? 'GET', body: options.body, headers: options.headers });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

describe('admin API', { timeout: 60_000 }, () => {
  let policyDir: string;
  let helloApp: TestApp;
  let brokenApp: TestApp;
  let hello: SidecarProcess;
  let broken: SidecarProcess;
  let caller: SidecarProcess;

  before(async () => {
    policyDir = mkdtempSync(path.join(tmpdir(), 'admin-policies-'));
    writeFileSync(path.join(policyDir, 'broken.yaml'), policy('broken', 'broken', '  circuitBreaker: { volumeThreshold: 3 }\n  outlierDetection: { consecutiveFailures: 3 }\n'));
    [helloApp, brokenApp] = await Promise.all([startTestApp({ name: 'hello-0' }), startTestApp({ name: 'broken-0' })]);
    brokenApp.behaviour.failing = 'always';
    [hello, broken] = await Promise.all([
      SidecarProcess.start({ config: sidecarConfig({ service: 'hello', appPort: helloApp.port }), name: 'hello' }),
      SidecarProcess.start({ config: sidecarConfig({ service: 'broken', appPort: brokenApp.port }), name: 'broken' }),
    ]);
    caller = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: 1, peers: { hello: [hello.inboundAddress], broken: [broken.inboundAddress] }, extra: { policies: [policyDir] } }),
      name: 'orders',
    });
    await Promise.all([hello, broken].map((s) => caller.waitForLog((l) => l.msg === 'link ready' && l.peer === s.inboundAddress)));
  });

  after(async () => {
    await Promise.all([caller, hello, broken].map((s) => s?.stop()));
    await Promise.all([helloApp, brokenApp].map((a) => a?.close()));
    rmSync(policyDir, { recursive: true, force: true });
  });

  test('/healthz and /readyz answer 200 once the sidecar has started', async () => {
    const health = await admin(caller, '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(health.json(), { status: 'ok' });
    const ready = await admin(caller, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json(), { status: 'ready' });
  });

  test('/endpoints: a live endpoint has its link state, health, EWMA, calls in flight, breaker and no ejection', async () => {
    for (let i = 0; i < 10; i++) assert.equal((await callService(caller, 'hello', '/delay/3')).status, 200);
    const view = await adminJson<EndpointsView>(caller, '/endpoints');
    const service = view.services['hello.default'];
    assert.ok(service, `hello.default is in /endpoints: ${JSON.stringify(Object.keys(view.services))}`);
    assert.deepEqual(service.balancers, ['p2c-ewma'], 'the default balancer');
    assert.equal(service.breaker, 'closed');
    const endpoint = service.endpoints.find((e) => e.address === hello.inboundAddress);
    assert.ok(endpoint, 'the endpoint is listed');
    assert.equal(endpoint.link, 'ready');
    assert.equal(endpoint.healthy, true);
    assert.equal(endpoint.inFlight, 0, 'no call in flight once all have answered');
    assert.ok(typeof endpoint.ewmaMs === 'number' && endpoint.ewmaMs > 0, `an EWMA latency after calls (${endpoint.ewmaMs})`);
    assert.equal(endpoint.breaker, 'closed');
    assert.equal(endpoint.ejection, null);
    assert.equal(endpoint.consecutiveFailures, 0);
    // The fields that were there before stay.
    const link = view.links.find((l) => l.address === hello.inboundAddress);
    assert.ok(link && link.state === 'ready' && link.envelopes >= 10 && typeof link.batches === 'number' && typeof link.inFlight === 'number');
    assert.ok(Array.isArray(service.outlier) && Array.isArray(service.concurrency) && Array.isArray(service.retryBudgets));
    assert.ok(view.breakers.some((b) => b.service === 'hello.default' && b.address === hello.inboundAddress && b.state === 'closed'));
  });

  test('/endpoints: a failing endpoint shows its breaker open and its ejection, until when', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await callService(caller, 'broken', '/work')).status, 503);
    const view = await adminJson<EndpointsView>(caller, '/endpoints');
    const service = view.services['broken.default']!;
    const endpoint = service.endpoints.find((e) => e.address === broken.inboundAddress)!;
    assert.equal(endpoint.link, 'ready', 'the link itself is fine');
    assert.equal(endpoint.breaker, 'open');
    assert.equal(service.breaker, 'open', 'the service breaker saw the same three failures');
    assert.equal(endpoint.healthy, false);
    assert.ok(endpoint.ejection, `ejected after three failures in a row: ${JSON.stringify(endpoint)}`);
    assert.equal(endpoint.ejection.reason, 'consecutive-failures');
    assert.equal(endpoint.ejection.timesEjected, 1);
    assert.ok(endpoint.ejection.returnsInMs > 0 && endpoint.ejection.returnsInMs <= 30_000, `back within the base ejection time (${endpoint.ejection.returnsInMs} ms)`);
    const until = Date.parse(endpoint.ejection.until);
    assert.ok(until > Date.now() && until <= Date.now() + 30_000 + 1000, `until is a time in the next 30 s (${endpoint.ejection.until})`);
  });

  test('/logging: GET shows the level; PUT/POST change it at run time and the change takes effect; a bad level is 400', async () => {
    assert.deepEqual((await admin(caller, '/logging')).json().level, 'info');

    const bad = await admin(caller, '/logging?level=loud', { method: 'PUT' });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json(), { error: { code: 'BAD_REQUEST', message: 'invalid log level "loud": use one of trace, debug, info, warn, error, fatal, silent' } });
    const missing = await admin(caller, '/logging', { method: 'PUT' });
    assert.equal(missing.status, 400);
    assert.match(missing.text, /name the level/);
    assert.equal((await admin(caller, '/logging')).json().level, 'info', 'a refused change changes nothing');

    // At info, a retried call logs nothing at debug ("retrying" is a debug line).
    assert.equal((await callService(caller, 'hello', '/reset-once/at-info')).status, 200);
    const beforeChange = caller.mark();
    const changed = await admin(caller, '/logging?level=debug', { method: 'PUT' });
    assert.equal(changed.status, 200);
    assert.deepEqual(changed.json(), { level: 'debug', previous: 'info' });
    const line = await caller.waitForLog((l) => l.msg === 'log level set to debug', { since: beforeChange });
    assert.equal(line.level, 30, 'the change is logged at info');
    assert.equal(line.from, 'info');
    // Lines reach the test in the order they were written: nothing before the change line was a debug line.
    assert.ok(!caller.logs.slice(0, caller.logs.indexOf(line)).some((l) => l.level === 20), 'no debug line while the level was info');
    assert.equal((await admin(caller, '/logging')).json().level, 'debug');

    const mark = caller.mark();
    assert.equal((await callService(caller, 'hello', '/reset-once/at-debug')).status, 200);
    await caller.waitForLog((l) => l.level === 20, { since: mark, timeoutMs: 5000 });

    // POST works too (Envoy's form), and so does a JSON body.
    const post = await admin(caller, '/logging?level=warn', { method: 'POST' });
    assert.deepEqual(post.json(), { level: 'warn', previous: 'debug' });
    const body = await admin(caller, '/logging', { method: 'PUT', body: JSON.stringify({ level: 'info' }), headers: { 'content-type': 'application/json' } });
    assert.deepEqual(body.json(), { level: 'info', previous: 'warn' });
    await caller.waitForLog((l) => l.msg === 'log level set to info' && l.from === 'warn', { since: mark });
  });

  test('GET / serves the status page: self-contained HTML that polls /status.json', async () => {
    const page = await admin(caller, '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html; charset=utf-8/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
    assert.match(page.text, /^<!doctype html>/i);
    assert.match(page.text, /fetch\('status\.json'/);
    assert.doesNotMatch(page.text, /<(script|link)[^>]+(src|href)=["']https?:/i, 'nothing is loaded from elsewhere');
  });

  test('/status.json: services with live rates, percentiles and endpoint health; callers on the called side', async () => {
    assert.equal((await callService(caller, 'hello', '/delay/2')).status, 200);
    // Fails at the app, or at once on the open breaker if the test above ran: 503 either way.
    for (let i = 0; i < 3; i++) assert.equal((await callService(caller, 'broken', '/work')).status, 503);
    const doc = await adminJson<StatusDocument>(caller, '/status.json');
    assert.deepEqual({ service: doc.sidecar.service, namespace: doc.sidecar.namespace, readiness: doc.sidecar.readiness }, { service: 'orders', namespace: 'default', readiness: 'ready' });
    assert.equal(doc.windowSeconds, 10);
    assert.ok(!Number.isNaN(Date.parse(doc.at)));
    const helloStatus = doc.outbound.find((s) => s.service === 'hello.default')!;
    assert.ok(helloStatus.live, 'hello.default has live numbers');
    assert.ok(helloStatus.live.requestsPerSecond > 0);
    assert.ok(helloStatus.live.latencyMs && helloStatus.live.latencyMs.p50 > 0 && helloStatus.live.latencyMs.p50 <= helloStatus.live.latencyMs.p90
      && helloStatus.live.latencyMs.p90 <= helloStatus.live.latencyMs.p99 && helloStatus.live.latencyMs.p99 <= helloStatus.live.latencyMs.max);
    assert.ok(helloStatus.live.statusClasses['2xx'] > 0);
    assert.equal(helloStatus.live.perSecond.length, 10);
    assert.equal(helloStatus.healthyEndpoints, 1);
    const endpoint = helloStatus.endpoints.find((e) => e.address === hello.inboundAddress)!;
    assert.equal(endpoint.link, 'ready');
    assert.equal(endpoint.breaker, 'closed');
    assert.ok(endpoint.live && endpoint.live.requestsPerSecond > 0);
    const brokenStatus = doc.outbound.find((s) => s.service === 'broken.default')!;
    assert.equal(brokenStatus.breaker, 'open');
    assert.ok(brokenStatus.live && brokenStatus.live.errorRate === 1, 'every call to broken failed');
    assert.ok(brokenStatus.endpoints[0]!.ejection);
    assert.ok(doc.summary.ejectedEndpoints >= 1 && doc.summary.openBreakers >= 2 && doc.summary.readyLinks === 2);
    assert.ok(doc.links.some((l) => l.address === hello.inboundAddress && l.state === 'ready'));

    // On the called side the same calls are inbound, by calling service.
    const called = await adminJson<StatusDocument>(hello, '/status.json');
    const fromOrders = called.inbound.find((s) => s.source === 'orders.default');
    assert.ok(fromOrders && fromOrders.requestsPerSecond > 0 && fromOrders.total.requests >= 1, `hello sees calls from orders: ${JSON.stringify(called.inbound)}`);
  });

  test('/config_dump, /sessions and /metrics still answer', async () => {
    assert.equal((await admin(caller, '/config_dump')).status, 200);
    assert.equal((await admin(caller, '/sessions')).status, 200);
    assert.equal((await admin(caller, '/metrics')).status, 200);
  });
});
