// The deadline layer with a fake `next`: one deadline per call, worked out once, aborting the call's
// own signal with DEADLINE_EXCEEDED naming the service.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deadlineLayer, deadlineOf } from '../../../sidecar/src/call/deadline.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { aborted, answer, settings, testCall } from './fixtures.ts';

describe('deadline layer', () => {
  it('takes the policy\'s deadline, or a shorter one the app asked for, never a longer one', () => {
    assert.equal(deadlineOf(undefined, 1000), 1000);
    assert.equal(deadlineOf(200, 1000), 200);
    assert.equal(deadlineOf(5000, 1000), 1000, 'an app cannot lengthen the policy\'s deadline');
    assert.equal(deadlineOf(0, 1000), 1000);
    assert.equal(deadlineOf(300, 0), 300, 'no policy deadline: the app\'s');
    assert.equal(deadlineOf(undefined, 0), 0, 'none at all');
    assert.equal(deadlineOf(2 ** 40, 0), 2 ** 31 - 1, 'capped at the longest Node timer');
  });

  it('aborts the call\'s own signal when the deadline passes, with an error naming the service', async () => {
    const call = testCall({ deadlineMs: 20 });
    let sawSignal: AbortSignal | undefined;
    const next = async () => {
      sawSignal = call.signal;
      throw await aborted(call.signal);
    };
    await assert.rejects(deadlineLayer(next)(call), (err) => {
      assert.ok(err instanceof MeshError);
      assert.equal(err.code, 'DEADLINE_EXCEEDED');
      assert.equal(err.service, 'payments.default');
      assert.match(err.message, /within 20 ms/);
      return true;
    });
    assert.equal(sawSignal, call.request.cancel.signal, 'the edge\'s signal, not one of its own');
    assert.ok(Number.isFinite(call.deadlineAt));
  });

  it('sets no deadline and no timer when neither policy nor app asks for one', async () => {
    const call = testCall({}, settings((p) => ({ timeouts: { ...p.timeouts, overallMs: 0 } })));
    assert.equal((await deadlineLayer(async () => answer(200))(call)).status, 200);
    assert.equal(call.deadlineAt, Infinity);
    assert.equal(call.signal.aborted, false);
  });
});
