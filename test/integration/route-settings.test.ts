// A route with breaker settings of its own must not reset the service's shared breaker: calls that
// alternate between the route and the rest of the service still let the service breaker open.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { useFleet } from '../helpers/fleet.ts';
import { documents, policy } from '../helpers/policies.ts';

describe('route-specific settings keep their own runtime state', { timeout: 60_000 }, () => {
  const fleet = useFleet({
    service: 'svc',
    replicas: 1,
    policies: {
      'svc.yaml': documents(
        policy('svc', 'svc', '  circuitBreaker: { volumeThreshold: 5, resetTimeout: 60s }\n  outlierDetection: { enabled: false }\n'),
        policy('svc-slow', 'svc', '  route:\n    name: slow\n    match: { path: { prefix: /delay } }\n  circuitBreaker: { volumeThreshold: 1000 }\n'),
      ),
    },
  });

  test('calls alternating with a route that has its own breaker still open the service breaker', async () => {
    fleet().replicas[0]!.app.behaviour.failing = 'always';
    const codes: string[] = [];
    for (let i = 0; i < 20 && !codes.includes('CIRCUIT_OPEN'); i++) {
      codes.push((await fleet().call('/work/a')).code ?? 'app-503');
      await fleet().call('/delay/0'); // the route with its own breaker, in between every call
    }
    assert.ok(codes.includes('CIRCUIT_OPEN'), `the service breaker opened: ${codes.join(' ')}`);
    assert.ok(codes.indexOf('CIRCUIT_OPEN') <= 6, `after about volumeThreshold (5) failures: ${codes.join(' ')}`);
  });
});
