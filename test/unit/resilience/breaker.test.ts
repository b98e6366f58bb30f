import { describe, it, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Breaker, BreakerRegistry, CircuitOpenError, failureStatuses, isBreakerFailure, type BreakerState } from '../../../sidecar/src/resilience/breaker.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import type { CircuitBreakerPolicy } from '../../../sidecar/src/policy/types.ts';

const FIVE_XX = Array.from({ length: 100 }, (_, i) => 500 + i);
const policy: CircuitBreakerPolicy = Object.freeze({
  enabled: true,
  errorThresholdPercentage: 50,
  volumeThreshold: 4,
  rollingWindowMs: 10_000,
  resetTimeoutMs: 5_000,
  failureStatuses: FIVE_XX,
});

const answer = (status: number) => async () => ({ status });
const refused = async () => { throw new MeshError('PEER_UNAVAILABLE', 'no link'); };

/** Fails `n` calls with a connection error, swallowing the rejections. */
async function failTimes(breaker: Breaker, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await breaker.run(refused).catch(() => {});
}

describe('Breaker', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  it('stays closed below the volume threshold, opens once it is reached and the error rate is over it', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    await failTimes(breaker, 3);
    assert.equal(breaker.state, 'closed', '3 calls < volumeThreshold 4: too few to judge');
    await failTimes(breaker, 1);
    assert.equal(breaker.state, 'open');
    assert.equal(breaker.refusing, true);
  });

  it('does not open while the error rate is at or below the threshold', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    const isFailure = failureStatuses(policy);
    for (let i = 0; i < 10; i++) {
      await breaker.run(answer(200), isFailure);
      await breaker.run(answer(500), isFailure);
    }
    assert.equal(breaker.state, 'closed', '50% failures is not over a 50% threshold');
    assert.deepEqual(breaker.stats(), { service: 'pay', state: 'closed', calls: 20, failures: 10, rejected: 0 });
  });

  it('fails fast while open, without running the attempt, with a service-scoped CIRCUIT_OPEN', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    await failTimes(breaker, 4);
    let ran = false;
    await assert.rejects(breaker.run(async () => { ran = true; return 1; }), (err: unknown) => {
      assert.ok(err instanceof CircuitOpenError);
      assert.equal(err.code, 'CIRCUIT_OPEN');
      assert.equal(err.status, 503);
      assert.equal(err.scope, 'service');
      assert.equal(err.service, 'pay');
      return true;
    });
    assert.equal(ran, false);
    assert.equal(breaker.stats().rejected, 1);
  });

  it('lets exactly one probe through once resetTimeout has passed, and closes when it succeeds', async () => {
    const breaker = new Breaker('pay', 'ep1:15002', policy);
    await failTimes(breaker, 4);
    mock.timers.tick(4_999);
    assert.equal(breaker.state, 'open');
    mock.timers.tick(1);
    assert.equal(breaker.state, 'half-open');
    assert.equal(breaker.refusing, false, 'the probe slot is free');

    let finishProbe!: (v: { status: number }) => void;
    const probe = breaker.run(() => new Promise<{ status: number }>((resolve) => { finishProbe = resolve; }), failureStatuses(policy));
    assert.equal(breaker.refusing, true, 'probe out: others are refused');
    await assert.rejects(breaker.run(answer(200)), (err: unknown) => err instanceof CircuitOpenError && err.scope === 'endpoint');

    finishProbe({ status: 200 });
    assert.deepEqual(await probe, { status: 200 });
    assert.equal(breaker.state, 'closed');
  });

  it('reopens on a failed probe and refuses again for another resetTimeout', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    await failTimes(breaker, 4);
    mock.timers.tick(5_000);
    assert.equal(breaker.state, 'half-open');
    await assert.rejects(breaker.run(refused), /no link/, 'the probe\'s own error reaches the caller');
    assert.equal(breaker.state, 'open');
    mock.timers.tick(4_999);
    await assert.rejects(breaker.run(answer(200)), CircuitOpenError);
    mock.timers.tick(1);
    assert.equal(breaker.state, 'half-open');
  });

  it('starts from a clean window after closing: one failure right after recovery does not reopen it', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    await failTimes(breaker, 4);
    mock.timers.tick(5_000);
    await breaker.run(answer(200));
    assert.equal(breaker.state, 'closed');
    await failTimes(breaker, 1);
    assert.equal(breaker.state, 'closed', 'the old failures were cleared with the close');
    assert.equal(breaker.stats().failures, 1);
  });

  it('counts a listed 503 answer as a failure but still returns it to the caller', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    const isFailure = failureStatuses(policy);
    for (let i = 0; i < 4; i++) assert.deepEqual(await breaker.run(answer(503), isFailure), { status: 503 });
    assert.equal(breaker.state, 'open');
  });

  it('never counts a 4xx answer unless the policy lists it', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    const isFailure = failureStatuses(policy);
    for (const status of [404, 401, 409, 429, 404, 404, 401, 400]) await breaker.run(answer(status), isFailure);
    assert.equal(breaker.state, 'closed');
    assert.equal(breaker.stats().failures, 0);

    const strict = { ...policy, failureStatuses: [...FIVE_XX, 429] };
    const listed = new Breaker('pay', undefined, strict);
    for (let i = 0; i < 4; i++) await listed.run(answer(429), failureStatuses(strict));
    assert.equal(listed.state, 'open', '429 listed: counted');
  });

  it('does not count errors that say nothing about the service (caller gone), except on the probe', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    const gone = async () => { throw new MeshError('CLIENT_CLOSED', 'app went away'); };
    for (let i = 0; i < 6; i++) await assert.rejects(breaker.run(gone), /app went away/);
    assert.equal(breaker.state, 'closed');

    await failTimes(breaker, 10); // 10 failures out of 16 calls: 62% > 50%
    assert.equal(breaker.state, 'open');
    mock.timers.tick(5_000);
    await assert.rejects(breaker.run(gone));
    assert.equal(breaker.state, 'open', 'a probe that got no answer does not prove the service is back');
  });

  it('forgets failures older than the rolling window', async () => {
    const breaker = new Breaker('pay', undefined, policy);
    await failTimes(breaker, 3);
    mock.timers.tick(10_000);
    await failTimes(breaker, 1);
    assert.equal(breaker.state, 'closed', 'only 1 call left in the window');
    assert.equal(breaker.stats().calls, 1);
  });

  it('reports transitions', async () => {
    const seen: BreakerState[] = [];
    const breaker = new Breaker('pay', undefined, policy, { onStateChange: (_b, state) => seen.push(state) });
    await failTimes(breaker, 4);
    mock.timers.tick(5_000);
    await breaker.run(answer(200));
    assert.deepEqual(seen, ['open', 'half-open', 'closed']);
  });

  it('is a pass-through when disabled', async () => {
    const breaker = new Breaker('pay', undefined, { ...policy, enabled: false });
    await failTimes(breaker, 50);
    assert.equal(breaker.state, 'closed');
    assert.equal(await breaker.run(async () => 7), 7);
  });
});

