import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { identityOf, meshSource, parseSpiffeId, uriSans } from '../../../sidecar/src/security/identity.ts';

describe('SPIFFE identities', () => {
  it('parses sa and svc forms into the mesh name', () => {
    const id = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/payments');
    assert.ok(id);
    assert.equal(meshSource(id), 'payments.shop');
    assert.equal(meshSource(parseSpiffeId('spiffe://cluster.local/ns/shop/svc/orders')!), 'orders.shop');
    assert.equal(parseSpiffeId('spiffe://cluster.local/payments'), undefined);
  });

  it('takes the one spiffe URI SAN in the trust domain, else explains', () => {
    const san = 'URI:spiffe://cluster.local/ns/default/sa/orders, DNS:localhost, IP Address:127.0.0.1';
    assert.deepEqual(uriSans(san), ['spiffe://cluster.local/ns/default/sa/orders']);
    const id = identityOf(san, 'cluster.local');
    assert.equal(typeof id, 'object');
    assert.match(identityOf(san, 'example.org') as string, /not in trust domain/);
    assert.match(identityOf('DNS:localhost', 'cluster.local') as string, /no spiffe/);
    assert.match(identityOf(`${san}, URI:spiffe://cluster.local/ns/default/sa/x`, 'cluster.local') as string, /more than one/);
  });
});
