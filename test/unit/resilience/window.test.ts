import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BucketClock, RollingCounters } from '../../../sidecar/src/resilience/window.ts';

describe('BucketClock', () => {
  it('counts buckets from its origin and says how many began since the last move', () => {
    const clock = new BucketClock(100, 1_000);
    assert.equal(clock.bucketAt(1_099), 0);
    assert.equal(clock.advance(1_050), 0);
    assert.equal(clock.advance(1_100), 1);
    assert.equal(clock.advance(1_450), 3);
    assert.equal(clock.advance(1_499), 0);
  });

  it('never goes back with a clock that does', () => {
    const clock = new BucketClock(100, 0);
    clock.advance(500);
    assert.equal(clock.bucketAt(120), 5);
    assert.equal(clock.advance(120), 0);
    assert.equal(clock.advance(600), 1);
  });

  it('keeps buckets at least a millisecond wide', () => {
    assert.equal(new BucketClock(0, 0).bucketMs, 1);
  });
});

describe('RollingCounters', () => {
  const make = (over: { fresh?: number[]; lanes?: number } = {}) => {
    let now = 0;
    const counters = new RollingCounters({ buckets: 4, bucketMs: 100, now: () => now, ...over });
    return { counters, at: (t: number) => { now = t; } };
  };

  it('sums each lane over the buckets of the window', () => {
    const { counters, at } = make({ lanes: 2 });
    counters.add(0);
    at(150);
    counters.add(0, 2);
    counters.add(1, 5);
    at(399);
    counters.add(0);
    assert.equal(counters.sum(0), 4);
    assert.equal(counters.sum(1), 5);
  });

  it('drops a bucket once the window has slid past it', () => {
    const { counters, at } = make();
    counters.add(0, 1);
    at(100);
    counters.add(0, 10);
    at(399);
    assert.equal(counters.sum(), 11, 'bucket 0 is the oldest of four');
    at(400);
    assert.equal(counters.sum(), 10, 'bucket 0 left the window');
    at(499);
    assert.equal(counters.sum(), 10);
    at(500);
    assert.equal(counters.sum(), 0);
  });

  it('clears a slot when the ring comes round to it', () => {
    const { counters, at } = make();
    counters.add(0, 7);
    at(400); // same slot as bucket 0
    counters.add(0, 1);
    assert.equal(counters.sum(), 1);
    assert.equal(counters.current()[0], 1);
  });

  it('reads one bucket back from now, and nothing for empty or expired ones', () => {
    const { counters, at } = make();
    counters.add(0, 3);
    at(200);
    counters.add(0, 4);
    assert.equal(counters.bucket(0)?.[0], 4);
    assert.equal(counters.bucket(1), undefined, 'nothing was counted in bucket 1');
    assert.equal(counters.bucket(2)?.[0], 3);
    assert.equal(counters.bucket(4), undefined, 'past the ring');
    at(650);
    assert.equal(counters.bucket(0), undefined);
    assert.equal(counters.bucket(3)?.[0], undefined, 'bucket 3 was never filled');
    assert.equal(counters.bucket(4), undefined);
  });

  it('reads without moving the ring', () => {
    const { counters, at } = make();
    counters.add(0, 2);
    at(1_000);
    assert.equal(counters.sum(), 0);
    at(50); // a read at a later time changed nothing: bucket 0 is still held
    assert.equal(counters.sum(), 2);
  });

  it('takes the time from the caller when given, and an origin of its choice', () => {
    const counters = new RollingCounters({ buckets: 3, bucketMs: 1_000, origin: 0, now: () => { throw new Error('clock read'); } });
    counters.add(0, 1, 2_500);
    assert.equal(counters.sum(0, 2_999), 1);
    assert.equal(counters.sum(0, 4_999), 1);
    assert.equal(counters.sum(0, 5_000), 0);
  });

  it('restarts each lane from its fresh value in a new bucket', () => {
    const { counters, at } = make({ lanes: 2, fresh: [0, Infinity] });
    const first = counters.current();
    assert.deepEqual([...first], [0, Infinity]);
    first[1] = 5;
    at(400);
    assert.deepEqual([...counters.current()], [0, Infinity]);
  });

  it('a write at the last instant of a bucket stays in it, one at its end starts the next, an earlier one goes to the newest', () => {
    const { counters, at } = make();
    at(99.999);
    counters.add(0, 1);
    at(100);
    counters.add(0, 10);
    at(50); // the clock stepped back: still the newest bucket
    counters.add(0, 100);
    at(100);
    assert.equal(counters.bucket(1)?.[0], 1);
    assert.equal(counters.bucket(0)?.[0], 110);
  });

  it('can count in 32-bit cells', () => {
    const counters = new RollingCounters({ buckets: 2, bucketMs: 10, now: () => 0, counts: Uint32Array });
    assert.ok(counters.current() instanceof Uint32Array);
  });
});
