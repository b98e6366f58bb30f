// Deadline: the call's one deadline, worked out once — the policy's, or a shorter one the app asked
// for — above everything that waits (a concurrency slot, tries, back-off); when it passes, the call's
// signal aborts with DEADLINE_EXCEEDED naming the service, and whatever was waiting ends with it.
// Its timer is cancelled when the call ends (Call.end, from the route layer).
import { MeshError } from '../errors/mesh-error.ts';
import { deadlines } from '../resilience/deadline-timers.ts';
import type { Layer } from './call.ts';

/** Node timers fire at once beyond this (about 24.8 days). */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * The overall deadline in ms (0: none): the policy's, or a shorter one the app asked for
 * (`mcp-mesh-timeout`). An app may shorten its deadline but not lengthen or remove the policy's.
 */
export function deadlineOf(askedMs: number | undefined, policyMs: number): number {
  const asked = askedMs !== undefined && askedMs > 0 ? askedMs : undefined;
  const deadline = policyMs > 0 ? Math.min(asked ?? policyMs, policyMs) : (asked ?? 0);
  return Math.min(deadline, LONGEST_TIMER_MS);
}

export const deadlineLayer: Layer = (next) => (call) => {
  const ms = deadlineOf(call.request.deadlineMs, call.policy.timeouts.overallMs);
  if (ms === 0) return next(call);
  call.deadlineAt = performance.now() + ms;
  const cancel = call.request.cancel;
  call.deadline = deadlines.start(ms, () => cancel.abort(new MeshError('DEADLINE_EXCEEDED', `no answer from ${call.service} within ${ms} ms`, { service: call.service })));
  return next(call);
};
