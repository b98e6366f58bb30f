// The balance layer with a fake `next` and fake links: where each try goes (the balancer's pick,
// avoiding endpoints already tried; a session's owner; a broadcast's one replica), and the balancer
// and outlier accounting around the try.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { balanceLayer, type BalanceLayerOptions } from '../../../sidecar/src/call/balance.ts';
import type { Call } from '../../../sidecar/src/call/call.ts';
import type { SessionAffinity } from '../../../sidecar/src/call/pipeline.ts';
import type { LinkPool } from '../../../sidecar/src/mcp/link-pool.ts';
import type { PeerLink } from '../../../sidecar/src/mcp/link.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { BreakerRegistry } from '../../../sidecar/src/resilience/breaker.ts';
import { answer, testCall } from './fixtures.ts';

const A = '10.0.0.1:15002';
const B = '10.0.0.2:15002';

function options(states: Record<string, string> = { [A]: 'ready', [B]: 'ready' }): BalanceLayerOptions {
  const links = { find: (address: string) => states[address] ? { address, state: states[address] } as unknown as PeerLink : undefined } as unknown as LinkPool;
  const gone: string[] = [];
  const sessions = { onOwnerGone: (s: string) => gone.push(s) } as unknown as SessionAffinity;
  return { links, breakers: new BreakerRegistry(), sessions, instance: 'orders-1' };
}

function withEndpoints(call: Call, ...addresses: string[]): Call {
  call.endpoints = addresses.map((address) => ({ address, labels: {}, weight: 1 }));
  return call;
}

const recordLink = (seen: string[]) => async (call: Call) => { seen.push(call.link!.address); return answer(503, call.link!.address); };

describe('balance layer', () => {
  it('a retry goes to an endpoint the call has not tried', async () => {
    const seen: string[] = [];
    const layer = balanceLayer(options())(recordLink(seen));
    const call = withEndpoints(testCall(), A, B);
    call.attempt = 1;
    await layer(call);
    call.attempt = 2;
    await layer(call);
    assert.equal(new Set(seen).size, 2, `two different endpoints: ${seen.join(', ')}`);
    assert.deepEqual([...call.tried!], [seen[0]]);
  });

  it('a pinned session goes to its owner only; an owner that left is SESSION_OWNER_GONE', async () => {
    const seen: string[] = [];
    const layer = balanceLayer(options())(recordLink(seen));
    const call = withEndpoints(testCall(), A, B);
    call.owner = B;
    call.attempt = 1;
    for (let i = 0; i < 3; i++) await layer(call);
    assert.deepEqual(seen, [B, B, B]);
    const orphan = withEndpoints(testCall(), A);
    orphan.owner = B;
    await assert.rejects(layer(orphan), { code: 'SESSION_OWNER_GONE', service: 'payments.default' });
  });

  it('a broadcast delivery goes to its one replica and is told before it leaves; a replica that left fails it', async () => {
    const seen: string[] = [];
    const sent: string[] = [];
    const layer = balanceLayer(options())(recordLink(seen));
    const call = withEndpoints(testCall({ delivery: { messageId: 'm1', attempt: 1, endpoint: B, pinned: true, onSent: (e) => sent.push(e) } }), A, B);
    call.attempt = 1;
    await layer(call);
    assert.deepEqual(seen, [B]);
    assert.deepEqual(sent, [B]);
    const gone = withEndpoints(testCall({ delivery: { messageId: 'm2', attempt: 1, endpoint: B, pinned: true } }), A);
    await assert.rejects(layer(gone), { code: 'NO_HEALTHY_ENDPOINT' });
  });

  it('reports each try to the balancer, and to outlier detection unless the call\'s own signal ended it', async () => {
    const recorded: [string, boolean][] = [];
    const call = withEndpoints(testCall(), A);
    call.attempt = 1;
    const outlier = call.state!.outlier;
    const record = outlier.record.bind(outlier);
    outlier.record = (address: string, ok: boolean) => { recorded.push([address, ok]); record(address, ok); };
    await balanceLayer(options())(async () => answer(200, A))(call);
    await assert.rejects(balanceLayer(options())(async () => { throw new MeshError('LINK_BROKEN', 'broke'); })(call), { code: 'LINK_BROKEN' });
    const reason = new MeshError('DEADLINE_EXCEEDED', 'time is up');
    await assert.rejects(balanceLayer(options())(async () => { call.request.cancel.abort(reason); throw reason; })(call), (err) => err === reason);
    assert.deepEqual(recorded, [[A, true], [A, false]], 'the try cut short by the deadline is not counted');
  });

  it('no endpoint at all is NO_HEALTHY_ENDPOINT naming the service', async () => {
    await assert.rejects(balanceLayer(options())(async () => answer(200))(withEndpoints(testCall())), { code: 'NO_HEALTHY_ENDPOINT', service: 'payments.default' });
  });
});
