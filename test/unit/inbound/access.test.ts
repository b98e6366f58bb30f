import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { AccessCheckingHandler, sourceAllowed } from '../../../sidecar/src/inbound/access.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { MessageType, type Envelope } from '../../../sidecar/src/mcp/codec.ts';
import type { InboundHandler } from '../../../sidecar/src/mcp/server.ts';
import { compileValid, documents, policy } from '../../helpers/policies.ts';

describe('sourceAllowed', () => {
  it('a bare name is in the called service\'s namespace; *.ns is a namespace; * is anyone', () => {
    assert.equal(sourceAllowed('orders.shop', ['orders'], 'shop'), 'orders');
    assert.equal(sourceAllowed('orders.other', ['orders'], 'shop'), undefined);
    assert.equal(sourceAllowed('checkout.shop', ['checkout.shop'], 'x'), 'checkout.shop');
    assert.equal(sourceAllowed('invoices.billing', ['*.billing'], 'shop'), '*.billing');
    assert.equal(sourceAllowed('invoices.billingx', ['*.billing'], 'shop'), undefined);
    assert.equal(sourceAllowed('anyone.anywhere', ['*'], 'shop'), '*');
    assert.equal(sourceAllowed('', ['orders'], 'shop'), undefined);
  });

  it('a caller whose name has dots (a service account like "web.frontend") is split at the last dot: the namespace never has one', () => {
    assert.equal(sourceAllowed('web.frontend.shop', ['*.shop'], 'x'), '*.shop');
    assert.equal(sourceAllowed('web.frontend.shop', ['web.frontend.shop'], 'x'), 'web.frontend.shop');
    assert.equal(sourceAllowed('web.frontend.shop', ['*.frontend'], 'shop'), undefined);
  });
});

describe('AccessCheckingHandler', () => {
  const table = compileValid([['access.yaml', documents(
    policy('payments', 'payments', '  namespace: shop\n  access:\n    allow: [orders]\n'),
    policy('payments-refunds', 'payments', '  namespace: shop\n  route:\n    name: refunds\n    match:\n      path: { prefix: /refunds }\n  access:\n    allow: [support]\n'),
    policy('open', 'open', '  namespace: shop\n'),
  )]]);
  const reached: string[] = [];
  const app: InboundHandler = {
    unary: async (request) => { reached.push(`${request.source} ${request.http?.path}`); return { id: 'r', type: MessageType.RESPONSE, http: { status: 200 } }; },
    stream: async (head) => { reached.push(`stream ${head.source}`); return { head: { id: 'r', type: MessageType.RESPONSE, http: { status: 200 } }, body: null }; },
    pull: () => undefined,
  };
  const denied: string[] = [];
  const handler = (service: string) => new AccessCheckingHandler(app, {
    service, namespace: 'shop', logger: pino({ level: 'silent' }),
    policy: (request) => table.resolve(service, 'shop', request),
    restricted: () => table.restrictsAccess(service, 'shop'),
    onDenied: (route, source) => denied.push(`${route} ${source}`),
  });
  const request = (source: string, path: string): Envelope => ({ id: 'q', type: MessageType.REQUEST, source, http: { method: 'POST', path } });

  it('lets allowed callers through, per route, and refuses the rest with 403 ACCESS_DENIED', async () => {
    const payments = handler('payments');
    await payments.unary(request('orders.shop', '/charge'), new AbortController().signal);
    await assert.rejects(payments.unary(request('intruder.shop', '/charge'), new AbortController().signal),
      (err: MeshError) => err.code === 'ACCESS_DENIED' && err.status === 403 && /intruder\.shop may not call payments\.shop/.test(err.message));
    await assert.rejects(payments.unary(request('orders.shop', '/refunds/1'), new AbortController().signal), (err: MeshError) => err.code === 'ACCESS_DENIED');
    await payments.unary(request('support.shop', '/refunds/1'), new AbortController().signal);
    await assert.rejects(payments.stream(request('intruder.shop', '/charge'), null, new AbortController().signal), (err: MeshError) => err.code === 'ACCESS_DENIED');
    assert.deepEqual(reached, ['orders.shop /charge', 'support.shop /refunds/1']);
    assert.deepEqual(denied, ['default intruder.shop', 'refunds orders.shop', 'default intruder.shop']);
  });

  it('the policy table knows which services restrict access; for the others no policy is looked up per call', async () => {
    assert.equal(table.restrictsAccess('payments', 'shop'), true);
    assert.equal(table.restrictsAccess('open', 'shop'), false);
    assert.equal(table.restrictsAccess('unknown', 'shop'), false);
    let lookups = 0;
    const quick = new AccessCheckingHandler(app, {
      service: 'open', namespace: 'shop', logger: pino({ level: 'silent' }),
      policy: (request) => { lookups++; return table.resolve('open', 'shop', request); },
      restricted: () => table.restrictsAccess('open', 'shop'),
      onDenied: () => {},
    });
    await quick.unary(request('anyone.else', '/y'), new AbortController().signal);
    assert.equal(lookups, 0);
  });

  it('a service whose policy says nothing about access lets everyone in', async () => {
    await handler('open').unary(request('anyone.else', '/x'), new AbortController().signal);
    assert.ok(reached.includes('anyone.else /x'));
  });
});
