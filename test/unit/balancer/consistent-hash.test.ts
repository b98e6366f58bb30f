import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Endpoint } from '../../../sidecar/src/discovery/resolver.ts';
import { ConsistentHash } from '../../../sidecar/src/balancer/consistent-hash.ts';
import { xxhash32, xxhash32String } from '../../../sidecar/src/balancer/xxhash32.ts';
import { endpoint } from './endpoints.ts';
import { seededRandom, tally } from './seeded-random.ts';

/** The built-in settings (schema defaults). */
const DEFAULTS = { virtualNodes: 2048, boundedLoadFactor: 1.25 };

const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

/** Endpoints as a cluster would list them: pod IPs, port of the sidecar's inbound listener. */
const pods = (n: number, first = 0) => Array.from({ length: n }, (_, i) => endpoint(`10.244.${(first + i) % 7}.${17 + 13 * (first + i)}:15002`));

/** The endpoint each key goes to, with nothing in flight. */
function owners(balancer: ConsistentHash, list: readonly Endpoint[], keys: readonly string[] = KEYS): string[] {
  return keys.map((hashKey) => balancer.pick(list, { hashKey })!.address);
}

/** Share of keys whose endpoint differs, and any key moved between two endpoints both present before and after. */
function movement(before: readonly string[], after: readonly string[], listBefore: readonly Endpoint[], listAfter: readonly Endpoint[]) {
  const stayed = new Set(listBefore.map((e) => e.address).filter((a) => listAfter.some((e) => e.address === a)));
  let moved = 0;
  const betweenStayers: string[] = [];
  for (let i = 0; i < before.length; i++) {
    if (before[i] === after[i]) continue;
    moved++;
    if (stayed.has(before[i]!) && stayed.has(after[i]!)) betweenStayers.push(`${KEYS[i]}: ${before[i]} → ${after[i]}`);
  }
  return { moved: moved / before.length, betweenStayers };
}

describe('ConsistentHash: keys move only to or from the endpoint that changed', () => {
  for (const n of [3, 5, 10]) {
    it(`adding one endpoint to ${n}: at most 1/${n} + 2% of 10,000 keys move, all of them to the new one`, () => {
      const balancer = new ConsistentHash(DEFAULTS);
      const list = pods(n);
      const grown = [...list, ...pods(1, n)];
      const before = owners(balancer, list);
      const after = owners(balancer, grown); // the same instance: its ring must be rebuilt (istio#60312)
      const { moved, betweenStayers } = movement(before, after, list, grown);
      assert.deepEqual(betweenStayers.slice(0, 5), []);
      assert.ok(moved <= 1 / n + 0.02, `moved ${moved}`);
      // The newcomer gets its share (about 1/(n+1)): a stale ring would move nothing.
      assert.ok(Math.abs(moved - 1 / (n + 1)) < 0.03, `moved ${moved}, expected about ${1 / (n + 1)}`);
      assert.ok(after.every((a, i) => a === before[i] || a === grown.at(-1)!.address), 'every moved key went to the new endpoint');
    });

    it(`removing any one of ${n} endpoints: at most 1/${n} + 2% of the keys move, only the removed one's`, () => {
      const list = pods(n);
      const before = owners(new ConsistentHash(DEFAULTS), list);
      for (const gone of list) {
        const shrunk = list.filter((e) => e !== gone);
        const after = owners(new ConsistentHash(DEFAULTS), shrunk);
        const { moved, betweenStayers } = movement(before, after, list, shrunk);
        assert.deepEqual(betweenStayers.slice(0, 5), [], `removing ${gone.address}`);
        assert.ok(moved <= 1 / n + 0.02, `removing ${gone.address} moved ${moved}`);
        assert.equal(moved, before.filter((a) => a === gone.address).length / KEYS.length, 'exactly the keys it held');
      }
    });
  }

  it('an endpoint that comes back gets exactly its keys back', () => {
    const balancer = new ConsistentHash(DEFAULTS);
    const list = pods(5);
    const before = owners(balancer, list);
    owners(balancer, list.slice(1)); // ejected for a while
    assert.deepEqual(owners(balancer, list), before);
  });
});

