// Transport: one try on the link the balancer chose (mcp/ decides inline, Stream call or body pull),
// under the per-try timeout when one is set and shorter than the time left; the peer is told the time
// the try has. The bottom of the mesh stack.
import { MeshError } from '../errors/mesh-error.ts';
import { deadlines } from '../resilience/deadline-timers.ts';
import type { Call, Handler } from './call.ts';
import type { CallResult } from './pipeline.ts';

/** A try that ran out of its per-try time (the overall deadline may still have room). */
export class PerTryTimeout extends MeshError {
  constructor(service: string, ms: number) {
    super('DEADLINE_EXCEEDED', `no answer from ${service} within the per-try timeout of ${ms} ms`, { service });
  }
}

export const linkTransport: Handler = (call) => {
  const perTryMs = call.policy.timeouts.perTryMs;
  const remaining = call.deadlineAt - performance.now();
  const budgetMs = Math.max(1, Math.ceil(Math.min(perTryMs > 0 ? perTryMs : Infinity, remaining)));
  call.budgetMs = Number.isFinite(budgetMs) ? budgetMs : 0;
  // Without a per-try timeout that can fire first, the try runs on the call's own signal: no controller.
  if (!(perTryMs > 0 && perTryMs < remaining)) return call.link!.send(call);
  return sendWithin(call, perTryMs);
};

/** The try's own signal: the call's, or the per-try timeout, whichever comes first. */
async function sendWithin(call: Call, perTryMs: number): Promise<CallResult> {
  const callSignal = call.signal;
  const tryController = new AbortController();
  const onAbort = () => tryController.abort(callSignal.reason);
  callSignal.addEventListener('abort', onAbort, { once: true });
  const timer = deadlines.start(perTryMs, () => tryController.abort(new PerTryTimeout(call.service, perTryMs)));
  call.trySignal = tryController.signal;
  try {
    return await call.link!.send(call);
  } finally {
    timer.cancel();
    callSignal.removeEventListener('abort', onAbort);
    call.trySignal = callSignal;
  }
}
