import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  backoffDelay, isIdempotent, retryAfterMs, retryConditions, retryDelay, RetryBudget, shouldRetry,
  type AttemptOutcome, type RetryContext,
} from '../../../sidecar/src/resilience/retry.ts';
import { CircuitOpenError } from '../../../sidecar/src/resilience/breaker.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import type { ErrorCode } from '../../../sidecar/src/errors/codes.ts';
import type { RetryCondition, RetryPolicy } from '../../../sidecar/src/policy/types.ts';

const ALL: RetryCondition[] = ['connect-failure', 'refused-stream', 'reset', 'unavailable', 'gateway-error', '5xx', 'retriable-status-codes', 'retriable-4xx'];
const policy: RetryPolicy = Object.freeze({
  attempts: 3,
  backoffBaseMs: 25,
  backoffMaxMs: 250,
  retryOn: ALL,
  statusCodes: [429],
  nonIdempotent: false,
  maxReplayBodyBytes: 65_536,
  honorRetryAfter: true,
  budget: { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 },
});

const err = (code: ErrorCode): AttemptOutcome => ({ error: new MeshError(code, code) });
const ctx = (outcome: AttemptOutcome, over: Partial<RetryContext> = {}): RetryContext => ({ method: 'GET', bodyBytes: 0, attempt: 1, outcome, ...over });

describe('isIdempotent', () => {
  it('knows the RFC 9110 idempotent methods, in any case', () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE', 'get']) assert.equal(isIdempotent(m), true, m);
    for (const m of ['POST', 'PATCH', 'CONNECT', 'post']) assert.equal(isIdempotent(m), false, m);
  });
});

describe('retryConditions', () => {
  it('classifies mesh errors by where the call stopped', () => {
    const cases: [ErrorCode, RetryCondition[]][] = [
      ['PEER_UNAVAILABLE', ['connect-failure', '5xx']],
      ['NO_HEALTHY_ENDPOINT', ['connect-failure', '5xx']],
      ['SHUTTING_DOWN', ['refused-stream', '5xx']],
      ['OVERLOADED', ['refused-stream', '5xx']],
      ['SESSION_LIMIT', ['refused-stream', '5xx']],
      ['LINK_BROKEN', ['reset', '5xx']],
      ['APP_RESET', ['reset', '5xx']],
      ['APP_UNAVAILABLE', ['gateway-error', '5xx']],
      ['CIRCUIT_OPEN', []],
      ['DEADLINE_EXCEEDED', []],
      ['CLIENT_CLOSED', []],
      ['INTERNAL', []],
      ['BAD_REQUEST', []],
    ];
    for (const [code, expected] of cases) assert.deepEqual(retryConditions(err(code)), expected, code);
  });

  it('treats a per-try timeout as a gateway error but the overall deadline as final', () => {
    const timeout = new MeshError('DEADLINE_EXCEEDED', 'try timed out');
    assert.deepEqual(retryConditions({ error: timeout, perTryTimeout: true }), ['gateway-error', '5xx']);
    assert.deepEqual(retryConditions({ error: timeout }), []);
  });

  it('lets an endpoint breaker refusal go elsewhere, never a service breaker refusal', () => {
    assert.deepEqual(retryConditions({ error: new CircuitOpenError('pay', 'a:1') }), ['refused-stream']);
    assert.deepEqual(retryConditions({ error: new CircuitOpenError('pay') }), []);
  });

  it('classifies statuses', () => {
    assert.deepEqual(retryConditions({ status: 503 }), ['5xx', 'gateway-error', 'unavailable']);
    assert.deepEqual(retryConditions({ status: 502 }), ['5xx', 'gateway-error']);
    assert.deepEqual(retryConditions({ status: 504 }), ['5xx', 'gateway-error']);
    assert.deepEqual(retryConditions({ status: 500 }), ['5xx']);
    assert.deepEqual(retryConditions({ status: 409 }), ['retriable-4xx']);
    assert.deepEqual(retryConditions({ status: 429 }, [429]), ['retriable-status-codes']);
    assert.deepEqual(retryConditions({ status: 429 }), []);
    assert.deepEqual(retryConditions({ status: 200 }), []);
    assert.deepEqual(retryConditions({ status: 404 }), []);
  });

  it('does not retry on errors that are not mesh errors', () => {
    assert.deepEqual(retryConditions({ error: new Error('boom') }), []);
  });
});