describe('ConsistentHash: every sidecar agrees', () => {
  it('sends each key to the same endpoint from separate instances, whatever the candidate order and history', () => {
    const list = pods(6);
    const first = new ConsistentHash(DEFAULTS);
    const second = new ConsistentHash(DEFAULTS);
    owners(second, pods(4), KEYS.slice(0, 100)); // a different set seen before: cached rings must not leak
    assert.deepEqual(owners(second, [...list].reverse()), owners(first, list));
    const shuffled = [list[3]!, list[0]!, list[5]!, list[1]!, list[4]!, list[2]!];
    assert.deepEqual(owners(first, shuffled), owners(first, list));
  });

  it('places keys exactly as this version always has (sidecars of two versions must agree during a rollout)', () => {
    // If this fails, the ring's hash or point layout changed: every key would map differently in
    // sidecars of the old and the new version. Change it only on purpose, and say so in the notes.
    const list = pods(5);
    const balancer = new ConsistentHash(DEFAULTS);
    const golden = ['user-0', 'user-1', 'user-2', 'user-3', 'tenant-a', 'session-42'].map((hashKey) => balancer.pick(list, { hashKey })!.address);
    assert.deepEqual(golden, GOLDEN);
  });

  it('is the ring any implementation can rebuild: points xxHash32(address ‖ u32le(i)), ties by address, first point clockwise', () => {
    const list = [...pods(4), endpoint('10.244.9.9:15002', 2)];
    const points: { at: number; address: string }[] = [];
    for (const e of list) {
      const address = new TextEncoder().encode(e.address);
      for (let i = 0; i < DEFAULTS.virtualNodes * e.weight; i++) {
        const bytes = new Uint8Array(address.length + 4);
        bytes.set(address);
        new DataView(bytes.buffer).setUint32(address.length, i, true);
        points.push({ at: xxhash32(bytes), address: e.address });
      }
    }
    points.sort((a, b) => a.at - b.at || (a.address < b.address ? -1 : 1));
    const model = (key: string) => (points.find((p) => p.at >= xxhash32String(key)) ?? points[0]!).address;
    const keys = KEYS.slice(0, 1000);
    assert.deepEqual(owners(new ConsistentHash(DEFAULTS), list, keys), keys.map(model));
  });

  it('returns the caller\'s endpoint object, labels included', () => {
    const list = [endpoint('a:1', 1, { version: 'v1' }), endpoint('b:1', 1, { version: 'v2' })];
    for (const hashKey of KEYS.slice(0, 50)) assert.ok(list.includes(new ConsistentHash(DEFAULTS).pick(list, { hashKey })!));
    assert.equal(new ConsistentHash(DEFAULTS).pick([], { hashKey: 'k' }), undefined);
  });
});

