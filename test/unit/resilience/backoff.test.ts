import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffCeiling, jitteredBackoff } from '../../../sidecar/src/resilience/backoff.ts';

const settings = { baseMs: 100, maxMs: 1000 };

describe('backoffCeiling', () => {
  it('doubles from base with each failure and stops at max', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffCeiling(settings, n)), [100, 200, 400, 800, 1000, 1000]);
  });

  it('reads no failures as one, and stays finite for any count', () => {
    assert.equal(backoffCeiling(settings, 0), 100);
    assert.equal(backoffCeiling(settings, 1e6), 1000);
    assert.equal(backoffCeiling({ baseMs: 0, maxMs: 1000 }, 1e6), 0, 'a zero base is no wait, not NaN');
    assert.equal(backoffCeiling({ baseMs: 1, maxMs: Number.MAX_SAFE_INTEGER }, 1e6), 2 ** 52);
  });
});

describe('jitteredBackoff', () => {
  it('is uniform between 0 and the ceiling', () => {
    assert.equal(jitteredBackoff(settings, 3, () => 0), 0);
    assert.equal(jitteredBackoff(settings, 3, () => 0.25), 100);
    assert.equal(jitteredBackoff(settings, 3, () => 1), 400);
    assert.equal(jitteredBackoff(settings, 9, () => 1), 1000);
  });

  it('waits at least the floor, itself capped by max', () => {
    assert.equal(jitteredBackoff(settings, 1, () => 0, 700), 700);
    assert.equal(jitteredBackoff(settings, 3, () => 1, 150), 400, 'a jittered wait above the floor stands');
    assert.equal(jitteredBackoff(settings, 1, () => 0, 60_000), 1000);
  });

  it('spreads a crowd evenly', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const waits = Array.from({ length: 4000 }, () => jitteredBackoff(settings, 3, random));
    assert.ok(waits.every((w) => w >= 0 && w <= 400));
    const lowHalf = waits.filter((w) => w < 200).length / waits.length;
    assert.ok(Math.abs(lowHalf - 0.5) < 0.03, `half below the midpoint, got ${lowHalf}`);
  });
});
