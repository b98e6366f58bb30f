// The service and endpoint breaker layers with a fake `next`: failures open a breaker, an open one
// refuses without calling `next`, and tries ended by the call's own deadline or caller never count.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { endpointBreakerLayer } from '../../../sidecar/src/call/endpoint-breaker.ts';
import { serviceBreakerLayer } from '../../../sidecar/src/call/service-breaker.ts';
import type { PeerLink } from '../../../sidecar/src/mcp/link.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { BreakerRegistry } from '../../../sidecar/src/resilience/breaker.ts';
import type { AttemptObservation, OutboundObservation } from '../../../sidecar/src/telemetry/observer.ts';
import { answer, settings, testCall } from './fixtures.ts';

const tripsFast = settings((p) => ({ circuitBreaker: { ...p.circuitBreaker, enabled: true, volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 } }));
const failing = async () => { throw new MeshError('LINK_BROKEN', 'broke', { service: 'payments.default' }); };

describe('service breaker layer', () => {
  it('opens after failures and then refuses at once, without a try', async () => {
    const breakers = new BreakerRegistry();
    try {
      const layer = serviceBreakerLayer(breakers)(failing);
      for (let i = 0; i < 2; i++) await assert.rejects(layer(testCall({}, tripsFast)), { code: 'LINK_BROKEN' });
      let tried = false;
      const refused = serviceBreakerLayer(breakers)(async () => { tried = true; return answer(200); });
      await assert.rejects(refused(testCall({}, tripsFast)), { code: 'CIRCUIT_OPEN', service: 'payments.default' });
      assert.equal(tried, false);
    } finally {
      breakers.close();
    }
  });

  it('does not count tries the call\'s deadline or caller cut short, and passes their error on unchanged', async () => {
    const breakers = new BreakerRegistry();
    try {
      const reason = new MeshError('DEADLINE_EXCEEDED', 'time is up', { service: 'payments.default' });
      for (let i = 0; i < 5; i++) {
        const call = testCall({}, tripsFast);
        const cutShort = async () => {
          call.request.cancel.abort(reason);
          throw reason;
        };
        await assert.rejects(serviceBreakerLayer(breakers)(cutShort)(call), (err) => err === reason);
      }
      assert.equal(breakers.service('payments.default', tripsFast.circuitBreaker).state, 'closed');
    } finally {
      breakers.close();
    }
  });
});

describe('endpoint breaker layer', () => {
  it('opens the try\'s telemetry with the endpoint breaker\'s state and ends it with the outcome', async () => {
    const breakers = new BreakerRegistry();
    try {
      const seen: { attempt: number; endpoint: string; breaker: string; outcome?: unknown }[] = [];
      const opened: AttemptObservation[] = [];
      const call = testCall({}, tripsFast);
      call.attempt = 2;
      call.link = { address: '10.0.0.7:15002' } as PeerLink;
      call.observed = {
        route() {}, affinity() {}, end() {},
        attempt: (attempt, endpoint, breaker): AttemptObservation => {
          const entry: (typeof seen)[number] = { attempt, endpoint, breaker };
          seen.push(entry);
          const observation: AttemptObservation = { trace: undefined, end: (outcome) => { entry.outcome = outcome; } };
          opened.push(observation);
          return observation;
        },
      } satisfies OutboundObservation;
      await assert.rejects(endpointBreakerLayer(breakers)(failing)(call), { code: 'LINK_BROKEN' });
      assert.deepEqual(seen, [{ attempt: 2, endpoint: '10.0.0.7:15002', breaker: 'closed', outcome: { status: 502, code: 'LINK_BROKEN', message: 'broke' } }]);
      assert.equal(call.tryObserved, opened[0], 'the try\'s telemetry is on the call, for the transport (trace, batch size)');
    } finally {
      breakers.close();
    }
  });
});
