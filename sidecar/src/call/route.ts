// Route: the service a call is for and its endpoints from discovery (UNKNOWN_SERVICE if none), and
// the call's telemetry from its start to its answer or error.
import type { Resolver } from '../discovery/resolver.ts';
import { MeshError } from '../errors/mesh-error.ts';
import type { CallObserver, Outcome } from '../telemetry/observer.ts';
import type { Call, Handler, Layer } from './call.ts';
import type { CallResult } from './pipeline.ts';

export function routeLayer(options: { resolver: Resolver; observer: CallObserver }): Layer {
  const { resolver, observer } = options;
  // Not async itself: the one frame that waits for the answer is observeToEnd's.
  return (next) => (call) => {
    const { request } = call;
    const { target } = request;
    const service = call.service = `${target.service}.${target.namespace}`;
    const observed = call.observed = observer.outbound({
      service, method: request.method, path: request.path, headers: request.headers,
      kind: request.delivery ? 'delivery' : request.batched ? 'batch' : 'call', messageId: request.delivery?.messageId,
    });
    const endpoints = resolver.endpoints(target.service, target.namespace);
    if (!endpoints) {
      const unknown = new MeshError('UNKNOWN_SERVICE', `no service "${target.service}" in namespace "${target.namespace}" is known to discovery`, { service });
      observed.end(outcomeOf(unknown), 0);
      return Promise.reject(unknown);
    }
    call.endpoints = endpoints;
    return observeToEnd(call, next);
  };
}

/**
 * Run the rest of the call, end it (its deadline and concurrency slot, Call.end), then tell its
 * telemetry how it ended and after how many tries.
 */
export async function observeToEnd(call: Call, next: Handler): Promise<CallResult> {
  const observed = call.observed;
  try {
    const result = await next(call);
    call.end();
    observed.end({ status: result.status }, call.attempt);
    return result;
  } catch (err) {
    call.end();
    observed.end(outcomeOf(err), call.attempt);
    throw err;
  }
}

/** What telemetry records of a failed call or try. */
export function outcomeOf(err: unknown): Outcome {
  return err instanceof MeshError ? { status: err.status, code: err.code, message: err.message } : { status: 500, code: 'INTERNAL', message: String(err) };
}
