import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineTimers } from '../../../sidecar/src/resilience/deadline-timers.ts';

/** Resolves with the ms between now and `fire` being called by a deadline of `ms`. */
function timed(timers: DeadlineTimers, ms: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => timers.start(ms, () => resolve(performance.now() - started)));
}

describe('DeadlineTimers', () => {
  it('fires each deadline once its time has passed (within a millisecond, as Node timers do)', async () => {
    const timers = new DeadlineTimers();
    const [a, b, c] = await Promise.all([timed(timers, 30), timed(timers, 10), timed(timers, 20)]);
    assert.ok(a >= 29 && b >= 9 && c >= 19, `fired after ${a}, ${b}, ${c} ms`);
    assert.ok(a < 200 && b < 200 && c < 200);
  });

  it('fires in order of expiry, equal ones in the order they were started', async () => {
    const timers = new DeadlineTimers();
    const order: string[] = [];
    timers.start(25, () => order.push('25'));
    timers.start(5, () => order.push('5a'));
    timers.start(15, () => order.push('15'));
    timers.start(5, () => order.push('5b'));
    await sleep(60);
    assert.deepEqual(order, ['5a', '5b', '15', '25']);
  });

  it('never fires a cancelled deadline, whether first, last or in between', async () => {
    const timers = new DeadlineTimers();
    const fired: number[] = [];
    const all = [5, 10, 15, 20].map((ms) => timers.start(ms, () => fired.push(ms)));
    all[0]!.cancel();
    all[2]!.cancel();
    all[3]!.cancel();
    all[3]!.cancel(); // twice is harmless
    await sleep(40);
    assert.deepEqual(fired, [10]);
  });

  it('arms again for a deadline started after an earlier one was cancelled, and for one started while firing', async () => {
    const timers = new DeadlineTimers();
    timers.start(50, () => assert.fail('cancelled')).cancel();
    const early = await timed(timers, 5);
    assert.ok(early < 45, `the new, earlier deadline fired at ${early} ms, not with the cancelled one`);
    const chained = await new Promise<number>((resolve) => {
      const started = performance.now();
      timers.start(5, () => timers.start(5, () => resolve(performance.now() - started)));
    });
    assert.ok(chained >= 9, `the deadline started while firing fired after ${chained} ms`);
  });
});
