// The waiting helpers themselves: `ms` is the one bound of `until`, whatever its check does. The
// test's own timeout is the guard against a helper that would hang; nothing here asserts a duration.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { until, within } from '../../helpers/wait.ts';

describe('until', () => {
  it('resolves as soon as the check says yes', async () => {
    let asks = 0;
    await until(async () => ++asks === 3, { message: 'never three' });
    assert.equal(asks, 3);
  });

  it('fails with its message when a check never answers, instead of waiting on it', { timeout: 5000 }, async () => {
    let asks = 0;
    const never = () => { asks++; return new Promise<boolean>(() => {}); };
    await assert.rejects(until(never, { ms: 100, message: 'the check never answered' }), /^Error: the check never answered \(not so after 100 ms, 1 asks\)$/);
    assert.equal(asks, 1, 'a pending ask is never overlapped by another');
  });

  it('fails when a slow check would carry it past the limit', { timeout: 5000 }, async () => {
    const slow = () => new Promise<boolean>((resolve) => { setTimeout(resolve, 60_000, true).unref(); });
    await assert.rejects(until(slow, { ms: 100, message: 'too slow' }), /too slow \(not so after 100 ms/);
  });

  it('is not cut short by a count of asks: a quick "no" is asked again until the time is up', async () => {
    let asks = 0;
    await until(() => ++asks >= 5000, { ms: 30_000, message: 'never 5,000 asks' });
    assert.equal(asks, 5000);
  });

  it('passes on an error the check throws', async () => {
    await assert.rejects(until(async () => { throw new Error('broken check'); }, { message: 'x' }), /broken check/);
  });
});

describe('within', () => {
  it('resolves with the promise\'s value, or rejects with the message once the time is up', { timeout: 5000 }, async () => {
    assert.equal(await within(Promise.resolve(7), 100, 'x'), 7);
    await assert.rejects(within(new Promise(() => {}), 50, 'never settled'), /^Error: never settled \(waited 50 ms\)$/);
    await assert.rejects(within(Promise.reject(new Error('own error')), 100, 'x'), /own error/);
  });
});
