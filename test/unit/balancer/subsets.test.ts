import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { headersMatch, inSubset, selectSubset, type SubsetRules } from '../../../sidecar/src/balancer/subsets.ts';
import { endpoint } from './endpoints.ts';
import { seededRandom, tally } from './seeded-random.ts';

const v1a = endpoint('v1a', 1, { app: 'pay', version: 'v1' });
const v1b = endpoint('v1b', 1, { app: 'pay', version: 'v1' });
const v2 = endpoint('v2', 1, { app: 'pay', version: 'v2' });
const stray = endpoint('stray', 1, { app: 'pay' });
const all = [v1a, v1b, v2, stray];

const canary: SubsetRules = {
  subsets: [
    { name: 'stable', labels: { version: 'v1' }, weight: 90 },
    { name: 'canary', labels: { version: 'v2' }, weight: 10 },
  ],
  headerRoutes: [{ headers: { 'x-canary': 'true' }, subset: 'canary' }],
};
const names = (list: readonly { address: string }[]) => list.map((e) => e.address);

describe('selectSubset', () => {
  it('uses every endpoint when no subsets are defined', () => {
    const s = selectSubset(all, { subsets: [], headerRoutes: [] }, []);
    assert.deepEqual(s, { subset: undefined, endpoints: all, via: 'all', fallback: false });
  });

  it('splits 90/10 within ±3% over 5,000 requests, never to endpoints outside every subset', () => {
    const random = seededRandom(31);
    const picks = Array.from({ length: 5000 }, () => selectSubset(all, canary, [], random));
    const counts = tally(picks.map((p) => p.subset!));
    assert.ok(Math.abs(counts.canary! / 5000 - 0.1) <= 0.03, JSON.stringify(counts));
    assert.equal(counts.canary! + counts.stable!, 5000);
    assert.ok(picks.every((p) => !p.endpoints.includes(stray)));
    assert.deepEqual(names(picks.find((p) => p.subset === 'stable')!.endpoints), ['v1a', 'v1b']);
  });

  it('sends every request with the header to the canary', () => {
    const random = seededRandom(32);
    for (let i = 0; i < 1000; i++) {
      const s = selectSubset(all, canary, [{ name: 'X-Canary', value: 'true' }, { name: 'accept', value: '*/*' }], random);
      assert.equal(s.subset, 'canary');
      assert.deepEqual(names(s.endpoints), ['v2']);
      assert.equal(s.via, 'header');
    }
  });

  it('needs every header of a route to match, with the exact value', () => {
    const rules: SubsetRules = { ...canary, headerRoutes: [{ headers: { 'x-canary': 'true', 'x-user': 'qa' }, subset: 'canary' }] };
    const random = seededRandom(33);
    const viaHeader = (headers: { name: string; value: string }[]) =>
      Array.from({ length: 200 }, () => selectSubset(all, rules, headers, random)).filter((s) => s.via === 'header').length;
    assert.equal(viaHeader([{ name: 'x-canary', value: 'true' }]), 0);
    assert.equal(viaHeader([{ name: 'x-canary', value: 'TRUE' }, { name: 'x-user', value: 'qa' }]), 0);
    assert.equal(viaHeader([{ name: 'x-canary', value: 'true' }, { name: 'x-user', value: 'qa' }]), 200);
  });

  it('takes the first matching header route', () => {
    const rules: SubsetRules = {
      ...canary,
      headerRoutes: [{ headers: { 'x-qa': '1' }, subset: 'stable' }, { headers: { 'x-canary': 'true' }, subset: 'canary' }],
    };
    const s = selectSubset(all, rules, [{ name: 'x-canary', value: 'true' }, { name: 'x-qa', value: '1' }], seededRandom(34));
    assert.equal(s.subset, 'stable');
  });

  it('gives an empty subset\'s share to the others, and falls back from a header route to it', () => {
    const withoutCanary = [v1a, v1b, stray];
    const random = seededRandom(35);
    const split = Array.from({ length: 500 }, () => selectSubset(withoutCanary, canary, [], random));
    assert.ok(split.every((s) => s.subset === 'stable' && !s.fallback));
    const coloured = selectSubset(withoutCanary, canary, [{ name: 'x-canary', value: 'true' }], random);
    assert.equal(coloured.subset, 'stable');
    assert.equal(coloured.fallback, true);
  });

  it('reaches a weight-0 subset only by header', () => {
    const dark: SubsetRules = { ...canary, subsets: [canary.subsets[0]!, { ...canary.subsets[1]!, weight: 0 }] };
    const random = seededRandom(36);
    assert.ok(Array.from({ length: 1000 }, () => selectSubset(all, dark, [], random)).every((s) => s.subset === 'stable'));
    assert.equal(selectSubset(all, dark, [{ name: 'x-canary', value: 'true' }], random).subset, 'canary');
    assert.equal(selectSubset([v2], dark, [], random).subset, 'canary', 'the only subset with endpoints serves even at weight 0');
  });

  it('returns no endpoints when no subset has any, rather than using the others', () => {
    const s = selectSubset([stray], canary, [], seededRandom(37));
    assert.deepEqual(s.endpoints, []);
    assert.equal(s.subset, undefined);
  });
});

describe('inSubset / headersMatch', () => {
  it('matches all labels of a subset', () => {
    assert.equal(inSubset(v1a, { name: 's', labels: { app: 'pay', version: 'v1' }, weight: 1 }), true);
    assert.equal(inSubset(v1a, { name: 's', labels: { app: 'pay', version: 'v2' }, weight: 1 }), false);
    assert.equal(inSubset(stray, { name: 's', labels: {}, weight: 1 }), true, 'no labels: everything');
  });

  it('matches header names case-insensitively and any of repeated headers', () => {
    const route = { headers: { 'X-Env': 'qa' }, subset: 's' };
    assert.equal(headersMatch(route, [{ name: 'x-env', value: 'prod' }, { name: 'x-env', value: 'qa' }]), true);
    assert.equal(headersMatch(route, []), false);
  });
});
