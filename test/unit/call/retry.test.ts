// The retry layer with a fake `next`: which outcomes are tried again, what the answer and the final
// error say about the tries, and that a call ended by its signal ends with the signal's reason.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { Call } from '../../../sidecar/src/call/call.ts';
import type { CallResult } from '../../../sidecar/src/call/pipeline.ts';
import { retryLayer } from '../../../sidecar/src/call/retry.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { answer, settings, testCall } from './fixtures.ts';

const logger = pino({ level: 'silent' });
/** Three tries, no back-off wait, a budget that always has room. */
const threeTries = settings((p) => ({ retries: { ...p.retries, attempts: 3, retryOn: ['5xx', 'connect-failure'], backoffBaseMs: 0, backoffMaxMs: 0, budget: { ...p.retries.budget, minPerSecond: 1000 } } }));

function scripted(outcomes: (CallResult | MeshError)[]): { next: (call: Call) => Promise<CallResult>; tries: number[] } {
  const tries: number[] = [];
  return {
    tries,
    next: async (call) => {
      tries.push(call.attempt);
      const outcome = outcomes[tries.length - 1]!;
      if (outcome instanceof MeshError) throw outcome;
      return outcome;
    },
  };
}

describe('retry layer', () => {
  it('tries a 503 again and tells the app how many tries it took', async () => {
    const { next, tries } = scripted([answer(503), answer(503), answer(200)]);
    const result = await retryLayer({ logger })(next)(testCall({}, threeTries));
    assert.equal(result.status, 200);
    assert.deepEqual(tries, [1, 2, 3]);
    assert.deepEqual(result.headers, [{ name: 'mcp-mesh-attempts', value: '3' }]);
  });

  it('ends with the last try\'s own error, told the number of tries once', async () => {
    const last = new MeshError('PEER_UNAVAILABLE', 'third', { service: 'payments.default' });
    const { next } = scripted([new MeshError('PEER_UNAVAILABLE', 'first'), new MeshError('PEER_UNAVAILABLE', 'second'), last]);
    await assert.rejects(retryLayer({ logger })(next)(testCall({}, threeTries)), (err) => {
      assert.equal(err, last, 'the error the transport made, not a copy');
      assert.equal(last.attempts, 3);
      return true;
    });
  });

  it('does not replay a POST that may have reached the app, nor a 200', async () => {
    const post = scripted([answer(503)]);
    assert.equal((await retryLayer({ logger })(post.next)(testCall({ method: 'POST' }, threeTries))).status, 503);
    assert.deepEqual(post.tries, [1]);
    const ok = scripted([answer(200)]);
    await retryLayer({ logger })(ok.next)(testCall({}, threeTries));
    assert.deepEqual(ok.tries, [1]);
  });

  it('stops when the retry budget is spent', async () => {
    const noBudget = settings((p) => ({ retries: { ...p.retries, attempts: 3, retryOn: ['5xx'], backoffBaseMs: 0, backoffMaxMs: 0, budget: { ...p.retries.budget, ratio: 0, minPerSecond: 0 } } }));
    const { next, tries } = scripted([answer(503), answer(200)]);
    assert.equal((await retryLayer({ logger })(next)(testCall({}, noBudget))).status, 503);
    assert.deepEqual(tries, [1]);
  });

  it('a call whose signal aborted ends with the signal\'s reason, not the try\'s error', async () => {
    const call = testCall({}, threeTries);
    const deadline = new MeshError('DEADLINE_EXCEEDED', 'no answer from payments.default within 5 ms', { service: 'payments.default' });
    const next = async () => {
      call.request.cancel.abort(deadline);
      throw new MeshError('CLIENT_CLOSED', 'call cancelled');
    };
    await assert.rejects(retryLayer({ logger })(next)(call), (err) => err === deadline && deadline.attempts === 1);
  });

  it('follows the rule it was built with (egress: connect failures only), and may leave the answer untouched', async () => {
    const { next, tries } = scripted([new MeshError('APP_UNAVAILABLE', 'refused'), answer(503)]);
    const onlyFirst = retryLayer({ logger, answerAttempts: false, rule: (_call, _outcome, attempt) => attempt === 1 ? { retry: true, conditions: ['connect-failure'] } : { retry: false, reason: 'no' } });
    const result = await onlyFirst(next)(testCall({}, threeTries));
    assert.equal(result.status, 503);
    assert.deepEqual(tries, [1, 2]);
    assert.deepEqual(result.headers, [], 'no mcp-mesh-attempts');
  });
});
