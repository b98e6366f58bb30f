// On node:test's mock timers: the list's clock is the mocked Date and its wake-up timer the mocked
// setTimeout, so each deadline's firing time is exact and nothing waits on real time.
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { DeadlineTimers } from '../../../sidecar/src/resilience/deadline-timers.ts';

const clock = { now: () => Date.now() };

/** Move the mocked clock on a millisecond at a time (one tick() sets the clock to its end first). */
function advance(ms: number): void {
  for (let i = 0; i < ms; i++) mock.timers.tick(1);
}

/** Where the clock stood when a deadline of `ms` fired; undefined until it has. */
function timed(timers: DeadlineTimers, ms: number): { firedAt: number | undefined } {
  const seen: { firedAt: number | undefined } = { firedAt: undefined };
  timers.start(ms, () => { seen.firedAt = clock.now(); });
  return seen;
}

describe('DeadlineTimers', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  it('fires each deadline once its time has passed (within a millisecond, as Node timers do)', () => {
    const timers = new DeadlineTimers(clock);
    const [a, b, c] = [timed(timers, 30), timed(timers, 10), timed(timers, 20)];
    advance(8);
    assert.deepEqual([a.firedAt, b.firedAt, c.firedAt], [undefined, undefined, undefined], 'nothing before its time');
    advance(30);
    for (const [seen, ms] of [[a, 30], [b, 10], [c, 20]] as const) {
      assert.ok(seen.firedAt !== undefined && seen.firedAt >= ms - 1 && seen.firedAt <= ms, `the ${ms} ms deadline fired at ${seen.firedAt} ms`);
    }
  });

  it('fires in order of expiry, equal ones in the order they were started', () => {
    const timers = new DeadlineTimers(clock);
    const order: string[] = [];
    timers.start(25, () => order.push('25'));
    timers.start(5, () => order.push('5a'));
    timers.start(15, () => order.push('15'));
    timers.start(5, () => order.push('5b'));
    advance(60);
    assert.deepEqual(order, ['5a', '5b', '15', '25']);
  });

  it('never fires a cancelled deadline, whether first, last or in between', () => {
    const timers = new DeadlineTimers(clock);
    const fired: number[] = [];
    const all = [5, 10, 15, 20].map((ms) => timers.start(ms, () => fired.push(ms)));
    all[0]!.cancel();
    all[2]!.cancel();
    all[3]!.cancel();
    all[3]!.cancel(); // twice is harmless
    advance(40);
    assert.deepEqual(fired, [10]);
  });

  it('arms again for a deadline started after an earlier one was cancelled, and for one started while firing', () => {
    const timers = new DeadlineTimers(clock);
    timers.start(50, () => assert.fail('cancelled')).cancel();
    const early = timed(timers, 5);
    advance(5);
    assert.equal(early.firedAt, 5, 'the new, earlier deadline fired on its own time, not with the cancelled one');
    let chained: number | undefined;
    timers.start(5, () => timers.start(5, () => { chained = clock.now() - 5; }));
    advance(5);
    assert.equal(chained, undefined, 'the second deadline is not due with the first');
    advance(5);
    assert.ok(chained !== undefined && chained >= 9, `the deadline started while firing fired after ${chained} ms`);
    advance(100);
  });
});
