// What a delivery attempt's result means for the message: delivered, failed for good, or try again
// later (and when). Pure functions, shared by the sender (dispatcher.ts) and the receiver
// (inbound/dedup.ts), which must agree on which answers are final.
import { MeshError } from '../errors/mesh-error.ts';
import type { AsyncPolicy } from '../policy/types.ts';
import { jitteredBackoff } from '../resilience/backoff.ts';
import type { AttemptError } from './types.ts';

/** Statuses that say "not now" rather than "no": the message is delivered again later. */
const TRANSIENT_4XX = new Set([408, 425, 429]);

/** A final answer ends the message's delivery (2xx/3xx delivered, other 4xx failed); others are retried. */
export function isFinalAnswer(status: number): boolean {
  return status >= 200 && status < 500 && !TRANSIENT_4XX.has(status);
}

/** Mesh errors that no redelivery can cure. */
const PERMANENT_ERRORS = new Set(['SESSION_OWNER_GONE', 'SESSION_TOKEN_INVALID', 'BAD_REQUEST', 'BODY_TOO_LARGE']);

/**
 * Mesh errors that say the message never reached an app: nothing to send it to (no endpoint, circuit
 * open, overloaded, peer down or draining, the receiver's disk unusable). They delay the message but
 * do not use up its attempts — a breaker opened by other calls must not turn messages into dead
 * letters within milliseconds; `async.maxAge` still bounds how long it waits.
 */
const REFUSALS = new Set([
  'UNKNOWN_SERVICE', 'NO_HEALTHY_ENDPOINT', 'CIRCUIT_OPEN', 'OVERLOADED', 'PEER_UNAVAILABLE', 'SHUTTING_DOWN',
  'STORAGE_UNAVAILABLE', 'STORAGE_FULL',
]);

export type Outcome =
  | { kind: 'delivered' }
  | { kind: 'failed'; error: AttemptError }
  /** The app answered with a retryable status, or the outcome is unknown (the link broke, time ran out). */
  | { kind: 'retry'; error: AttemptError; retryAfterMs?: number }
  /** It never reached an app: try again later without counting an attempt. */
  | { kind: 'refused'; error: AttemptError };

export function outcomeOfStatus(status: number, retryAfter: string | undefined): Outcome {
  if (status >= 200 && status < 400) return { kind: 'delivered' };
  const error: AttemptError = { code: 'APP_STATUS', message: `the app answered ${status}`, status };
  if (isFinalAnswer(status)) return { kind: 'failed', error };
  const seconds = retryAfter !== undefined && /^[0-9]+$/.test(retryAfter.trim()) ? Number(retryAfter) : undefined;
  return { kind: 'retry', error, ...(seconds !== undefined ? { retryAfterMs: seconds * 1000 } : {}) };
}

export function outcomeOfError(err: unknown): Outcome {
  const meshError = err instanceof MeshError ? err : new MeshError('INTERNAL', err instanceof Error ? err.message : String(err));
  const error: AttemptError = { code: meshError.code, message: meshError.message };
  if (PERMANENT_ERRORS.has(meshError.code)) return { kind: 'failed', error };
  return REFUSALS.has(meshError.code) ? { kind: 'refused', error } : { kind: 'retry', error };
}

/**
 * After a failed try: dead, or the time (whole ms) of the next one. `attempts` counts the tries that
 * reached (or may have reached) the app; `failures` every failed try, refusals included, and sets the
 * back-off: full jitter up to base × 2^(failures−1), capped by the back-off max, and never less than
 * what the app's Retry-After asked for (itself capped by the max, so an app cannot park a message for
 * a year).
 */
export function nextAttempt(policy: AsyncPolicy, message: { attempts: number; failures: number; createdAt: number }, now: number, retryAfterMs = 0, random = Math.random):
  { dead: true; why: string } | { dead: false; at: number } {
  if (message.attempts >= policy.attempts) return { dead: true, why: `no delivery in ${message.attempts} attempts` };
  const wait = jitteredBackoff({ baseMs: policy.backoffBaseMs, maxMs: policy.backoffMaxMs }, message.failures, random, retryAfterMs);
  if (policy.maxAgeMs > 0 && now + wait - message.createdAt >= policy.maxAgeMs) {
    return { dead: true, why: `not delivered within its maximum age of ${policy.maxAgeMs} ms` };
  }
  return { dead: false, at: Math.ceil(now + wait) };
}
