import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Balancer } from '../../../sidecar/src/balancer/balancer.ts';
import { LeastRequest } from '../../../sidecar/src/balancer/least-request.ts';
import { endpoint, endpoints } from './endpoints.ts';
import { seededRandom, tally } from './seeded-random.ts';

describe('LeastRequest', () => {
  it('never picks the most loaded of three endpoints (of any two, the less loaded wins)', () => {
    const lr: Balancer = new LeastRequest({ random: seededRandom(11) });
    for (let i = 0; i < 5; i++) lr.onStart('a');
    lr.onStart('b');
    const counts = tally(Array.from({ length: 2000 }, () => lr.pick(endpoints('a', 'b', 'c'))!.address));
    assert.equal(counts.a, undefined);
    assert.ok(counts.c! > counts.b!, `c is idle, b has one in flight: ${JSON.stringify(counts)}`);
  });

  it('takes an endpoint back once its calls end', () => {
    const lr: Balancer = new LeastRequest({ random: seededRandom(12) });
    for (let i = 0; i < 5; i++) lr.onStart('a');
    for (let i = 0; i < 5; i++) lr.onEnd('a', 10, true);
    const counts = tally(Array.from({ length: 3000 }, () => lr.pick(endpoints('a', 'b', 'c'))!.address));
    assert.ok(counts.a! > 900, JSON.stringify(counts));
  });

  it('sends fewer calls to an endpoint whose calls take longer', () => {
    // Each tick one call starts; calls to "slow" last 10 ticks, to the others 1 tick.
    const lr: Balancer = new LeastRequest({ random: seededRandom(13) });
    const list = endpoints('slow', 'b', 'c');
    const ending: string[][] = Array.from({ length: 5020 }, () => []);
    const picks: string[] = [];
    for (let tick = 0; tick < 5000; tick++) {
      for (const address of ending[tick]!) lr.onEnd(address, 0, true);
      const e = lr.pick(list)!;
      lr.onStart(e.address);
      ending[tick + (e.address === 'slow' ? 10 : 1)]!.push(e.address);
      picks.push(e.address);
    }
    const counts = tally(picks);
    assert.ok(counts.slow! < 0.2 * 5000, JSON.stringify(counts));
  });

  it('keeps in-flight counts per weight: a double-weight endpoint may hold twice the calls', () => {
    const lr: Balancer = new LeastRequest({ random: seededRandom(14) });
    const list = [endpoint('a', 1), endpoint('b', 2)];
    lr.onStart('a');
    lr.onStart('b');
    // a: 1 call per unit weight, b: 0.5 → b wins every mixed pair.
    const counts = tally(Array.from({ length: 3000 }, () => lr.pick(list)!.address));
    assert.ok(counts.b! / 3000 > 0.85, JSON.stringify(counts));
  });
});
