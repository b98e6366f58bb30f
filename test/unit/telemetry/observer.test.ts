import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { combine, NO_OBSERVER, type CallObserver, type OutboundStart, type InboundStart } from '../../../sidecar/src/telemetry/observer.ts';

/** An observer that writes down what it is told, and optionally plays the tracer. */
function recorder(name: string, events: string[], tracer = false): CallObserver & { starts: (OutboundStart | InboundStart)[] } {
  const starts: (OutboundStart | InboundStart)[] = [];
  const ids = tracer ? { traceId: 't'.repeat(32), spanId: 's'.repeat(16) } : undefined;
  return {
    starts,
    outbound(start) {
      starts.push(start);
      return {
        ids,
        route: (route) => events.push(`${name} route ${route}`),
        affinity: (decision) => events.push(`${name} affinity ${decision}`),
        attempt: (n, endpoint) => ({
          trace: tracer ? { traceparent: `00-${'t'.repeat(32)}-${String(n).padStart(16, '0')}-01` } : undefined,
          end: (outcome) => events.push(`${name} attempt ${n} ${endpoint} ${outcome.status}`),
        }),
        end: (outcome, attempts) => events.push(`${name} end ${outcome.status} ${outcome.code ?? ''} ${attempts}`),
      };
    },
    inbound(start) {
      starts.push(start);
      return {
        ids,
        appCall: () => ({ headers: tracer ? [{ name: 'traceparent', value: 'x' }] : [], end: (o) => events.push(`${name} app ${o.status}`) }),
        end: (o) => events.push(`${name} inbound ${o.status}`),
      };
    },
  };
}

const start: OutboundStart = { service: 'payments.default', method: 'GET', path: '/x', headers: [], kind: 'call' };

describe('combine', () => {
  it('an attempt counts batch sizes only when one of the observers does (otherwise the link skips the call)', () => {
    const events: string[] = [];
    const plain = combine([recorder('a', events), recorder('b', events)]);
    assert.equal(plain.outbound(start).attempt(1, 'e1', 'closed').batched, undefined);
    const counting: CallObserver = {
      outbound: () => ({ route() {}, affinity() {}, end() {}, attempt: () => ({ trace: undefined, end() {}, batched: (n: number) => events.push(`batch ${n}`) }) }),
      inbound: NO_OBSERVER.inbound,
    };
    const attempt = combine([recorder('a', events), counting]).outbound(start).attempt(1, 'e1', 'closed');
    attempt.batched?.(7);
    assert.deepEqual(events.filter((e) => e.startsWith('batch')), ['batch 7']);
  });

  it('reports every event to every observer, in order', () => {
    const events: string[] = [];
    const observer = combine([recorder('a', events), NO_OBSERVER, recorder('b', events)]);
    const call = observer.outbound(start);
    call.route('charges');
    const attempt = call.attempt(1, '10.0.0.1:15002', 'closed');
    attempt.end({ status: 503 });
    call.end({ status: 503, code: 'NO_HEALTHY_ENDPOINT' }, 1);
    assert.deepEqual(events, [
      'a route charges', 'b route charges', 'a attempt 1 10.0.0.1:15002 503', 'b attempt 1 10.0.0.1:15002 503',
      'a end 503 NO_HEALTHY_ENDPOINT 1', 'b end 503 NO_HEALTHY_ENDPOINT 1',
    ]);
  });

  it('hands the tracer\'s ids to the observers after it, and takes its trace context for the envelope', () => {
    const events: string[] = [];
    const tracer = recorder('tracer', events, true);
    const log = recorder('log', events);
    const observer = combine([tracer, log]);
    const call = observer.outbound(start);
    assert.equal(tracer.starts[0]!.ids, undefined);
    assert.deepEqual(log.starts[0]!.ids, { traceId: 't'.repeat(32), spanId: 's'.repeat(16) });
    assert.deepEqual(call.ids, log.starts[0]!.ids);
    assert.match(call.attempt(2, 'e', 'closed').trace!.traceparent!, /-0000000000000002-01$/);
    const inbound = observer.inbound({ service: 's', source: 'c', method: 'GET', path: '/', headers: [], trace: undefined, messageId: undefined });
    assert.deepEqual(inbound.appCall().headers, [{ name: 'traceparent', value: 'x' }]);
  });

  it('with nothing to observe is the no-op observer itself', () => {
    assert.equal(combine([NO_OBSERVER, NO_OBSERVER]), NO_OBSERVER);
    const only = recorder('a', []);
    assert.equal(combine([only]), only);
  });
});
