import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFinalAnswer, nextAttempt, outcomeOfError, outcomeOfStatus } from '../../../sidecar/src/async/outcome.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import type { AsyncPolicy } from '../../../sidecar/src/policy/types.ts';

const policy: AsyncPolicy = { attempts: 5, backoffBaseMs: 100, backoffMaxMs: 1000, maxAgeMs: 10_000, attemptTimeoutMs: 1000 };

describe('delivery outcomes', () => {
  it('2xx/3xx deliver, final 4xx fail, 5xx and 408/425/429 retry', () => {
    assert.equal(outcomeOfStatus(200, undefined).kind, 'delivered');
    assert.equal(outcomeOfStatus(302, undefined).kind, 'delivered');
    assert.equal(outcomeOfStatus(404, undefined).kind, 'failed');
    for (const status of [408, 425, 429, 500, 502, 503]) assert.equal(outcomeOfStatus(status, undefined).kind, 'retry', String(status));
    assert.deepEqual([200, 404, 429, 500].map(isFinalAnswer), [true, true, false, false]);
  });

  it('a Retry-After in seconds is kept for the back-off', () => {
    assert.deepEqual(outcomeOfStatus(503, '2'), { kind: 'retry', error: { code: 'APP_STATUS', message: 'the app answered 503', status: 503 }, retryAfterMs: 2000 });
  });

  it('session errors and bad requests cannot be cured by redelivery; link errors can', () => {
    assert.equal(outcomeOfError(new MeshError('SESSION_OWNER_GONE', 'x')).kind, 'failed');
    assert.equal(outcomeOfError(new MeshError('LINK_BROKEN', 'x')).kind, 'retry');
    assert.equal(outcomeOfError(new MeshError('DEADLINE_EXCEEDED', 'x')).kind, 'retry');
    assert.equal(outcomeOfError(new Error('boom')).kind, 'retry');
  });

  it('refusals (nothing reached an app) delay without using up attempts', () => {
    for (const code of ['CIRCUIT_OPEN', 'NO_HEALTHY_ENDPOINT', 'OVERLOADED', 'PEER_UNAVAILABLE', 'SHUTTING_DOWN'] as const) {
      assert.equal(outcomeOfError(new MeshError(code, 'x')).kind, 'refused', code);
    }
  });

  it('the next time is a whole number of ms, and the back-off grows with failures, refusals included', () => {
    const at = nextAttempt(policy, { attempts: 1, failures: 1, createdAt: 0 }, 0.5, 0, () => 0.3333);
    assert.ok(!at.dead && Number.isInteger(at.at), JSON.stringify(at));
    assert.deepEqual(nextAttempt(policy, { attempts: 0, failures: 3, createdAt: 0 }, 0, 0, () => 1), { dead: false, at: 400 });
  });

  it('back-off: full jitter up to base × 2^(n−1), capped by max', () => {
    const at = (attempts: number, random: number) => nextAttempt(policy, { attempts, failures: attempts, createdAt: 0 }, 0, 0, () => random);
    assert.deepEqual(at(1, 1), { dead: false, at: 100 });
    assert.deepEqual(at(3, 1), { dead: false, at: 400 });
    assert.deepEqual(at(4, 0.5), { dead: false, at: 400 });
    assert.deepEqual(at(4, 1), { dead: false, at: 800 });
  });

  it('out of attempts, or past the maximum age: dead', () => {
    assert.equal(nextAttempt(policy, { attempts: 5, failures: 5, createdAt: 0 }, 0).dead, true);
    assert.equal(nextAttempt(policy, { attempts: 1, failures: 1, createdAt: 0 }, 9_950, 0, () => 1).dead, true, 'the next try would be past 10 s');
    assert.equal(nextAttempt({ ...policy, maxAgeMs: 0 }, { attempts: 1, failures: 1, createdAt: 0 }, 1e9, 0, () => 1).dead, false, '0: no age limit');
  });

  it('waits at least what Retry-After asked, within the back-off max', () => {
    assert.deepEqual(nextAttempt(policy, { attempts: 1, failures: 1, createdAt: 0 }, 0, 700, () => 0), { dead: false, at: 700 });
    assert.deepEqual(nextAttempt(policy, { attempts: 1, failures: 1, createdAt: 0 }, 0, 60_000, () => 0), { dead: false, at: 1000 });
  });
});
