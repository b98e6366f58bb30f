import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { binOf, createLiveStats, isError, IDLE_MS, MAX_SERIES, OTHER, WINDOW_SECONDS, type LiveStats } from '../../../sidecar/src/admin/live-stats.ts';
import type { InboundStart, OutboundStart } from '../../../sidecar/src/telemetry/observer.ts';

/** A clock the test moves by hand (ms). */
function clock(start = 100_000): { now: () => number; advance(ms: number): void; set(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; }, set: (ms) => { t = ms; } };
}

const out = (service = 'payments.default'): OutboundStart => ({ service, method: 'GET', path: '/x', headers: [], kind: 'call' });
const inb = (source = 'orders.default'): InboundStart => ({ service: 'payments.default', source, method: 'GET', path: '/x', headers: [], trace: undefined, messageId: undefined });

/** One outbound call of `ms` to `endpoint`, ending with `status` (and `code`), tried `tries` times. */
function call(stats: LiveStats, c: ReturnType<typeof clock>, ms: number, status = 200, options: { code?: string; endpoint?: string; tries?: number; service?: string } = {}): void {
  const observed = stats.observer.outbound(out(options.service));
  const tries = options.tries ?? 1;
  for (let i = 1; i <= tries; i++) {
    const attempt = observed.attempt(i, options.endpoint ?? '10.0.0.1:15002', 'closed');
    c.advance(ms / tries);
    attempt.end(i < tries ? { status: 503 } : { status, ...(options.code ? { code: options.code } : {}) });
  }
  observed.end({ status, ...(options.code ? { code: options.code } : {}) }, tries);
}

