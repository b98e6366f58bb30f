// Calls and settings for testing one layer of the call stack (sidecar/src/call/) with a fake `next`.
import { Call } from '../../../sidecar/src/call/call.ts';
import type { CallResult, OutboundCall } from '../../../sidecar/src/call/pipeline.ts';
import { ServiceStates } from '../../../sidecar/src/call/service-state.ts';
import type { EffectivePolicy } from '../../../sidecar/src/policy/types.ts';
import { compileValid } from '../../helpers/policies.ts';

/** The built-in default policy, with `change` applied on top. */
export function settings(change: (policy: EffectivePolicy) => Partial<EffectivePolicy> = () => ({})): EffectivePolicy {
  const defaults = compileValid([]).defaults;
  return { ...defaults, ...change(defaults) };
}

/** A call for `payments.default` as an edge makes it, with the fields the layers above would have set. */
export function testCall(request: Partial<OutboundCall> = {}, policy: EffectivePolicy = settings()): Call {
  const call = new Call({
    target: { service: 'payments', namespace: 'default' }, method: 'GET', path: '/charge', authority: 'payments',
    headers: [], body: { kind: 'none' }, expectStream: false, deadlineMs: undefined, cancel: new AbortController(), ...request,
  });
  call.service = 'payments.default';
  call.policy = policy;
  call.state = new ServiceStates().get(call.service, policy);
  return call;
}

export function answer(status: number, endpoint = '10.0.0.1:15002'): CallResult {
  return { status, headers: [], body: Buffer.from(`status ${status}`), endpoint };
}

/** Resolves with the reason once `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
}
