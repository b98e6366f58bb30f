import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Endpoint } from '../../../sidecar/src/discovery/resolver.ts';
import { SecureNaming } from '../../../sidecar/src/security/secure-naming.ts';

/** A resolver whose table the test sets, and tells its listeners about. */
function tableResolver(table: Record<string, Endpoint[]>) {
  const listeners: (() => void)[] = [];
  return {
    endpoints: (service: string, namespace: string) => table[`${service}.${namespace}`],
    onChange: (listener: () => void) => { listeners.push(listener); },
    set(key: string, endpoints: Endpoint[]) { table[key] = endpoints; for (const l of listeners) l(); },
  };
}

const endpoint = (address: string, identities?: string[]): Endpoint => ({ address, labels: {}, weight: 1, ...(identities ? { identities } : {}) });

describe('SecureNaming', () => {
  test('by default only the identity named like the service, in its namespace, may serve it', () => {
    const naming = new SecureNaming({ resolver: tableResolver({ 'payments.shop': [endpoint('a:1')] }), identities: {}, namespace: 'shop' });
    assert.equal(naming.mayServe('payments.shop', 'a:1', 'payments.shop'), true);
    assert.equal(naming.mayServe('payments.shop', 'a:1', 'payments.other'), false, 'the same name in another namespace');
    assert.equal(naming.mayServe('payments.shop', 'a:1', 'orders.shop'), false);
    assert.deepEqual(naming.allowed('payments.shop', 'a:1'), ['payments.shop']);
  });

  test('tls.identities adds identities; bare keys are in this sidecar\'s namespace, bare identities in the service\'s', () => {
    const naming = new SecureNaming({
      resolver: tableResolver({}), namespace: 'web',
      identities: { payments: ['payments-canary', 'billing.finance'], 'ledger.finance': ['books'] },
    });
    assert.deepEqual(naming.allowed('payments.web', 'a:1'), ['payments.web', 'payments-canary.web', 'billing.finance']);
    assert.equal(naming.mayServe('ledger.finance', 'a:1', 'books.finance'), true);
    assert.equal(naming.mayServe('ledger.finance', 'a:1', 'books.web'), false);
  });

  test('an endpoint\'s own identities (its pod\'s service account) count for that endpoint only, and follow discovery', () => {
    const resolver = tableResolver({ 'payments.shop': [endpoint('a:1', ['payments-sa.shop']), endpoint('b:1')] });
    const naming = new SecureNaming({ resolver, identities: {}, namespace: 'shop' });
    assert.equal(naming.mayServe('payments.shop', 'a:1', 'payments-sa.shop'), true);
    assert.equal(naming.mayServe('payments.shop', 'b:1', 'payments-sa.shop'), false);
    // The address is now another pod's, running as another account.
    resolver.set('payments.shop', [endpoint('a:1', ['orders.shop'])]);
    assert.equal(naming.mayServe('payments.shop', 'a:1', 'payments-sa.shop'), false);
    assert.equal(naming.mayServe('payments.shop', 'a:1', 'orders.shop'), true);
  });
});
