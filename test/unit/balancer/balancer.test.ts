import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eligible, InFlight, pickOfTwo, weightedChoice } from '../../../sidecar/src/balancer/balancer.ts';
import { ConsistentHash } from '../../../sidecar/src/balancer/consistent-hash.ts';
import { createBalancer } from '../../../sidecar/src/balancer/create.ts';
import { LeastRequest } from '../../../sidecar/src/balancer/least-request.ts';
import { PeakEwma } from '../../../sidecar/src/balancer/p2c-ewma.ts';
import { RoundRobin } from '../../../sidecar/src/balancer/round-robin.ts';
import type { LoadBalancerPolicy, LoadBalancerSettings } from '../../../sidecar/src/policy/types.ts';
import { endpoint, endpoints } from './endpoints.ts';
import { seededRandom, tally } from './seeded-random.ts';

/** Settings as the built-in policy has them, with `policy` chosen. */
const settings = (policy: LoadBalancerPolicy): LoadBalancerSettings => ({
  policy, ewmaDecayMs: 10_000, ewmaDefaultRttMs: 30, consistentHash: { hashOn: [{ source: true }], virtualNodes: 2048, boundedLoadFactor: 1.25 },
});

const addresses = (list: readonly { address: string }[]) => list.map((e) => e.address);

describe('eligible', () => {
  it('leaves out endpoints already tried while others remain', () => {
    const list = endpoints('a', 'b', 'c');
    assert.deepEqual(addresses(eligible(list, new Set(['a', 'c']))), ['b']);
    assert.deepEqual(addresses(eligible(list, new Set(['a', 'b', 'c']))), ['a', 'b', 'c'], 'all tried: any will do');
    assert.deepEqual(addresses(eligible(list)), ['a', 'b', 'c']);
  });

  it('leaves out weight-0 endpoints unless nothing else is there', () => {
    assert.deepEqual(addresses(eligible([endpoint('a', 0), endpoint('b', 2)])), ['b']);
    assert.deepEqual(addresses(eligible([endpoint('a', 0), endpoint('b', 0)])), ['a', 'b']);
    assert.deepEqual(addresses(eligible([endpoint('a', 0), endpoint('b', 2)], new Set(['b']))), ['b'], 'drained beats tried');
  });
});

describe('weightedChoice', () => {
  it('draws in proportion to weight, uniformly when all weights are 0', () => {
    const random = seededRandom(7);
    const weighted = tally(Array.from({ length: 8000 }, () => weightedChoice(['x', 'y'], (v) => (v === 'x' ? 1 : 3), random)));
    assert.ok(Math.abs(weighted.x! / 8000 - 0.25) < 0.02, JSON.stringify(weighted));
    const uniform = tally(Array.from({ length: 8000 }, () => weightedChoice(['x', 'y'], () => 0, random)));
    assert.ok(Math.abs(uniform.x! / 8000 - 0.5) < 0.02, JSON.stringify(uniform));
  });
});

describe('pickOfTwo', () => {
  it('compares two distinct candidates when weights are equal', () => {
    const seen: string[][] = [];
    const random = seededRandom(1);
    for (let i = 0; i < 500; i++) {
      const pair: string[] = [];
      pickOfTwo(endpoints('a', 'b', 'c'), random, (e) => { pair.push(e.address); return 0; });
      seen.push(pair);
    }
    assert.ok(seen.every(([x, y]) => x !== y));
  });

  it('never picks the costliest of three when weights are equal', () => {
    const random = seededRandom(2);
    const picks = tally(Array.from({ length: 3000 }, () => pickOfTwo(endpoints('a', 'b', 'c'), random, (e) => (e.address === 'a' ? 9 : 1))!.address));
    assert.equal(picks.a, undefined);
    assert.ok(Math.abs(picks.b! - picks.c!) < 200, JSON.stringify(picks));
  });

  it('treats costs within 1% as a tie and keeps the first drawn', () => {
    const random = seededRandom(3);
    const picks = tally(Array.from({ length: 4000 }, () => pickOfTwo(endpoints('a', 'b'), random, (e) => (e.address === 'a' ? 100 : 99.5))!.address));
    assert.ok(Math.abs(picks.a! / 4000 - 0.5) < 0.03, JSON.stringify(picks));
  });
});

describe('InFlight', () => {
  it('counts starts minus ends, never below 0, and forgets addresses', () => {
    const n = new InFlight();
    n.start('a'); n.start('a'); n.start('b');
    n.end('a');
    assert.deepEqual([n.get('a'), n.get('b'), n.get('c')], [1, 1, 0]);
    n.end('c');
    assert.equal(n.get('c'), 0);
    n.retain(new Set(['b']));
    assert.equal(n.get('a'), 0);
  });
});

describe('createBalancer', () => {
  it('builds the balancer the policy names', () => {
    const build = (policy: LoadBalancerPolicy) => createBalancer(settings(policy));
    assert.ok(build('round-robin') instanceof RoundRobin);
    assert.ok(build('least-request') instanceof LeastRequest);
    assert.ok(build('p2c-ewma') instanceof PeakEwma);
    assert.ok(build('consistent-hash') instanceof ConsistentHash);
  });

  // consistent-hash without a hash key: how calls that carry no key are spread.
  for (const policy of ['round-robin', 'least-request', 'p2c-ewma', 'consistent-hash'] as const) {
    it(`${policy}: goes elsewhere than the endpoints already tried, and returns undefined for none`, () => {
      const balancer = createBalancer(settings(policy), { random: seededRandom(4), now: () => 0 });
      const list = endpoints('a', 'b', 'c');
      for (let i = 0; i < 200; i++) assert.equal(balancer.pick(list, { exclude: new Set(['a', 'b']) })?.address, 'c');
      assert.ok(balancer.pick(list, { exclude: new Set(['a', 'b', 'c']) }), 'all tried: still picks one');
      assert.equal(balancer.pick([]), undefined);
      assert.equal(balancer.pick([endpoint('solo')])?.address, 'solo');
    });

    it(`${policy}: splits traffic by weight`, () => {
      const balancer = createBalancer(settings(policy), { random: seededRandom(5), now: () => 0 });
      const list = [endpoint('a', 1), endpoint('b', 3), endpoint('z', 0)];
      const picks: string[] = [];
      for (let i = 0; i < 8000; i++) {
        const e = balancer.pick(list)!;
        balancer.onStart(e.address);
        balancer.onEnd(e.address, 10, true);
        picks.push(e.address);
      }
      const counts = tally(picks);
      assert.equal(counts.z, undefined, 'weight 0: drained');
      assert.ok(Math.abs(counts.a! / 8000 - 0.25) < 0.03, JSON.stringify(counts));
    });
  }
});
