import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Balancer } from '../../../sidecar/src/balancer/balancer.ts';
import { PeakEwma } from '../../../sidecar/src/balancer/p2c-ewma.ts';
import { RoundRobin } from '../../../sidecar/src/balancer/round-robin.ts';
import type { Endpoint } from '../../../sidecar/src/discovery/resolver.ts';
import { endpoint, endpoints } from './endpoints.ts';
import { seededRandom, tally } from './seeded-random.ts';

const linkerd = { ewmaDecayMs: 10_000, ewmaDefaultRttMs: 30 };

/**
 * A virtual-time load: one call every `everyMs`, each lasting its endpoint's latency (± 2 ms), with
 * onStart/onEnd reported in time order. Returns the picks made after `warmUpMs`.
 */
function simulate(balancer: Balancer, clock: { now: number }, list: readonly Endpoint[], latencyMs: Record<string, number>,
  options: { calls: number; everyMs: number; warmUpMs: number; seed: number }): Record<string, number> {
  const jitter = seededRandom(options.seed);
  const pending: { at: number; address: string; latency: number }[] = [];
  const counted: string[] = [];
  for (let i = 0; i < options.calls; i++) {
    clock.now = i * options.everyMs;
    pending.sort((x, y) => x.at - y.at);
    while (pending.length > 0 && pending[0]!.at <= clock.now) {
      const done = pending.shift()!;
      const now = clock.now;
      clock.now = done.at;
      balancer.onEnd(done.address, done.latency, true);
      clock.now = now;
    }
    const e = balancer.pick(list)!;
    balancer.onStart(e.address);
    const latency = latencyMs[e.address]! + (jitter() * 4 - 2);
    pending.push({ at: clock.now + latency, address: e.address, latency });
    if (clock.now >= options.warmUpMs) counted.push(e.address);
  }
  const counts = tally(counted);
  for (const e of list) counts[e.address] ??= 0;
  counts.total = counted.length;
  return counts;
}

describe('PeakEwma (p2c-ewma)', () => {
  it('sends a replica 200 ms slower than its twins under 10% of calls after warm-up', () => {
    const clock = { now: 0 };
    const balancer = new PeakEwma(linkerd, { random: seededRandom(21), now: () => clock.now });
    const latency = { a: 10, b: 10, slow: 210 };
    const counts = simulate(balancer, clock, endpoints('a', 'slow', 'b'), latency, { calls: 30_000, everyMs: 2, warmUpMs: 5_000, seed: 1 });
    assert.ok(counts.slow! / counts.total! < 0.1, JSON.stringify(counts));
    assert.ok(counts.slow! > 0, 'the slow replica is still probed now and then (its estimate decays)');

    // The same load round robin: the simulation itself gives the slow replica a third.
    const rrClock = { now: 0 };
    const rr = simulate(new RoundRobin(), rrClock, endpoints('a', 'slow', 'b'), latency, { calls: 30_000, everyMs: 2, warmUpMs: 5_000, seed: 1 });
    assert.ok(Math.abs(rr.slow! / rr.total! - 1 / 3) < 0.01, JSON.stringify(rr));
  });

  it('splits equal replicas by weight, also as time passes between answers', () => {
    const clock = { now: 0 };
    const balancer = new PeakEwma(linkerd, { random: seededRandom(22), now: () => clock.now });
    const counts = simulate(balancer, clock, [endpoint('a', 1), endpoint('b', 3)], { a: 10, b: 10 }, { calls: 8_000, everyMs: 20, warmUpMs: 0, seed: 2 });
    assert.ok(Math.abs(counts.a! / counts.total! - 0.25) < 0.03, JSON.stringify(counts));
  });

  it('prefers an unknown endpoint (default RTT) to a known slower one, and a known faster one to it', () => {
    const now = 0;
    const balancer: Balancer = new PeakEwma(linkerd, { random: seededRandom(23), now: () => now });
    balancer.onStart('slow');
    balancer.onEnd('slow', 100, true);
    balancer.onStart('fast');
    balancer.onEnd('fast', 5, true);
    assert.equal(balancer.pick(endpoints('slow', 'new'))!.address, 'new', '30 ms assumed < 100 ms seen');
    assert.equal(balancer.pick(endpoints('fast', 'new'))!.address, 'fast', '5 ms seen < 30 ms assumed');
  });

  it('jumps to a latency peak at once and lets it decay over ewmaDecayMs', () => {
    let now = 0;
    const balancer: Balancer = new PeakEwma(linkerd, { random: seededRandom(24), now: () => now });
    const answer = (address: string, ms: number) => { balancer.onStart(address); balancer.onEnd(address, ms, true); };
    answer('a', 20);
    answer('b', 20);
    answer('a', 200); // one slow answer: a's estimate is 200 at once
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'b');
    const tenfold = linkerd.ewmaDecayMs * Math.log(10); // time for a's 200 to decay to 20
    now = tenfold - 1_000;
    answer('b', 20);
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'b', 'a ≈ 22 ms, b 20 ms');
    now = tenfold + 1_000;
    answer('b', 20);
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'a', 'a ≈ 18 ms, b 20 ms');
  });

  it('moves halfway towards each faster answer', () => {
    const balancer: Balancer = new PeakEwma(linkerd, { random: seededRandom(28), now: () => 0 });
    const answer = (address: string, ms: number) => { balancer.onStart(address); balancer.onEnd(address, ms, true); };
    answer('a', 200);
    answer('b', 100);
    answer('a', 20); // a: 110
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'b');
    answer('a', 20); // a: 65
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'a');
  });

  it('weighs load: an idle endpoint beats a faster one with calls queued on it', () => {
    const balancer: Balancer = new PeakEwma(linkerd, { random: seededRandom(25), now: () => 0 });
    balancer.onStart('a'); balancer.onEnd('a', 10, true);
    balancer.onStart('b'); balancer.onEnd('b', 25, true);
    for (let i = 0; i < 3; i++) balancer.onStart('a'); // a: 10 × 4 = 40 > b: 25 × 1
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'b');
  });

  it('does not let a fast failure make an endpoint look fast', () => {
    const balancer: Balancer = new PeakEwma(linkerd, { random: seededRandom(26), now: () => 0 });
    balancer.onStart('a'); balancer.onEnd('a', 100, true);
    balancer.onStart('b'); balancer.onEnd('b', 50, true);
    for (let i = 0; i < 10; i++) { balancer.onStart('a'); balancer.onEnd('a', 1, false); }
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'b');
  });

  it('forgets endpoints that left', () => {
    const balancer: Balancer = new PeakEwma(linkerd, { random: seededRandom(27), now: () => 0 });
    balancer.onStart('a'); balancer.onEnd('a', 500, true);
    balancer.onStart('b'); balancer.onEnd('b', 40, true);
    balancer.retain(new Set(['b']));
    assert.equal(balancer.pick(endpoints('a', 'b'))!.address, 'a', 'a is new again: default 30 ms < 40 ms');
  });
});
