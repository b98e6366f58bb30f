// Service breaker: a call to a service whose breaker is open is refused at once (CIRCUIT_OPEN, final:
// never retried); every try's outcome counts toward the service's breaker.
import type { BreakerRegistry } from '../resilience/breaker.ts';
import { throughBreaker } from './breaker-run.ts';
import type { Layer } from './call.ts';

export function serviceBreakerLayer(breakers: BreakerRegistry): Layer {
  return (next) => (call) => throughBreaker(breakers.service(call.service, call.policy.circuitBreaker), call, next);
}
