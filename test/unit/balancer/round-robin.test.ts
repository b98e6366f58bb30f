import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RoundRobin } from '../../../sidecar/src/balancer/round-robin.ts';
import { endpoint, endpoints } from './endpoints.ts';
import { tally } from './seeded-random.ts';

function picks(balancer: RoundRobin, list: ReturnType<typeof endpoints>, n: number): string[] {
  return Array.from({ length: n }, () => balancer.pick(list)!.address);
}

describe('RoundRobin', () => {
  it('cycles through equal endpoints in order', () => {
    assert.deepEqual(picks(new RoundRobin(), endpoints('a', 'b', 'c'), 7), ['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });

  it('spreads a heavy endpoint out (smooth weighted round robin)', () => {
    const list = [endpoint('a', 5), endpoint('b', 1), endpoint('c', 1)];
    assert.deepEqual(picks(new RoundRobin(), list, 7), ['a', 'a', 'b', 'a', 'c', 'a', 'a']);
  });

  it('gives each endpoint exactly its weight share over whole cycles', () => {
    const list = [endpoint('a', 1), endpoint('b', 2), endpoint('c', 3)];
    assert.deepEqual(tally(picks(new RoundRobin(), list, 600)), { a: 100, b: 200, c: 300 });
  });

  it('keeps rotating when the candidate list changes between picks', () => {
    const rr = new RoundRobin();
    const all = endpoints('a', 'b', 'c');
    assert.equal(rr.pick(all)!.address, 'a');
    assert.equal(rr.pick(all, { exclude: new Set(['b']) })!.address, 'c');
    const seen = picks(rr, all, 300);
    const counts = tally(seen);
    assert.ok(Math.max(...Object.values(counts)) - Math.min(...Object.values(counts)) <= 2, JSON.stringify(counts));
  });
});
