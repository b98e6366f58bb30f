// The route layer with a fake `next`: the service and its endpoints, and the call's telemetry from
// start to end, failures included.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compose } from '../../../sidecar/src/call/call.ts';
import { concurrencyLayer } from '../../../sidecar/src/call/concurrency.ts';
import { deadlineLayer } from '../../../sidecar/src/call/deadline.ts';
import { routeLayer } from '../../../sidecar/src/call/route.ts';
import type { Resolver } from '../../../sidecar/src/discovery/resolver.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import type { CallObserver, OutboundStart, Outcome } from '../../../sidecar/src/telemetry/observer.ts';
import { answer, testCall } from './fixtures.ts';

function observer(): CallObserver & { starts: OutboundStart[]; ends: [Outcome, number][] } {
  const starts: OutboundStart[] = [];
  const ends: [Outcome, number][] = [];
  return {
    starts, ends,
    outbound: (start) => {
      starts.push(start);
      return { route() {}, affinity() {}, attempt: () => ({ trace: undefined, end() {} }), end: (outcome, attempts) => { ends.push([outcome, attempts]); } };
    },
    inbound: () => { throw new Error('not used'); },
  };
}

const resolver = (known: boolean) => ({ endpoints: () => known ? [{ address: '10.0.0.1:15002', labels: {}, weight: 1 }] : undefined }) as unknown as Resolver;

describe('route layer', () => {
  it('names the service, finds its endpoints and observes the call to its answer', async () => {
    const seen = observer();
    const call = testCall({ delivery: { messageId: 'm1', attempt: 1, pinned: false } });
    call.service = '';
    const result = await routeLayer({ resolver: resolver(true), observer: seen })(async (c) => { c.attempt = 2; return answer(200); })(call);
    assert.equal(result.status, 200);
    assert.equal(call.service, 'payments.default');
    assert.equal(call.endpoints.length, 1);
    assert.equal(seen.starts[0]!.kind, 'delivery');
    assert.equal(seen.starts[0]!.messageId, 'm1');
    assert.deepEqual(seen.ends, [[{ status: 200 }, 2]]);
  });

  it('a service discovery does not know is UNKNOWN_SERVICE, observed, and nothing below runs', async () => {
    const seen = observer();
    let ran = false;
    await assert.rejects(routeLayer({ resolver: resolver(false), observer: seen })(async () => { ran = true; return answer(200); })(testCall()),
      (err) => err instanceof MeshError && err.code === 'UNKNOWN_SERVICE' && err.service === 'payments.default');
    assert.equal(ran, false);
    assert.equal(seen.ends[0]![0].code, 'UNKNOWN_SERVICE');
  });

  it('ends the call when its answer is in or it fails: the concurrency slot released, the deadline cancelled, before telemetry hears of it', async () => {
    for (const fails of [false, true]) {
      const call = testCall({ deadlineMs: 60_000 });
      const limiter = call.state!.limiter;
      const heldAtEnd: number[] = [];
      const seen = observer();
      const outbound = seen.outbound;
      seen.outbound = (start) => ({ ...outbound(start), end: () => { heldAtEnd.push(limiter.inFlight); } });
      let deadline: unknown;
      const bottom = async () => {
        assert.equal(limiter.inFlight, 1, 'the slot is held while the call runs');
        deadline = call.deadline;
        if (fails) throw new MeshError('APP_RESET', 'reset', { service: call.service });
        return answer(200);
      };
      const run = compose([routeLayer({ resolver: resolver(true), observer: seen }), deadlineLayer, concurrencyLayer], bottom)(call);
      if (fails) await assert.rejects(run, { code: 'APP_RESET' }); else assert.equal((await run).status, 200);
      assert.deepEqual(heldAtEnd, [0], 'released before the call is observed as ended');
      assert.ok(deadline, 'the deadline layer set a deadline');
      assert.equal((deadline as { linked: boolean }).linked, false, 'its timer is cancelled');
      assert.equal(call.deadline, undefined);
      assert.equal(call.slot, undefined);
    }
  });
});
