// Endpoint breaker: a try for an endpoint whose own breaker is open is refused at once (CIRCUIT_OPEN
// for that endpoint only: the retry layer may try another); the try's outcome counts toward it. The
// try's telemetry opens here, with the breaker's state, and closes with the try.
import type { BreakerRegistry } from '../resilience/breaker.ts';
import { throughBreaker } from './breaker-run.ts';
import type { Layer } from './call.ts';
import { outcomeOf } from './route.ts';

export function endpointBreakerLayer(breakers: BreakerRegistry): Layer {
  return (next) => async (call) => {
    const address = call.link!.address;
    const breaker = breakers.endpoint(call.service, address, call.policy.circuitBreaker);
    const observed = call.tryObserved = call.observed.attempt(call.attempt, address, breaker.state);
    try {
      const result = await throughBreaker(breaker, call, next);
      observed.end({ status: result.status });
      return result;
    } catch (err) {
      observed.end(outcomeOf(err));
      throw err;
    }
  };
}
