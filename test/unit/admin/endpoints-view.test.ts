import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { endpointsView, type LinkLike, type LinksLike } from '../../../sidecar/src/admin/endpoints-view.ts';
import { ServiceStates } from '../../../sidecar/src/call/service-state.ts';
import { StaticResolver } from '../../../sidecar/src/discovery/static.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import type { LinkState } from '../../../sidecar/src/mcp/link.ts';
import { BreakerRegistry } from '../../../sidecar/src/resilience/breaker.ts';
import { compileValid, policy } from '../../helpers/policies.ts';

const A = '10.0.0.1:15002';
const B = '10.0.0.2:15002';
const C = '10.0.0.3:15002';

function links(states: Record<string, LinkState>): LinksLike {
  const all: LinkLike[] = Object.entries(states).map(([address, state]) => ({ address, state, inFlight: 0, stats: { batches: 2, envelopes: 5 } }));
  return { all: () => all, find: (address) => all.find((l) => l.address === address) };
}

const refused = async () => { throw new MeshError('PEER_UNAVAILABLE', 'no link'); };

describe('endpointsView', () => {
  const breakers = new BreakerRegistry();
  after(() => breakers.close());

  it('per endpoint: link state, health, in flight, EWMA, breaker, ejection; per service: balancers and breaker', async () => {
    const table = compileValid([['payments.yaml', policy('payments', 'payments', [
      '  circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 }',
      '  outlierDetection: { consecutiveFailures: 2, maxEjectionPercent: 100 }',
      '',
    ].join('\n'))]]);
    const effective = table.resolve('payments', 'default', { method: 'GET', path: '/', headers: [] });
    const services = new ServiceStates();
    const state = services.get('payments.default', effective);
    // A: answered in 12 ms; one try still in flight.
    state.balancer.onStart(A);
    state.balancer.onEnd(A, 12, true);
    state.balancer.onStart(A);
    // B: two failures in a row: ejected; its breaker opens on the first.
    for (let i = 0; i < 2; i++) {
      state.balancer.onStart(B);
      state.balancer.onEnd(B, 1, false);
      state.outlier.record(B, false);
    }
    await breakers.endpoint('payments.default', B, effective.circuitBreaker).run(refused).catch(() => {});
    await breakers.endpoint('payments.default', A, effective.circuitBreaker).run(async () => ({ status: 200 }));

    const resolver = new StaticResolver({ payments: [A, B, C].map((address) => ({ address, labels: {}, weight: 1 })), inventory: [{ address: C, labels: { zone: 'b' }, weight: 3 }] }, 'default');
    const before = Date.now();
    const view = endpointsView(links({ [A]: 'ready', [B]: 'ready', [C]: 'connecting' }), services, breakers, resolver);

    const payments = view.services['payments.default']!;
    assert.deepEqual(payments.balancers, ['p2c-ewma']);
    assert.equal(payments.breaker, 'closed', 'no service breaker was made');
    assert.deepEqual(payments.endpoints.map((e) => e.address), [A, B, C]);
    const [a, b, c] = payments.endpoints;
    assert.deepEqual({ ...a!, ewmaMs: Math.round(a!.ewmaMs!) }, {
      address: A, weight: 1, labels: {}, link: 'ready', healthy: true, inFlight: 1, ewmaMs: 12, breaker: 'closed', ejection: null, consecutiveFailures: 0,
    });
    assert.equal(b!.healthy, false);
    assert.equal(b!.breaker, 'open');
    assert.equal(b!.ejection!.reason, 'consecutive-failures');
    assert.equal(b!.ejection!.timesEjected, 1);
    assert.ok(b!.ejection!.returnsInMs > 0 && b!.ejection!.returnsInMs <= 30_000);
    const until = Date.parse(b!.ejection!.until);
    assert.ok(until >= before + b!.ejection!.returnsInMs - 50 && until <= Date.now() + 30_000, 'until = now + returnsInMs');
    assert.equal(c!.link, 'connecting');
    assert.equal(c!.healthy, false, 'a link that is not ready takes no calls');
    assert.equal(c!.ewmaMs, null, 'no estimate before any answer');
    assert.equal(c!.breaker, 'closed', 'no breaker yet: closed');

    // A service discovery lists but nobody called: its endpoints, with nothing learnt yet.
    const inventory = view.services['inventory.default']!;
    assert.deepEqual(inventory.balancers, []);
    assert.deepEqual(inventory.endpoints, [{ address: C, weight: 3, labels: { zone: 'b' }, link: 'connecting', healthy: false, inFlight: null, ewmaMs: null, breaker: 'closed', ejection: null, consecutiveFailures: 0 }]);
    assert.deepEqual(inventory.outlier, []);

    // The fields from before are kept.
    assert.deepEqual(view.links[0], { address: A, state: 'ready', inFlight: 0, batches: 2, envelopes: 5 });
    assert.equal(payments.outlier.length, 1);
    assert.deepEqual(payments.concurrency, [{ inFlight: 0, queued: 0 }]);
    assert.equal(payments.retryBudgets.length, 1);
    assert.ok(view.breakers.some((s) => s.address === B && s.state === 'open'));
  });

  it('without discovery: the services called so far and the endpoints they know of', () => {
    const table = compileValid([['orders.yaml', policy('orders', 'orders', '  loadBalancer: { policy: round-robin }\n')]]);
    const services = new ServiceStates();
    const state = services.get('orders.default', table.resolve('orders', 'default', { method: 'GET', path: '/', headers: [] }));
    state.outlier.record(A, true);
    const view = endpointsView(links({}), services, breakers);
    const orders = view.services['orders.default']!;
    assert.deepEqual(orders.balancers, ['round-robin']);
    assert.deepEqual(orders.endpoints.map((e) => [e.address, e.link, e.inFlight, e.ewmaMs]), [[A, 'none', null, null]], 'round-robin counts nothing in flight; no link: none');
  });
});