describe('isBreakerFailure', () => {
  it('counts failures to answer, not refusals or caller errors', () => {
    for (const code of ['PEER_UNAVAILABLE', 'LINK_BROKEN', 'APP_UNAVAILABLE', 'APP_RESET', 'DEADLINE_EXCEEDED'] as const) {
      assert.equal(isBreakerFailure(new MeshError(code, 'x')), true, code);
    }
    for (const code of ['CLIENT_CLOSED', 'BAD_REQUEST', 'SHUTTING_DOWN', 'OVERLOADED', 'CIRCUIT_OPEN', 'INTERNAL'] as const) {
      assert.equal(isBreakerFailure(new MeshError(code, 'x')), false, code);
    }
    assert.equal(isBreakerFailure(new Error('plain')), false);
  });
});

describe('BreakerRegistry', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  it('keeps one breaker per endpoint: one endpoint opening leaves the others and the service closed', async () => {
    const registry = new BreakerRegistry();
    await failTimes(registry.endpoint('pay', 'a:1', policy), 4);
    await registry.endpoint('pay', 'b:1', policy).run(answer(200));
    assert.equal(registry.isOpen('pay', 'a:1', policy), true);
    assert.equal(registry.isOpen('pay', 'b:1', policy), false);
    assert.equal(registry.isOpen('pay', undefined, policy), false);
    assert.equal(registry.isOpen('other', 'a:1', policy), false, 'keyed by service and address');
    assert.equal(registry.state('pay', 'a:1', policy), 'open');
    assert.equal(registry.state('nope', undefined, policy), undefined);
    registry.close();
  });

  it('shares a breaker between equal settings and keeps one of its own for different settings', async () => {
    const registry = new BreakerRegistry();
    const first = registry.service('pay', policy);
    await failTimes(first, 4);
    assert.equal(registry.service('pay', { ...policy, failureStatuses: [...FIVE_XX] }), first, 'equal values: same breaker');
    assert.equal(registry.isOpen('pay', undefined, policy), true);
    const routeOwn = { ...policy, resetTimeoutMs: 1_000 };
    const other = registry.service('pay', routeOwn);
    assert.notEqual(other, first);
    assert.equal(other.state, 'closed', 'different settings start afresh');
    // Calls alternating between the two settings (a route with its own breaker and the rest of the
    // service) must not reset either one.
    assert.equal(registry.service('pay', policy), first);
    assert.equal(first.state, 'open', 'the service breaker kept its state');
    registry.close();
  });

  it('peerRecovered closes the endpoint breakers of that address and the service breakers it serves', async () => {
    const registry = new BreakerRegistry();
    await failTimes(registry.endpoint('pay', 'a:1', policy), 4);
    await failTimes(registry.service('pay', policy), 4);
    await failTimes(registry.service('ledger', policy), 4);
    registry.peerRecovered('a:1', ['pay']);
    assert.equal(registry.isOpen('pay', 'a:1', policy), false);
    assert.equal(registry.isOpen('pay', undefined, policy), false);
    assert.equal(registry.isOpen('ledger', undefined, policy), true, 'a service the peer does not serve stays open');
    registry.close();
  });

  it('drops endpoint breakers whose address left discovery, keeping service breakers', async () => {
    const registry = new BreakerRegistry();
    registry.service('pay', policy);
    await failTimes(registry.endpoint('pay', 'a:1', policy), 4);
    registry.endpoint('pay', 'b:1', policy);
    registry.retain(new Set(['b:1']));
    assert.deepEqual(registry.snapshot().map((s) => `${s.service}@${s.address ?? ''}`).sort(), ['pay@', 'pay@b:1']);
    assert.equal(registry.isOpen('pay', 'a:1', policy), false);
    registry.close();
  });
});