describe('shouldRetry', () => {
  it('retries an idempotent request on a listed condition while tries are left', () => {
    assert.deepEqual(shouldRetry(policy, ctx({ status: 503 })), { retry: true, conditions: ['5xx', 'gateway-error', 'unavailable'] });
    assert.equal(shouldRetry(policy, ctx({ status: 503 }, { attempt: 2 })).retry, true);
    assert.equal(shouldRetry(policy, ctx({ status: 503 }, { attempt: 3 })).retry, false, '3 tries made of 3');
  });

  it('only retries conditions listed in retryOn', () => {
    const narrow = { ...policy, retryOn: ['connect-failure', 'reset'] as RetryCondition[] };
    assert.equal(shouldRetry(narrow, ctx({ status: 503 })).retry, false);
    assert.equal(shouldRetry(narrow, ctx(err('LINK_BROKEN'))).retry, true);
    assert.deepEqual(shouldRetry(narrow, ctx(err('PEER_UNAVAILABLE'))), { retry: true, conditions: ['connect-failure'] });
    assert.equal(shouldRetry({ ...policy, retryOn: ['unavailable'] }, ctx({ status: 502 })).retry, false, '502 is not "unavailable"');
  });

  it('retries a POST that never reached the app, but not one that may have', () => {
    assert.equal(shouldRetry(policy, ctx(err('PEER_UNAVAILABLE'), { method: 'POST' })).retry, true);
    assert.equal(shouldRetry(policy, ctx(err('SHUTTING_DOWN'), { method: 'POST' })).retry, true);
    assert.equal(shouldRetry(policy, ctx(err('OVERLOADED'), { method: 'PATCH' })).retry, true);
    assert.equal(shouldRetry(policy, ctx({ error: new CircuitOpenError('pay', 'a:1') }, { method: 'POST' })).retry, true);
    const reset = shouldRetry(policy, ctx(err('LINK_BROKEN'), { method: 'POST' }));
    assert.equal(reset.retry, false);
    assert.match(!reset.retry ? reset.reason : '', /not idempotent/);
    assert.equal(shouldRetry(policy, ctx({ status: 503 }, { method: 'POST' })).retry, false);
  });

  it('retries non-idempotent methods when the route opts in', () => {
    const optIn = { ...policy, nonIdempotent: true };
    assert.equal(shouldRetry(optIn, ctx(err('LINK_BROKEN'), { method: 'POST' })).retry, true);
    assert.equal(shouldRetry(optIn, ctx({ status: 503 }, { method: 'POST' })).retry, true);
  });

  it('never replays a streamed body or one over maxReplayBodyBytes, even on a connect failure', () => {
    assert.equal(shouldRetry(policy, ctx(err('PEER_UNAVAILABLE'), { bodyBytes: 'stream' })).retry, false);
    assert.equal(shouldRetry(policy, ctx(err('PEER_UNAVAILABLE'), { bodyBytes: 65_537 })).retry, false);
    assert.equal(shouldRetry(policy, ctx(err('PEER_UNAVAILABLE'), { bodyBytes: 65_536 })).retry, true);
  });

  it('never retries an open service circuit or the overall deadline', () => {
    assert.equal(shouldRetry(policy, ctx({ error: new CircuitOpenError('pay') })).retry, false);
    assert.equal(shouldRetry(policy, ctx(err('DEADLINE_EXCEEDED'))).retry, false);
    assert.equal(shouldRetry(policy, ctx({ error: new MeshError('DEADLINE_EXCEEDED', 'x'), perTryTimeout: true })).retry, true);
  });
});

