// The concurrency layer with a fake `next`: a slot per call, held across the call, waiting in line
// on the call's own signal.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { concurrencyLayer } from '../../../sidecar/src/call/concurrency.ts';
import type { CallResult } from '../../../sidecar/src/call/pipeline.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { answer, settings, testCall } from './fixtures.ts';

const one = settings((p) => ({ concurrency: { ...p.concurrency, maxInFlight: 1, maxQueue: 1 } }));

describe('concurrency layer', () => {
  it('holds a slot until the call ends (Call.end); the next call waits for it, a third is refused OVERLOADED', async () => {
    const first = testCall({}, one);
    let finish!: (result: CallResult) => void;
    const running = concurrencyLayer(() => new Promise((resolve) => { finish = resolve; }))(first);
    const second = testCall({}, one);
    second.state = first.state; // the same service under the same settings
    let secondRan = false;
    const waiting = concurrencyLayer(async () => { secondRan = true; return answer(200); })(second);
    const third = testCall({}, one);
    third.state = first.state;
    await assert.rejects(concurrencyLayer(async () => answer(200))(third), { code: 'OVERLOADED' });
    await Promise.resolve();
    assert.equal(secondRan, false, 'waits while the first holds the slot');
    finish(answer(200));
    await running;
    assert.equal(first.state!.limiter.inFlight, 1, 'held until the call ends, not only until the layer below answers');
    first.end();
    assert.equal((await waiting).status, 200);
    second.end();
    assert.equal(first.state!.limiter.inFlight, 0);
  });

  it('a waiting call leaves the line with its signal\'s reason', async () => {
    const first = testCall({}, one);
    let finish!: (result: CallResult) => void;
    const running = concurrencyLayer(() => new Promise((resolve) => { finish = resolve; }))(first);
    const second = testCall({}, one);
    second.state = first.state;
    const waiting = concurrencyLayer(async () => answer(200))(second);
    const deadline = new MeshError('DEADLINE_EXCEEDED', 'time is up', { service: 'payments.default' });
    second.request.cancel.abort(deadline);
    await assert.rejects(waiting, (err) => err === deadline);
    finish(answer(200));
    await running;
    first.end();
    assert.equal(first.state!.limiter.inFlight, 0, 'the call that left the line took no slot');
  });
});