describe('ConsistentHash: weights', () => {
  it('gives an endpoint of weight 2 about twice the keys of one of weight 1', () => {
    // A share's relative standard deviation is about 1/√points (2.2% for 2048 points) plus the
    // sampling of 10,000 keys (≈ 1.5% of a 25% share): ±10% of the ratio is over three of those.
    const list = [...pods(3)];
    list[1] = { ...list[1]!, weight: 2 };
    const counts = tally(owners(new ConsistentHash(DEFAULTS), list));
    for (const light of [list[0]!, list[2]!]) {
      const ratio = counts[list[1]!.address]! / counts[light.address]!;
      assert.ok(ratio > 1.8 && ratio < 2.2, JSON.stringify(counts));
    }
  });

  it('gives weight 0 no keys while another endpoint has a weight, and spreads over all when none has', () => {
    const list = [endpoint('a:1', 1), endpoint('b:1', 0), endpoint('c:1', 1)];
    const counts = tally(owners(new ConsistentHash(DEFAULTS), list));
    assert.equal(counts['b:1'], undefined);
    const allZero = tally(owners(new ConsistentHash(DEFAULTS), list.map((e) => ({ ...e, weight: 0 }))));
    assert.deepEqual(Object.keys(allZero).sort(), ['a:1', 'b:1', 'c:1']);
  });

  it('changing one endpoint\'s weight moves keys only to or from that endpoint', () => {
    const list = pods(4);
    const heavier = list.map((e, i) => (i === 2 ? { ...e, weight: 3 } : e));
    const before = owners(new ConsistentHash(DEFAULTS), list);
    const after = owners(new ConsistentHash(DEFAULTS), heavier);
    assert.ok(after.every((a, i) => a === before[i] || a === list[2]!.address), 'keys only moved to the heavier endpoint');
  });
});

describe('ConsistentHash: bounded load', () => {
  /** The endpoints in the order a key's walk visits them: its owner, then on round the ring. */
  function walkOrder(list: readonly Endpoint[], hashKey: string): string[] {
    const order: string[] = [];
    while (order.length < list.length) order.push(new ConsistentHash(DEFAULTS).pick(list, { hashKey, exclude: new Set(order) })!.address);
    return order;
  }

  for (const factor of [1, 1.25, 2]) {
    it(`c = ${factor}: one hot key with calls that never end fills its owner to ⌈c × average⌉, then the next endpoints clockwise`, () => {
      const list = pods(4);
      const order = walkOrder(list, 'hot');
      const balancer = new ConsistentHash({ ...DEFAULTS, boundedLoadFactor: factor });
      const load = new Map(list.map((e) => [e.address, 0]));
      for (let m = 0; m < 200; m++) {
        const chosen = balancer.pick(list, { hashKey: 'hot' })!.address;
        // The model: the first endpoint of the walk that stays within ⌈c × (m + 1) / n⌉ with this call.
        const bound = Math.ceil((factor * (m + 1)) / list.length);
        assert.equal(chosen, order.find((a) => load.get(a)! + 1 <= bound), `call ${m + 1}`);
        balancer.onStart(chosen);
        load.set(chosen, load.get(chosen)! + 1);
        assert.ok(Math.max(...load.values()) <= bound, `call ${m + 1}: ${JSON.stringify([...load])}`);
      }
      assert.equal(load.get(order[0]!), Math.ceil(factor * 50), 'the owner holds the most it may');
    });
  }

  it('holds the bound with skewed keys: half the calls share one key, none ends', () => {
    const list = pods(5);
    const balancer = new ConsistentHash(DEFAULTS);
    const random = seededRandom(21);
    const load = new Map<string, number>();
    for (let m = 1; m <= 2000; m++) {
      const hashKey = random() < 0.5 ? 'hot' : `key-${Math.floor(random() * 100_000)}`;
      const chosen = balancer.pick(list, { hashKey })!.address;
      balancer.onStart(chosen);
      load.set(chosen, (load.get(chosen) ?? 0) + 1);
      const bound = Math.ceil((1.25 * m) / list.length);
      for (const [address, n] of load) assert.ok(n <= bound, `after ${m} calls ${address} holds ${n} > ${bound}`);
    }
  });

  it('overflows the same way in two sidecars with the same load, and back to the owner once calls end', () => {
    const list = pods(3);
    const [a, b] = [new ConsistentHash(DEFAULTS), new ConsistentHash(DEFAULTS)];
    const picks = (balancer: ConsistentHash) => Array.from({ length: 30 }, () => {
      const chosen = balancer.pick(list, { hashKey: 'hot' })!.address;
      balancer.onStart(chosen);
      return chosen;
    });
    const fromA = picks(a);
    assert.deepEqual(picks(b), fromA);
    assert.ok(new Set(fromA).size > 1, 'the hot key overflowed');
    for (const address of fromA) a.onEnd(address);
    assert.equal(a.pick(list, { hashKey: 'hot' })!.address, fromA[0], 'idle again: the owner');
  });

  it('counts a weight-2 endpoint as able to hold twice the calls', () => {
    const list = pods(3).map((e, i) => (i === 0 ? { ...e, weight: 2 } : e));
    const balancer = new ConsistentHash({ ...DEFAULTS, boundedLoadFactor: 1 });
    for (let m = 0; m < 400; m++) balancer.onStart(balancer.pick(list, { hashKey: `k${m % 3}` })!.address);
    // With c = 1 the bound is ⌈(m + 1) × w / W⌉: 200, 100, 100 for 400 calls.
    assert.deepEqual(list.map((e) => balancer.inFlight(e.address)), [200, 100, 100]);
  });
});