describe('backoffDelay', () => {
  it('is fully jittered under an exponential ceiling capped at backoffMaxMs', () => {
    const top = () => 1; // the ceiling itself
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(policy, n, top)), [25, 50, 100, 200, 250, 250]);
    assert.equal(backoffDelay(policy, 3, () => 0), 0, 'full jitter reaches down to 0');
    assert.equal(backoffDelay(policy, 3, () => 0.5), 50);
    assert.equal(backoffDelay(policy, 2_000, top), 250, 'no overflow for large retry numbers');
  });
});

describe('retryAfterMs', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const h = (value: string) => [{ name: 'Retry-After', value }];

  it('reads delta-seconds', () => {
    assert.equal(retryAfterMs(h('3'), now), 3000);
    assert.equal(retryAfterMs(h(' 0 '), now), 0);
  });

  it('reads the three HTTP-date forms as GMT', () => {
    assert.equal(retryAfterMs(h('Thu, 01 Jan 2026 12:00:05 GMT'), now), 5000);
    assert.equal(retryAfterMs(h('Thursday, 01-Jan-26 12:00:05 GMT'), now), 5000);
    assert.equal(retryAfterMs(h('Thu Jan  1 12:00:05 2026'), now), 5000);
  });

  it('gives 0 for a date in the past and undefined for absent or unreadable values', () => {
    assert.equal(retryAfterMs(h('Thu, 01 Jan 2026 11:00:00 GMT'), now), 0);
    assert.equal(retryAfterMs([], now), undefined);
    assert.equal(retryAfterMs(undefined, now), undefined);
    assert.equal(retryAfterMs(h('soon'), now), undefined);
    assert.equal(retryAfterMs(h('-5'), now), undefined);
    assert.equal(retryAfterMs(h('1.5'), now), undefined);
  });
});

describe('retryDelay', () => {
  const headers = [{ name: 'retry-after', value: '2' }];
  it('waits what a 503 or 429 asks when honoured, the back-off otherwise', () => {
    assert.equal(retryDelay(policy, 1, { status: 503, headers }, 0, () => 1), 2000);
    assert.equal(retryDelay(policy, 1, { status: 429, headers }, 0, () => 1), 2000);
    assert.equal(retryDelay(policy, 1, { status: 502, headers }, 0, () => 1), 25, 'Retry-After only for 503/429');
    assert.equal(retryDelay({ ...policy, honorRetryAfter: false }, 1, { status: 503, headers }, 0, () => 1), 25);
    assert.equal(retryDelay(policy, 2, { status: 503 }, 0, () => 1), 50, 'no header: back-off');
    assert.equal(retryDelay(policy, 2, err('LINK_BROKEN'), 0, () => 1), 50);
  });
});

describe('RetryBudget', () => {
  it('allows the floor when there is no traffic, then refuses', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000 }, { now: () => now });
    for (let i = 0; i < 10; i++) assert.equal(budget.tryAcquire(), true, `retry ${i + 1} of the 1/s × 10 s floor`);
    assert.equal(budget.tryAcquire(), false);
    assert.deepEqual(budget.snapshot(), { calls: 0, retries: 10 });
  });

  it('allows ratio × calls on top of the floor', () => {
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 0, windowMs: 10_000 }, { now: () => 0 });
    for (let i = 0; i < 100; i++) budget.recordCall();
    let granted = 0;
    while (budget.tryAcquire()) granted++;
    assert.equal(granted, 20);
  });

  it('frees the allowance as the window slides past old retries', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0, minPerSecond: 1, windowMs: 10_000 }, { now: () => now });
    for (let i = 0; i < 10; i++) budget.tryAcquire();
    assert.equal(budget.tryAcquire(), false);
    now = 9_999;
    assert.equal(budget.tryAcquire(), false, 'still inside the window');
    now = 10_000;
    assert.equal(budget.tryAcquire(), true, 'the first bucket slid out');
    now = 50_000;
    assert.deepEqual(budget.snapshot(), { calls: 0, retries: 0 });
  });

  it('forgets calls that left the window, so old traffic does not fund new retries', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 0, windowMs: 1_000 }, { now: () => now });
    for (let i = 0; i < 100; i++) budget.recordCall();
    now = 1_500;
    assert.equal(budget.tryAcquire(), false);
  });
});
