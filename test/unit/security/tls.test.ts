import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../../sidecar/src/config/load.ts';
import { loadMaterial } from '../../../sidecar/src/security/tls.ts';
import { makeCertDir } from '../../helpers/certs.ts';

describe('loading TLS material', () => {
  const certs = makeCertDir(['payments', 'orders']);
  const other = makeCertDir(['payments']);
  after(() => { certs.remove(); other.remove(); });
  const files = (dir: string, name: string, ca = `${dir}/ca.crt`) => ({ cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key`, ca });

  it('checks and returns the identity', () => {
    const material = loadMaterial(files(certs.dir, 'payments'), 'cluster.local');
    assert.equal(material.identity.uri, 'spiffe://cluster.local/ns/default/sa/payments');
  });
  it('refuses a certificate not signed by the CA, a key of another certificate, another trust domain', () => {
    assert.throws(() => loadMaterial(files(other.dir, 'payments', `${certs.dir}/ca.crt`), 'cluster.local'), (e) => e instanceof ConfigError && /not signed/.test(e.message));
    assert.throws(() => loadMaterial({ ...files(certs.dir, 'payments'), key: `${certs.dir}/orders.key` }, 'cluster.local'), /does not belong/);
    assert.throws(() => loadMaterial(files(certs.dir, 'payments'), 'example.org'), /trust domain/);
    writeFileSync(`${certs.dir}/junk.crt`, 'junk');
    assert.throws(() => loadMaterial({ ...files(certs.dir, 'payments'), cert: `${certs.dir}/junk.crt` }, 'cluster.local'), /not a PEM certificate/);
  });
});
