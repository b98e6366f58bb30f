// The call metrics of docs/metrics.md, read from real sidecars' admin /metrics after a known set of
// calls: outbound at the caller, inbound at the called sidecars, with the policy's route names.
//
//   test ─▶ sidecar web ═▶ sidecar orders ─▶ test app         (200s, app 503s retried once, echo)
//                       ═▶ sidecar down   ─▶ (nothing listening: APP_UNAVAILABLE)
//                       ═▶ ghost          (no sidecar at that address: NO_HEALTHY_ENDPOINT)
//                       ─▶ nosuch         (unknown to discovery, through the batch API)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closedPort, startTestApp, type TestApp } from '../helpers/apps.ts';
import { meshApi, metricsText, policyFolder, removeDir } from '../helpers/async.ts';
import { metricSum, sampleLines } from '../helpers/prometheus.ts';
import { callService } from '../helpers/fleet.ts';
import { documents, policy } from '../helpers/policies.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

const POLICIES = {
  'orders.yaml': documents(
    policy('orders', 'orders', '  outlierDetection: { enabled: false }\n'),
    policy('orders-status', 'orders', [
      '  route:',
      '    name: status',
      '    match: { path: { prefix: /status } }',
      '  retries: { attempts: 2, retryOn: [unavailable], backoff: { base: 1ms, max: 2ms } }',
      '',
    ].join('\n')),
  ),
  // Each try waits at most 100 ms for a link that never comes; three tries in all.
  'ghost.yaml': policy('ghost', 'ghost', '  timeouts: { connect: 100ms }\n  retries: { attempts: 3, backoff: { base: 1ms, max: 2ms } }\n'),
};

