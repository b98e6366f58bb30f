// Consistent hashing through real sidecars: a key always reaches the same replica, keys spread over
// the replicas, and a retry under affinity stays on the owning replica.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { useFleet } from '../helpers/fleet.ts';
import { policy } from '../helpers/policies.ts';

describe('consistent-hash load balancing', { timeout: 60_000 }, () => {
  const fleet = useFleet({
    service: 'carts',
    replicas: 3,
    policies: {
      'carts.yaml': policy('carts', 'carts', [
        '  loadBalancer:',
        '    policy: consistent-hash',
        '    consistentHash: { hashOn: [{ header: x-user }, { cookie: user }] }',
        '  outlierDetection: { enabled: false }',
        '',
      ].join('\n')),
    },
  });

  test('every call with one key reaches one replica, and 60 keys spread over all three', async () => {
    const ownerOf = new Map<string, string>();
    for (let round = 0; round < 3; round++) {
      for (let user = 0; user < 60; user++) {
        const outcome = await fleet().call('/work/cart', { headers: { 'x-user': `user-${user}` } });
        assert.equal(outcome.status, 200);
        const seen = ownerOf.get(`user-${user}`);
        if (seen) assert.equal(outcome.replica, seen, `user-${user} stays on its replica`);
        else ownerOf.set(`user-${user}`, outcome.replica!);
      }
    }
    const perReplica = new Map<string, number>();
    for (const replica of ownerOf.values()) perReplica.set(replica, (perReplica.get(replica) ?? 0) + 1);
    assert.equal(perReplica.size, 3, `keys reach every replica: ${JSON.stringify([...perReplica])}`);
    for (const [replica, keys] of perReplica) assert.ok(keys >= 8, `${replica} owns ${keys} of 60 keys`);
  });

  test('the fallback source (a cookie) gives the same owner as the same value in the header', async () => {
    const byHeader = await fleet().call('/work/x', { headers: { 'x-user': 'same-user' } });
    const byCookie = await fleet().call('/work/x', { headers: { cookie: 'theme=dark; user=same-user' } });
    assert.equal(byCookie.replica, byHeader.replica);
  });

  test('a retry under affinity stays on the owning replica', async () => {
    const owner = (await fleet().call('/work/owner', { headers: { 'x-user': 'retry-user' } })).replica;
    // The app cuts the first request to this path on each replica; the GET is retried (reset).
    const outcome = await fleet().call('/reset-once/affinity', { headers: { 'x-user': 'retry-user' } });
    assert.equal(outcome.status, 200);
    assert.equal(outcome.attempts, 2, 'one retry, on the owner (another replica would have cut it too)');
    assert.equal(outcome.replica, owner);
  });
});
