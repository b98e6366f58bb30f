// Request metrics (call-metrics.ts) and scrape-time metrics (runtime-metrics.ts) on a real
// MeshMetrics, read back as Prometheus text through MeshMetrics.serve on a loopback server.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it, mock } from 'node:test';
import { ServiceStates } from '../../../sidecar/src/call/service-state.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { LinkPool } from '../../../sidecar/src/mcp/link-pool.ts';
import { BreakerRegistry } from '../../../sidecar/src/resilience/breaker.ts';
import { createCallMetrics, NO_ROUTE, UNKNOWN_SERVICE, type CallMetricsOptions } from '../../../sidecar/src/telemetry/call-metrics.ts';
import { DIRECT_SERIES_LIMIT, LATENCY_BUCKETS_SECONDS, MeshMetrics } from '../../../sidecar/src/telemetry/metrics.ts';
import type { CallObserver, InboundStart, Outcome, OutboundStart } from '../../../sidecar/src/telemetry/observer.ts';
import { registerRuntimeMetrics } from '../../../sidecar/src/telemetry/runtime-metrics.ts';
import { metricSum, sampleLines } from '../../helpers/prometheus.ts';
import { linkOptions } from '../mcp/fixtures.ts';
import { compileValid, policy } from '../../helpers/policies.ts';

/** A MeshMetrics served on a loopback port, and its Prometheus text. */
class Scraped {
  readonly metrics = new MeshMetrics({ service: 'orders', namespace: 'default', instance: 'orders-0' });
  #server: Server | undefined;