describe('call metrics on /metrics (docs/metrics.md)', { timeout: 60_000 }, () => {
  let app: TestApp;
  let orders: SidecarProcess;
  let down: SidecarProcess;
  let web: SidecarProcess;
  let policyDir: string;
  let ghost: string;
  let callerText = '';
  let ordersText = '';
  let downText = '';

  before(async () => {
    app = await startTestApp({ name: 'orders-0' });
    policyDir = policyFolder(POLICIES);
    [orders, down] = await Promise.all([
      SidecarProcess.start({ config: sidecarConfig({ service: 'orders', appPort: app.port }) }),
      SidecarProcess.start({ config: sidecarConfig({ service: 'down', appPort: await closedPort() }) }),
    ]);
    ghost = `127.0.0.1:${await closedPort()}`;
    web = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'web', appPort: 1,
        peers: { orders: [orders.inboundAddress], down: [down.inboundAddress], ghost: [ghost] },
        extra: { policies: [policyDir] },
      }),
    });
    await Promise.all([orders, down].map((peer) => web.waitForLog((l) => l.msg === 'link ready' && l.peer === peer.inboundAddress)));

    const expect = async (service: string, path: string, status: number, code?: string, attempts?: number) => {
      const outcome = await callService(web, service, path);
      assert.equal(outcome.status, status, `${service}${path}: ${outcome.body}`);
      assert.equal(outcome.code, code, `${service}${path}: mesh error`);
      if (attempts !== undefined) assert.equal(outcome.attempts, attempts, `${service}${path}: tries`);
    };
    for (let i = 0; i < 5; i++) await expect('orders', `/status/200?i=${i}`, 200, undefined, 1);
    for (let i = 0; i < 3; i++) await expect('orders', '/status/503', 503, undefined, 2);
    for (let i = 0; i < 2; i++) await expect('orders', `/items/${i}`, 200, undefined, 1);
    for (let i = 0; i < 2; i++) await expect('down', '/x', 502, 'APP_UNAVAILABLE', 1);
    for (let i = 0; i < 4; i++) await expect('ghost', '/x', 503, 'NO_HEALTHY_ENDPOINT');
    const batch = await meshApi<{ results: { error?: { code: string } }[] }>(web, 'POST', '/mesh/v1/batch', {
      headers: { 'content-type': 'application/json' }, body: JSON.stringify({ calls: [{ service: 'nosuch', path: '/x' }] }),
    });
    assert.equal(batch.json.results[0]?.error?.code, 'UNKNOWN_SERVICE');

    // Every sidecar counts a call before its answer leaves it: once the test has its answers, the counts are final.
    [callerText, ordersText, downText] = await Promise.all([metricsText(web), metricsText(orders), metricsText(down)]);
  });
  after(async () => {
    await Promise.all([web, orders, down].map((s) => s?.stop()));
    await app?.close();
    removeDir(policyDir);
  });

  test('the caller counts outbound calls by service, policy route, status and mesh error', () => {
    assert.deepEqual(sampleLines(callerText, 'mcp_requests_total'), [
      '{service="down.default",route="default",direction="outbound",code="502",error="APP_UNAVAILABLE"} 2',
      '{service="ghost.default",route="default",direction="outbound",code="503",error="NO_HEALTHY_ENDPOINT"} 4',
      '{service="orders.default",route="default",direction="outbound",code="200",error=""} 2',
      '{service="orders.default",route="status",direction="outbound",code="200",error=""} 5',
      '{service="orders.default",route="status",direction="outbound",code="503",error=""} 3',
      '{service="unknown",route="",direction="outbound",code="404",error="UNKNOWN_SERVICE"} 1',
    ]);
    assert.doesNotMatch(callerText, /\/status\/|\/items\/|nosuch/, 'no path or unknown name in any label');
  });

  test('the called sidecars count the same calls as inbound, each try once', () => {
    assert.deepEqual(sampleLines(ordersText, 'mcp_requests_total'), [
      '{service="orders.default",route="default",direction="inbound",code="200",error=""} 7',
      '{service="orders.default",route="default",direction="inbound",code="503",error=""} 6',
    ]);
    assert.deepEqual(sampleLines(downText, 'mcp_requests_total'), [
      '{service="down.default",route="default",direction="inbound",code="502",error="APP_UNAVAILABLE"} 2',
    ]);
  });

  test('latency histograms count every call, per direction, across its retries', () => {
    const out = (service: string, route: string) => ({ service, route, direction: 'outbound' });
    for (const [labels, count] of [[out('orders.default', 'status'), 8], [out('orders.default', 'default'), 2], [out('ghost.default', 'default'), 4], [out('down.default', 'default'), 2]] as const) {
      assert.equal(metricSum(callerText, 'mcp_latency_seconds_count', labels), count, JSON.stringify(labels));
      assert.equal(metricSum(callerText, 'mcp_latency_seconds_bucket', { ...labels, le: '+Inf' }), count);
    }
    // Three tries that each waited 100 ms for a link: every ghost call took longer than 0.25 s.
    assert.equal(metricSum(callerText, 'mcp_latency_seconds_bucket', { ...out('ghost.default', 'default'), le: '0.25' }), 0);
    assert.equal(metricSum(callerText, 'mcp_latency_seconds_bucket', { ...out('ghost.default', 'default'), le: '30' }), 4);
    assert.equal(metricSum(callerText, 'mcp_latency_seconds_count', { direction: 'inbound' }), 0, 'the caller received no calls');
    assert.equal(metricSum(ordersText, 'mcp_latency_seconds_count', { service: 'orders.default', direction: 'inbound' }), 13);
    assert.equal(metricSum(ordersText, 'mcp_latency_seconds_count', { direction: 'outbound' }), 0);
    assert.match(callerText, /^# TYPE mcp_latency_seconds histogram$/m);
  });

  test('retries and tries are counted at the caller', () => {
    assert.deepEqual(sampleLines(callerText, 'mcp_retries_total'), [
      '{service="down.default",route="default"} 0',
      '{service="ghost.default",route="default"} 8',
      '{service="orders.default",route="default"} 0',
      '{service="orders.default",route="status"} 3',
      '{service="unknown",route=""} 0',
    ]);
    // Ghost tries never reached an endpoint (no link): retries, but no attempts.
    assert.deepEqual(sampleLines(callerText, 'mcp_attempts_total'), [
      '{service="down.default",route="default",code="502",error="APP_UNAVAILABLE"} 2',
      '{service="orders.default",route="default",code="200",error=""} 2',
      '{service="orders.default",route="status",code="200",error=""} 5',
      '{service="orders.default",route="status",code="503",error=""} 6',
    ]);
  });

  test('links: batch sizes, states and calls in flight', () => {
    // 13 requests went to orders and 2 to down, in batches (with heartbeats, if any were due).
    assert.ok(metricSum(callerText, 'mcp_link_batch_size_count') >= 1);
    assert.ok(metricSum(callerText, 'mcp_link_batch_size_sum') >= 15, callerText);
    assert.equal(metricSum(callerText, 'mcp_link_batch_size_bucket', { le: '+Inf' }), metricSum(callerText, 'mcp_link_batch_size_count'));
    assert.equal(metricSum(callerText, 'mcp_links', { state: 'ready' }), 2);
    assert.equal(metricSum(callerText, 'mcp_links', { state: 'connecting' }) + metricSum(callerText, 'mcp_links', { state: 'broken' }), 1, 'the link to the ghost');
    assert.deepEqual(sampleLines(callerText, 'mcp_link_in_flight'), [`{peer="${down.inboundAddress}"} 0`, `{peer="${ghost}"} 0`, `{peer="${orders.inboundAddress}"} 0`].sort());
  });

  test('breaker states, ejections and limiter queues of the called services', () => {
    assert.deepEqual(sampleLines(callerText, 'mcp_circuit_breaker_state'), [
      `{service="down.default",scope="endpoint",endpoint="${down.inboundAddress}"} 0`,
      '{service="down.default",scope="service",endpoint=""} 0',
      '{service="ghost.default",scope="service",endpoint=""} 0',
      `{service="orders.default",scope="endpoint",endpoint="${orders.inboundAddress}"} 0`,
      '{service="orders.default",scope="service",endpoint=""} 0',
    ]);
    assert.equal(metricSum(callerText, 'mcp_outlier_ejected_endpoints', { service: 'orders.default' }), 0);
    assert.match(callerText, /^mcp_outlier_ejected_endpoints\{service="ghost\.default"\} 0$/m);
    assert.equal(sampleLines(callerText, 'mcp_queue_depth').filter((l) => l.includes('queue="limiter"')).length, 3, 'one limiter queue per called service');
    assert.equal(sampleLines(callerText, 'mcp_queue_depth').filter((l) => l.includes('queue="link"')).length, 3, 'one batcher queue per peer link');
    assert.equal(metricSum(callerText, 'mcp_queue_depth'), 0);
  });
});
