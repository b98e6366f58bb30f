import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { allowedBy, egressAddress, isForbiddenAddress } from '../../../sidecar/src/outbound/egress.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';

describe('egress', () => {
  it('the allow list: exact names, *.domain for subdomains only, * for any', () => {
    const allow = ['api.stripe.com', '*.googleapis.com'];
    assert.equal(allowedBy('api.stripe.com', allow), 'api.stripe.com');
    assert.equal(allowedBy('API.Stripe.com.', allow), 'api.stripe.com');
    assert.equal(allowedBy('storage.googleapis.com', allow), '*.googleapis.com');
    assert.equal(allowedBy('googleapis.com', allow), undefined);
    assert.equal(allowedBy('evil-googleapis.com', allow), undefined);
    assert.equal(allowedBy('stripe.com', allow), undefined);
    assert.equal(allowedBy('anything.example', ['*']), '*');
    assert.equal(allowedBy('anything.example', []), undefined);
  });

  it('never loopback, link-local, unspecified or metadata addresses', () => {
    for (const address of ['127.0.0.1', '127.9.9.9', '0.0.0.0', '169.254.169.254', '169.254.1.1', '::1', '::', 'fe80::1', '::ffff:127.0.0.1', 'fd00:ec2::254', 'not-an-ip']) {
      assert.equal(isForbiddenAddress(address), true, address);
    }
    for (const address of ['10.0.0.1', '93.184.216.34', '2606:2800:220:1::248', '::ffff:10.0.0.1']) {
      assert.equal(isForbiddenAddress(address), false, address);
    }
  });

  it('an allowed name that resolves to a forbidden address is refused, with the reason', async () => {
    await assert.rejects(egressAddress('localhost'), (err: MeshError) => err.code === 'EGRESS_NOT_ALLOWED' && /loopback, link-local or metadata/.test(err.message));
    await assert.rejects(egressAddress('169.254.169.254'), (err: MeshError) => err.code === 'EGRESS_NOT_ALLOWED');
    assert.equal(await egressAddress('10.1.2.3'), '10.1.2.3');
  });
});
