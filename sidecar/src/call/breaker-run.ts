// A try through a circuit breaker, counted only when it says something about the service or endpoint:
// a try cut short by the call's deadline or by the app leaving is not its failure (an app's own tight
// deadline would otherwise open breakers on healthy replicas). Used by both breaker layers.
import { failureStatuses, type Breaker } from '../resilience/breaker.ts';
import type { Call, Handler } from './call.ts';
import type { CallResult } from './pipeline.ts';

/** Carries an error through the breaker as "not a failure" (not a MeshError), and back out unchanged. */
class EndedByCaller {
  readonly error: unknown;
  constructor(error: unknown) { this.error = error; }
}

export function throughBreaker(breaker: Breaker, call: Call, next: Handler): Promise<CallResult> {
  if (!breaker.policy.enabled) return next(call); // a pass-through: nothing to count
  return breaker.run(() => next(call).catch((err: unknown) => {
    throw call.signal.aborted ? new EndedByCaller(err) : err;
  }), failureStatuses(breaker.policy)).catch(unwrap);
}

function unwrap(err: unknown): never {
  throw err instanceof EndedByCaller ? err.error : err;
}
