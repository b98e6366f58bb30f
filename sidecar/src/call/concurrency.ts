// Concurrency: a call takes a slot of its service's limiter — at once, after a wait in its priority's
// lane (the wait counts against the deadline), or refused OVERLOADED — and holds it across its retries.
import type { Layer } from './call.ts';

// The slot is released when the call ends (Call.end, from the route layer), not here: a free slot
// (nearly always) is taken without a promise, and the layer waits for nothing.
export const concurrencyLayer: Layer = (next) => (call) => {
  const limiter = call.state!.limiter;
  const slot = call.signal.aborted ? undefined : limiter.tryAcquire();
  if (slot) {
    call.slot = slot;
    return next(call);
  }
  return limiter.acquire(call.signal, call.lane).then((release) => {
    call.slot = release;
    return next(call);
  });
};