describe('live stats', () => {
  it('an idle sidecar has nothing to show', () => {
    const stats = createLiveStats({ now: clock().now });
    assert.deepEqual(stats.snapshot(), { windowSeconds: WINDOW_SECONDS, outbound: [], inbound: [] });
  });

  it('rates are per second over the last 10 s, sliding', () => {
    const c = clock(0);
    const stats = createLiveStats({ now: c.now });
    // 20 calls a second for 15 s (each 1 ms long).
    for (let s = 0; s < 15; s++) for (let i = 0; i < 20; i++) { c.set(s * 1000 + i * 50); call(stats, c, 1); }
    c.set(15_000);
    const [payments] = stats.snapshot().outbound;
    assert.equal(payments!.service, 'payments.default');
    assert.equal(payments!.requestsPerSecond, 20);
    assert.deepEqual(payments!.perSecond, new Array(10).fill(20));
    assert.equal(payments!.total.requests, 300);
    // Five seconds later, only the last five seconds of calls are left in the window.
    c.set(20_000);
    assert.equal(stats.snapshot().outbound[0]!.requestsPerSecond, 10);
    assert.deepEqual(stats.snapshot().outbound[0]!.perSecond, [20, 20, 20, 20, 20, 0, 0, 0, 0, 0]);
    // Half a second further, the oldest second with calls is half out of the window.
    c.set(20_500);
    assert.equal(stats.snapshot().outbound[0]!.requestsPerSecond, 9);
    c.set(40_000);
    const idle = stats.snapshot().outbound[0]!;
    assert.equal(idle.requestsPerSecond, 0);
    assert.equal(idle.latencyMs, null);
    assert.equal(idle.errorRate, null);
  });

  it('a series younger than the window is rated over its own age', () => {
    const c = clock(0);
    const stats = createLiveStats({ now: c.now });
    for (let i = 0; i < 40; i++) { c.set(i * 50); call(stats, c, 1); } // 40 calls in 2 s
    c.set(2000);
    assert.equal(stats.snapshot().outbound[0]!.requestsPerSecond, 20);
  });

  it('latency percentiles come from the calls in the window, within ±5 %', () => {
    const c = clock(0);
    const stats = createLiveStats({ now: c.now });
    // 1..1000 ms, one each: p50 ≈ 500, p90 ≈ 900, p99 ≈ 990, max 1000.
    const order = Array.from({ length: 1000 }, (_, i) => ((i * 7919) % 1000) + 1);
    for (const ms of order) { c.set(0); call(stats, c, ms); }
    c.set(1500);
    const latency = stats.snapshot().outbound[0]!.latencyMs!;
    for (const [got, want] of [[latency.p50, 500], [latency.p90, 900], [latency.p99, 990]] as const) {
      assert.ok(Math.abs(got - want) / want <= 0.05, `${got} within 5% of ${want}`);
    }
    assert.equal(latency.max, 1000);
  });

  it('percentiles never leave the range of the values seen', () => {
    const c = clock(0);
    const stats = createLiveStats({ now: c.now });
    for (let i = 0; i < 10; i++) { c.set(0); call(stats, c, 3.2); }
    c.set(500);
    const latency = stats.snapshot().outbound[0]!.latencyMs!;
    assert.deepEqual(latency, { p50: 3.2, p90: 3.2, p99: 3.2, max: 3.2 });
  });

  it('errors: a 5xx or a mesh error code; counts by status class; retries', () => {
    const c = clock(0);
    const stats = createLiveStats({ now: c.now });
    call(stats, c, 1, 200);
    call(stats, c, 1, 404);
    call(stats, c, 1, 503);
    call(stats, c, 1, 429, { code: 'RATE_LIMITED' });
    call(stats, c, 1, 200, { tries: 3 });
    c.set(1000);
    const s = stats.snapshot().outbound[0]!;
    assert.deepEqual(s.statusClasses, { '1xx': 0, '2xx': 2, '3xx': 0, '4xx': 2, '5xx': 1 });
    assert.equal(s.errorRate, 0.4);
    assert.equal(s.errorsPerSecond, 2);
    assert.equal(s.retriesPerSecond, 2);
    assert.deepEqual(s.total, { requests: 5, errors: 2 });
    // Per endpoint, each try counts: the 2 retried-away tries were 503s.
    const endpoint = s.endpoints[0]!;
    assert.equal(endpoint.address, '10.0.0.1:15002');
    assert.equal(endpoint.total.requests, 7);
    assert.equal(endpoint.total.errors, 4);
    assert.equal(isError({ status: 499, code: 'CLIENT_CLOSED' }), true);
    assert.equal(isError({ status: 404 }), false);
  });

  it('counts calls in flight, per service and per endpoint', () => {
    const c = clock();
    const stats = createLiveStats({ now: c.now });
    const a = stats.observer.outbound(out());
    const tryA = a.attempt(1, 'e1', 'closed');
    const b = stats.observer.outbound(out());
    b.attempt(1, 'e2', 'closed');
    let s = stats.snapshot().outbound[0]!;
    assert.equal(s.inFlight, 2);
    assert.deepEqual(s.endpoints.map((e) => [e.address, e.inFlight]), [['e1', 1], ['e2', 1]]);
    tryA.end({ status: 200 });
    a.end({ status: 200 }, 1);
    s = stats.snapshot().outbound[0]!;
    assert.equal(s.inFlight, 1);
    assert.deepEqual(s.endpoints.map((e) => [e.address, e.inFlight]), [['e1', 0], ['e2', 1]]);
  });

  it('inbound calls are counted per calling service, and the app call adds nothing', () => {
    const c = clock(0);
    const stats = createLiveStats({ now: c.now });
    for (const source of ['orders.default', 'orders.default', 'billing.finance']) {
      const observed = stats.observer.inbound(inb(source));
      const app = observed.appCall();
      assert.deepEqual(app.headers, []);
      c.advance(4);
      app.end({ status: 200 });
      observed.end({ status: 200 });
    }
    c.set(1000);
    const inbound = stats.snapshot().inbound;
    assert.deepEqual(inbound.map((s) => [s.source, s.total.requests]), [['billing.finance', 1], ['orders.default', 2]]);
    assert.equal(inbound[1]!.latencyMs!.p50, 4);
  });

  it('memory is bounded: series past the cap share one, idle series are dropped', () => {
    const c = clock(0);
    const stats = createLiveStats({ now: c.now });
    for (let i = 0; i < MAX_SERIES + 50; i++) call(stats, c, 1, 404, { service: `made-up-${i}.default`, endpoint: 'e' });
    const snapshot = stats.snapshot();
    // Each service made also has an endpoint series: half the cap goes to services.
    assert.ok(snapshot.outbound.length <= MAX_SERIES / 2 + 2, `${snapshot.outbound.length} services kept`);
    const other = snapshot.outbound.find((s) => s.service === OTHER);
    assert.ok(other && other.total.requests > 0, 'the rest is counted together');
    c.advance(IDLE_MS + 1);
    assert.deepEqual(stats.snapshot().outbound, [], 'idle series are dropped');
    call(stats, c, 1, 200, { service: 'again.default' });
    assert.deepEqual(stats.snapshot().outbound.map((s) => s.service), ['again.default'], 'room again after the drop');
  });

  it('bins: monotonic, 10 % wide', () => {
    assert.equal(binOf(0), 0);
    assert.equal(binOf(-1), 0);
    assert.equal(binOf(Number.NaN), 0);
    let previous = 0;
    for (let ms = 0.01; ms < 1e6; ms *= 1.03) {
      const bin = binOf(ms);
      assert.ok(bin >= previous);
      previous = bin;
    }
    assert.ok(binOf(1.1) - binOf(1) <= 1);
  });
});
