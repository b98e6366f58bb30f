// Load balancing on real processes, counted at the apps: p2c-ewma keeps traffic off a slow replica;
// subsets split traffic by weight (canary) and a header match sends a request to the canary.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { useFleet } from '../helpers/fleet.ts';
import { runLoad } from '../helpers/load.ts';
import { policy } from '../helpers/policies.ts';

const percent = (part: number, whole: number) => (100 * part) / whole;

describe('p2c-ewma and a slow replica', { timeout: 30_000 }, () => {
  const started = useFleet({
    service: 'recommendations', replicas: 3,
    policies: { 'recommendations.yaml': policy('recommendations', 'recommendations', '  loadBalancer: { policy: p2c-ewma }\n') },
  });

  test('a replica 200 ms slower than its twins gets under 10% of 300 calls', async () => {
    const fleet = started();
    const slow = fleet.replicas[2]!.app;
    slow.behaviour.delayMs = 200;
    const calls = 300;
    const { results, elapsedMs } = await runLoad({ total: calls, concurrency: 8, timeLimitMs: 20_000, call: (i) => fleet.call(`/work/${i}`) });
    assert.equal(results.length, calls);
    assert.ok(results.every((r) => r.status === 200));
    const hits = fleet.hits();
    const share = percent(hits[2]!, calls);
    console.log(`slow replica: ${hits.join('/')} of ${calls} calls in ${Math.round(elapsedMs)} ms; the slow one got ${share.toFixed(1)}%`);
    assert.equal(hits[0]! + hits[1]! + hits[2]!, calls, 'no retries: every call reached one app once');
    assert.ok(share < 10, `the slow replica got ${share.toFixed(1)}% of the calls`);
    assert.ok(hits[0]! > calls / 4 && hits[1]! > calls / 4, 'the fast twins share the rest');
  });
});

describe('canary subsets and header routes', { timeout: 60_000 }, () => {
  const started = useFleet({
    service: 'checkout',
    replicas: [{ labels: { version: 'v1' } }, { labels: { version: 'v1' } }, { labels: { version: 'v2' } }],
    connections: 32,
    policies: {
      'checkout.yaml': policy('checkout-canary', 'checkout', [
        '  subsets:',
        '    - { name: stable, labels: { version: v1 }, weight: 90 }',
        '    - { name: canary, labels: { version: v2 }, weight: 10 }',
        '  headerRoutes:',
        '    - { headers: { x-canary: "true" }, subset: canary }',
        '',
      ].join('\n')),
    },
  });

  test('5,000 calls split 90/10 within ±3 points; every call with x-canary: true goes to the canary', async () => {
    const fleet = started();
    const calls = 5000;
    const { results, elapsedMs } = await runLoad({ total: calls, concurrency: 32, timeLimitMs: 30_000, call: (i) => fleet.call(`/work/${i}`) });
    assert.equal(results.length, calls, `all calls made within the time limit (${results.length} in ${Math.round(elapsedMs)} ms)`);
    assert.ok(results.every((r) => r.status === 200));
    const [stableA, stableB, canary] = fleet.hits() as [number, number, number];
    const canaryShare = percent(canary, calls);
    console.log(`canary split: ${calls} calls in ${Math.round(elapsedMs)} ms (${Math.round(calls / (elapsedMs / 1000))}/s); `
      + `stable ${stableA}+${stableB} (${percent(stableA + stableB, calls).toFixed(2)}%), canary ${canary} (${canaryShare.toFixed(2)}%)`);
    assert.equal(stableA + stableB + canary, calls);
    assert.ok(Math.abs(canaryShare - 10) <= 3, `canary share ${canaryShare.toFixed(2)}% is 10 ± 3`);
    assert.ok(stableA > 0 && stableB > 0, 'both stable replicas serve');

    const coloured = 200;
    const { results: routed } = await runLoad({
      total: coloured, concurrency: 16, timeLimitMs: 10_000,
      call: (i) => fleet.call(`/work/coloured-${i}`, { headers: { 'x-canary': 'true' } }),
    });
    assert.equal(routed.length, coloured);
    assert.deepEqual([...new Set(routed.map((r) => `${r.status} ${r.replica}`))], [`200 ${fleet.replicas[2]!.app.name}`], 'every coloured call answered by the canary');
    assert.deepEqual(fleet.hits(), [stableA, stableB, canary + coloured]);
  });
});