describe('ConsistentHash: exclusions and calls without a key', () => {
  it('stays on the key\'s endpoint when no exclusion is given, as a retry under affinity does', () => {
    const list = pods(4);
    const balancer = new ConsistentHash(DEFAULTS);
    const owner = balancer.pick(list, { hashKey: 'k' })!;
    balancer.onStart(owner.address);
    balancer.onEnd(owner.address);
    assert.equal(balancer.pick(list, { hashKey: 'k' }), owner);
  });

  it('with exclusions, goes where the key would go without the excluded endpoints', () => {
    const list = pods(5);
    const balancer = new ConsistentHash(DEFAULTS);
    const exclude = new Set([list[1]!.address, list[3]!.address]);
    const without = list.filter((e) => !exclude.has(e.address));
    const keys = KEYS.slice(0, 2000);
    assert.deepEqual(keys.map((hashKey) => balancer.pick(list, { hashKey, exclude })!.address), owners(new ConsistentHash(DEFAULTS), without, keys));
    const all = new Set(list.map((e) => e.address));
    assert.deepEqual(keys.map((hashKey) => balancer.pick(list, { hashKey, exclude: all })!.address), owners(balancer, list, keys), 'all tried: as if none were');
  });

  it('spreads calls without a key by load (least request), and avoids endpoints already tried', () => {
    const list = pods(3);
    const balancer = new ConsistentHash(DEFAULTS, { random: seededRandom(8) });
    const counts = tally(Array.from({ length: 3000 }, () => balancer.pick(list, { hashKey: '' })!.address));
    for (const e of list) assert.ok(Math.abs(counts[e.address]! / 3000 - 1 / 3) < 0.05, JSON.stringify(counts));
    for (let i = 0; i < 5; i++) balancer.onStart(list[0]!.address);
    const busy = tally(Array.from({ length: 300 }, () => balancer.pick(list)!.address));
    assert.equal(busy[list[0]!.address], undefined, 'the busiest is never the less busy of two');
    assert.equal(balancer.pick(list, { exclude: new Set([list[1]!.address, list[2]!.address]) }), list[0]);
  });

  it('forgets the load of endpoints that left discovery', () => {
    const list = pods(3);
    const balancer = new ConsistentHash({ ...DEFAULTS, boundedLoadFactor: 1 });
    const owner = balancer.pick(list, { hashKey: 'k' })!.address;
    for (let i = 0; i < 10; i++) balancer.onStart(owner);
    assert.notEqual(balancer.pick(list, { hashKey: 'k' })!.address, owner, 'full');
    balancer.retain(new Set(list.map((e) => e.address).filter((a) => a !== owner)));
    assert.equal(balancer.pick(list, { hashKey: 'k' })!.address, owner, 'back with no calls counted');
  });
});

const GOLDEN = ['10.244.1.30:15002', '10.244.0.17:15002', '10.244.3.56:15002', '10.244.1.30:15002', '10.244.3.56:15002', '10.244.2.43:15002'];