  async start(): Promise<void> {
    const server = createServer((req, res) => this.metrics.serve(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.#server = server;
  }

  async text(): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}/metrics`);
    assert.equal(response.status, 200);
    return response.text();
  }

  async close(): Promise<void> {
    await new Promise((resolve) => this.#server?.close(resolve));
    await this.metrics.shutdown();
  }
}

const OUT: OutboundStart = { service: 'payments.default', method: 'GET', path: '/charges/42?x=1', headers: [], kind: 'call' };
const IN: InboundStart = { service: 'orders.default', source: 'web.default', method: 'POST', path: '/orders/7', headers: [], trace: undefined, messageId: undefined };

/** One outbound call: its route, a try per outcome in `tries`, then its end with `outcome`. */
function outbound(observer: CallObserver, route: string | undefined, tries: Outcome[], outcome: Outcome, start = OUT): void {
  const call = observer.outbound(start);
  if (route !== undefined) call.route(route);
  tries.forEach((t, i) => call.attempt(i + 1, '10.0.0.1:15001', 'closed').end(t));
  call.end(outcome, tries.length);
}

function inbound(observer: CallObserver, outcome: Outcome, start = IN): void {
  const call = observer.inbound(start);
  const app = call.appCall();
  assert.deepEqual(app.headers, [], 'metrics add no headers to the app call');
  app.end(outcome);
  call.end(outcome);
}

describe('call metrics', () => {
  let scraped: Scraped;
  let observer: CallObserver;
  const fresh = async (options?: CallMetricsOptions) => {
    await scraped?.close();
    scraped = new Scraped();
    await scraped.start();
    observer = createCallMetrics(scraped.metrics, options);
  };
  beforeEach(() => fresh());
  after(() => scraped.close());

  it('counts outbound calls by service, route, direction, status and mesh error code', async () => {
    for (let i = 0; i < 3; i++) outbound(observer, 'charges', [{ status: 200 }], { status: 200 });
    outbound(observer, 'charges', [{ status: 503 }], { status: 503 });
    outbound(observer, 'default', [{ status: 404 }], { status: 404 });
    const meshError = new MeshError('NO_HEALTHY_ENDPOINT', 'none');
    outbound(observer, 'charges', [], { status: meshError.status, code: meshError.code });
    const text = await scraped.text();
    assert.deepEqual(sampleLines(text, 'mcp_requests_total'), [
      '{service="payments.default",route="charges",direction="outbound",code="200",error=""} 3',
      '{service="payments.default",route="charges",direction="outbound",code="503",error=""} 1',
      '{service="payments.default",route="charges",direction="outbound",code="503",error="NO_HEALTHY_ENDPOINT"} 1',
      '{service="payments.default",route="default",direction="outbound",code="404",error=""} 1',
    ]);
    assert.match(text, /^# TYPE mcp_requests_total counter$/m);
    assert.doesNotMatch(text, /charges\/42/, 'never a raw path');
  });

  it('counts retries (tries beyond the first) and every try by outcome', async () => {
    outbound(observer, 'charges', [{ status: 503 }, { status: 503 }, { status: 200 }], { status: 200 });
    outbound(observer, 'charges', [{ status: 502, code: 'LINK_BROKEN' }, { status: 200 }], { status: 200 });
    outbound(observer, 'charges', [{ status: 200 }], { status: 200 });
    outbound(observer, 'search', [{ status: 200 }], { status: 200 });
    const text = await scraped.text();
    assert.deepEqual(sampleLines(text, 'mcp_retries_total'), [
      '{service="payments.default",route="charges"} 3',
      '{service="payments.default",route="search"} 0',
    ], 'a route shows 0 retries from its first call, so rate() has a series');
    assert.deepEqual(sampleLines(text, 'mcp_attempts_total'), [
      '{service="payments.default",route="charges",code="200",error=""} 3',
      '{service="payments.default",route="charges",code="502",error="LINK_BROKEN"} 1',
      '{service="payments.default",route="charges",code="503",error=""} 2',
      '{service="payments.default",route="search",code="200",error=""} 1',
    ]);
    assert.equal(metricSum(text, 'mcp_requests_total', { route: 'charges' }), 3, 'a retried call is one request');
  });

  it('counts a call that failed before its policy applied under service="unknown", never the name the app used', async () => {
    for (const name of ['typo.default', 'random-1.default', 'random-2.default']) {
      outbound(observer, undefined, [], { status: 404, code: 'UNKNOWN_SERVICE' }, { ...OUT, service: name });
    }
    const text = await scraped.text();
    assert.deepEqual(sampleLines(text, 'mcp_requests_total'), [
      `{service="${UNKNOWN_SERVICE}",route="${NO_ROUTE}",direction="outbound",code="404",error="UNKNOWN_SERVICE"} 3`,
    ]);
    assert.doesNotMatch(text, /typo|random-/);
  });

  it('counts inbound calls under this sidecar\'s service, with the route from inboundRoute when given', async () => {
    inbound(observer, { status: 200 });
    inbound(observer, { status: 502, code: 'APP_UNAVAILABLE' });
    let text = await scraped.text();
    assert.deepEqual(sampleLines(text, 'mcp_requests_total'), [
      '{service="orders.default",route="",direction="inbound",code="200",error=""} 1',
      '{service="orders.default",route="",direction="inbound",code="502",error="APP_UNAVAILABLE"} 1',
    ]);
    assert.equal(sampleLines(text, 'mcp_retries_total').length, 0, 'retries are an outbound matter');

    await fresh({ inboundRoute: (start) => (start.path.startsWith('/orders') ? 'orders-write' : 'default') });
    inbound(observer, { status: 201 });
    inbound(observer, { status: 200 }, { ...IN, path: '/health' });
    text = await scraped.text();
    assert.deepEqual(sampleLines(text, 'mcp_requests_total'), [
      '{service="orders.default",route="default",direction="inbound",code="200",error=""} 1',
      '{service="orders.default",route="orders-write",direction="inbound",code="201",error=""} 1',
    ]);
  });

  it('puts each call in its latency bucket (upper bounds inclusive) with count and sum, per direction', async () => {
    // The observer reads performance.now(); a fake clock only while calls are recorded (the scrape
    // below runs on real timers).
    let now = 0;
    const clock = mock.method(performance, 'now', () => now);
    try {
      for (const seconds of [0.0003, 0.003, 0.005, 0.2, 45]) {
        now = 0;
        const call = observer.outbound(OUT);
        call.route('charges');
        now = seconds * 1000;
        call.end({ status: 200 }, 1);
      }
      now = 0;
      const call = observer.inbound(IN);
      now = 0.7;
      call.end({ status: 200 });
    } finally {
      clock.mock.restore();
    }
    const text = await scraped.text();
    const out = { service: 'payments.default', route: 'charges', direction: 'outbound' };
    const bucket = (le: string) => metricSum(text, 'mcp_latency_seconds_bucket', { ...out, le });
    assert.equal(bucket('0.0005'), 1);
    assert.equal(bucket('0.0025'), 1);
    assert.equal(bucket('0.005'), 3, '5 ms exactly is in le="0.005"');
    assert.equal(bucket('0.1'), 3);
    assert.equal(bucket('0.25'), 4);
    assert.equal(bucket('30'), 4);
    assert.equal(bucket('+Inf'), 5);
    assert.equal(metricSum(text, 'mcp_latency_seconds_count', out), 5);
    assert.ok(Math.abs(metricSum(text, 'mcp_latency_seconds_sum', out) - 45.2083) < 1e-9);
    const les = sampleLines(text, 'mcp_latency_seconds_bucket').filter((s) => s.includes('direction="outbound"')).map((s) => /le="([^"]+)"/.exec(s)![1]);
    assert.deepEqual(les.sort(), [...LATENCY_BUCKETS_SECONDS.map(String), '+Inf'].sort(), 'the documented buckets');
    const inb = { service: 'orders.default', route: '', direction: 'inbound' };
    assert.equal(metricSum(text, 'mcp_latency_seconds_bucket', { ...inb, le: '0.0005' }), 0);
    assert.equal(metricSum(text, 'mcp_latency_seconds_bucket', { ...inb, le: '0.001' }), 1);
    assert.equal(metricSum(text, 'mcp_latency_seconds_count', inb), 1);
    assert.match(text, /^# TYPE mcp_latency_seconds histogram$/m);
  });

  it('keeps at most DIRECT_SERIES_LIMIT series per metric, the rest in one overflow series', async () => {
    for (let i = 0; i < DIRECT_SERIES_LIMIT + 5; i++) scraped.metrics.retries.add(1, { service: `s${i}.default`, route: 'default' });
    const text = await scraped.text();
    assert.equal(sampleLines(text, 'mcp_retries_total').length, DIRECT_SERIES_LIMIT + 1);
    assert.equal(metricSum(text, 'mcp_retries_total', { otel_metric_overflow: 'true' }), 5);
  });
});

describe('runtime metrics', () => {
  let scraped: Scraped;
  let links: LinkPool;
  let breakers: BreakerRegistry;
  before(async () => {
    scraped = new Scraped();
    await scraped.start();
  });
  after(async () => {
    links?.close();
    breakers?.close();
    await scraped.close();
  });

  it('reads breakers, ejections, limiter queues and links at scrape time, and batch sizes as links write them', async () => {
    const table = compileValid([['payments.yaml', policy('payments', 'payments', [
      '  circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 }',
      '  outlierDetection: { consecutiveFailures: 1, maxEjectionPercent: 100 }',
      '  concurrency: { maxInFlight: 1, maxQueue: 5 }',
      '',
    ].join('\n'))]]);
    const effective = table.resolve('payments', 'default', { method: 'GET', path: '/', headers: [] });
    const services = new ServiceStates();
    breakers = new BreakerRegistry();
    links = new LinkPool(linkOptions);
    const earlier: number[] = [];
    links.onBatch = (_address, size) => earlier.push(size);
    registerRuntimeMetrics(scraped.metrics, { links, services, breakers });

    // Breakers: the service's open, one endpoint's open, one still closed.
    const refused = async () => { throw new MeshError('PEER_UNAVAILABLE', 'no link'); };
    await breakers.service('payments.default', effective.circuitBreaker).run(refused).catch(() => {});
    await breakers.endpoint('payments.default', '10.0.0.1:15001', effective.circuitBreaker).run(refused).catch(() => {});
    await breakers.endpoint('payments.default', '10.0.0.2:15001', effective.circuitBreaker).run(async () => ({ status: 200 }));
    // Outlier ejection: one failure ejects 10.0.0.1.
    const state = services.get('payments.default', effective);
    state.outlier.record('10.0.0.1:15001', false);
    state.outlier.record('10.0.0.2:15001', true);
    // Limiter: one call holds the only slot, two wait.
    const release = await state.limiter.acquire();
    const waiting = [state.limiter.acquire(), state.limiter.acquire()];
    // Links: a peer that is not there (connecting, then broken), and batches as a link reports them.
    links.sync(new Set(['127.0.0.1:1']));
    links.onBatch!('127.0.0.1:1', 3);
    links.onBatch!('127.0.0.1:1', 200);

    const text = await scraped.text();
    assert.deepEqual(sampleLines(text, 'mcp_circuit_breaker_state'), [
      '{service="payments.default",scope="endpoint",endpoint="10.0.0.1:15001"} 2',
      '{service="payments.default",scope="endpoint",endpoint="10.0.0.2:15001"} 0',
      '{service="payments.default",scope="service",endpoint=""} 2',
    ]);
    assert.deepEqual(sampleLines(text, 'mcp_outlier_ejected_endpoints'), ['{service="payments.default"} 1']);
    assert.deepEqual(sampleLines(text, 'mcp_queue_depth'), ['{queue="limiter",service="payments.default"} 2', '{queue="link",peer="127.0.0.1:1"} 0']);
    assert.equal(metricSum(text, 'mcp_links'), 1);
    assert.equal(sampleLines(text, 'mcp_links').length, 5, 'every state is shown, 0 or not');
    assert.deepEqual(sampleLines(text, 'mcp_link_in_flight'), ['{peer="127.0.0.1:1"} 0']);
    assert.deepEqual(earlier, [3, 200], 'a hook set before keeps being called');
    assert.equal(metricSum(text, 'mcp_link_batch_size_count'), 2);
    assert.equal(metricSum(text, 'mcp_link_batch_size_sum'), 203);
    assert.equal(metricSum(text, 'mcp_link_batch_size_bucket', { le: '4' }), 1);
    assert.equal(metricSum(text, 'mcp_link_batch_size_bucket', { le: '128' }), 1);
    assert.equal(metricSum(text, 'mcp_link_batch_size_bucket', { le: '256' }), 2);

    release();
    for (const next of waiting) (await next)(); // each waiter gets the slot as the one before lets it go
    assert.deepEqual(sampleLines(await scraped.text(), 'mcp_queue_depth').filter((l) => l.includes('limiter')), ['{queue="limiter",service="payments.default"} 0']);
  });
});
