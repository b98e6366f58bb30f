import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Fifo, MinHeap } from '../../../sidecar/src/async/queues.ts';

describe('Fifo', () => {
  it('keeps order across many pushes and shifts (head compaction included)', () => {
    const queue = new Fifo<number>();
    const out: number[] = [];
    for (let i = 0; i < 5000; i++) {
      queue.push(i);
      if (i % 3 === 0) out.push(queue.shift()!);
    }
    while (queue.length > 0) out.push(queue.shift()!);
    assert.deepEqual(out, Array.from({ length: 5000 }, (_, i) => i));
    assert.equal(queue.shift(), undefined);
  });
});

describe('MinHeap', () => {
  it('pops in key order, equal keys included', () => {
    const heap = new MinHeap<{ at: number }>((x) => x.at);
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const keys = Array.from({ length: 2000 }, () => Math.floor(random() * 500));
    for (const at of keys) heap.push({ at });
    const popped: number[] = [];
    while (heap.length > 0) popped.push(heap.pop()!.at);
    assert.deepEqual(popped, [...keys].sort((a, b) => a - b));
    assert.equal(heap.pop(), undefined);
  });
});
