// A try through a circuit breaker, counted only when it says something about the service or endpoint:
// a try cut short by the call's deadline or by the app leaving is not its failure (an app's own tight
// deadline would otherwise open breakers on healthy replicas). Used by both breaker layers.
import { failureStatuses, type Breaker, type TryCounting } from '../resilience/breaker.ts';
import type { CircuitBreakerPolicy } from '../policy/types.ts';
import type { Call, Handler } from './call.ts';
import type { CallResult } from './pipeline.ts';

const endedByCaller = (_err: unknown, call: Call): boolean => call.signal.aborted;

/** Made once per (frozen) policy object: every try under it is judged by the same two tests. */
const countings = new WeakMap<CircuitBreakerPolicy, TryCounting<Call, CallResult>>();

function countingOf(policy: CircuitBreakerPolicy): TryCounting<Call, CallResult> {
  let counting = countings.get(policy);
  if (!counting) countings.set(policy, counting = { isFailure: failureStatuses(policy), notCounted: endedByCaller });
  return counting;
}

export function throughBreaker(breaker: Breaker, call: Call, next: Handler): Promise<CallResult> {
  if (!breaker.policy.enabled) return next(call); // a pass-through: nothing to count
  return breaker.runWith(next, call, countingOf(breaker.policy));
}
