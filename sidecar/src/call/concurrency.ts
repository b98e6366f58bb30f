// Concurrency: a call takes a slot of its service's limiter — at once, after a wait in its priority's
// lane (the wait counts against the deadline), or refused OVERLOADED — and holds it across its retries.
import type { Layer } from './call.ts';

export const concurrencyLayer: Layer = (next) => async (call) => {
  const release = await call.state!.limiter.acquire(call.signal, call.lane);
  try {
    return await next(call);
  } finally {
    release();
  }
};
