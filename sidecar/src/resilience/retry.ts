// Retry decisions for one call: what an attempt's outcome means (which `retryOn` conditions it
// matches), whether the call may be tried again, how long to wait first, and a retry budget that
// keeps an outage from multiplying load. Pure functions plus one small counter; the pipeline owns the
// loop (see README.md in this folder).
import type { ErrorCode } from '../errors/codes.ts';
import { MeshError } from '../errors/mesh-error.ts';
import type { Header } from '../mcp/codec.ts';
import type { RetryBudgetPolicy, RetryCondition, RetryPolicy } from '../policy/types.ts';
import { jitteredBackoff } from './backoff.ts';
import { RollingCounters } from './window.ts';
import { CircuitOpenError } from './breaker.ts';

/** RFC 9110 §9.2.2: repeating these has the same effect as sending them once. */
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/** How one try ended: the mesh failed it, or an answer (status and headers) came back. */
export type AttemptOutcome =
  | {
    error: unknown;
    /** The error is the per-try timeout firing, not the call's overall deadline. */
    perTryTimeout?: boolean;
  }
  | { status: number; headers?: readonly Header[] };

// Conditions a mesh error matches. Envoy's `5xx` also covers "no answer at all" (connect failures,
// refused streams, resets), so every entry that is a failure to get an answer lists it too.
const ERROR_CONDITIONS: Partial<Record<ErrorCode, readonly RetryCondition[]>> = {
  PEER_UNAVAILABLE: ['connect-failure', '5xx'],
  // Secure naming refused the peer before anything was sent: like a failed connect, another endpoint may serve.
  PEER_IDENTITY_MISMATCH: ['connect-failure', '5xx'],
  // The called sidecar does not serve the service and ran nothing (HTTP 421: retry on another connection).
  MISDIRECTED: ['refused-stream', '5xx'],
  NO_HEALTHY_ENDPOINT: ['connect-failure', '5xx'],
  SHUTTING_DOWN: ['refused-stream', '5xx'],
  OVERLOADED: ['refused-stream', '5xx'],
  // The replica closed the session it had opened for this call before refusing it: nothing of it remains.
  SESSION_LIMIT: ['refused-stream', '5xx'],
  LINK_BROKEN: ['reset', '5xx'],
  APP_RESET: ['reset', '5xx'],
  APP_UNAVAILABLE: ['gateway-error', '5xx'],
};
const PER_TRY_TIMEOUT: readonly RetryCondition[] = ['gateway-error', '5xx'];
// A local breaker refusing one endpoint: the request never left, another endpoint may take it.
const ENDPOINT_CIRCUIT_OPEN: readonly RetryCondition[] = ['refused-stream'];
const NONE: readonly RetryCondition[] = [];

/**
 * Every `retryOn` condition the outcome matches. Never matched: a service's open circuit (Dapr's
 * lesson: an open breaker is final), the overall deadline, the caller going away, errors of the
 * sidecar itself, and anything that is not a MeshError.
 */
export function retryConditions(outcome: AttemptOutcome, statusCodes: readonly number[] = []): readonly RetryCondition[] {
  if ('status' in outcome) return statusConditions(outcome.status, statusCodes);
  const { error } = outcome;
  if (error instanceof CircuitOpenError) return error.scope === 'endpoint' ? ENDPOINT_CIRCUIT_OPEN : NONE;
  if (!(error instanceof MeshError)) return NONE;
  if (error.code === 'DEADLINE_EXCEEDED') return outcome.perTryTimeout ? PER_TRY_TIMEOUT : NONE;
  return ERROR_CONDITIONS[error.code] ?? NONE;
}

function statusConditions(status: number, statusCodes: readonly number[]): RetryCondition[] {
  const out: RetryCondition[] = [];
  if (status >= 500 && status <= 599) out.push('5xx');
  if (status === 502 || status === 503 || status === 504) out.push('gateway-error');
  if (status === 503) out.push('unavailable');
  if (status === 409) out.push('retriable-4xx');
  if (statusCodes.includes(status)) out.push('retriable-status-codes');
  return out;
}

/** The request provably never reached the app, so even a POST may be sent again. */
function neverReachedApp(conditions: readonly RetryCondition[]): boolean {
  return conditions.includes('connect-failure') || conditions.includes('refused-stream');
}

export interface RetryContext {
  method: string;
  /** Size of the request body, or 'stream' when it is streamed (never replayable). */
  bodyBytes: number | 'stream';
  /** Tries made so far, the one that just ended included (1 after the first try). */
  attempt: number;
  outcome: AttemptOutcome;
}

export type RetryDecision =
  | { retry: true; conditions: readonly RetryCondition[] }
  | { retry: false; reason: string };

/**
 * May the call be tried again after this outcome? Checks, in order: tries left, a listed condition,
 * a replayable body, and idempotency (skipped when the request never reached the app). The budget
 * is not consulted here: take a token from it only once this says yes, so it counts real retries.
 */
export function shouldRetry(policy: RetryPolicy, context: RetryContext): RetryDecision {
  if (context.attempt >= policy.attempts) return { retry: false, reason: `all ${policy.attempts} tries made` };
  const matched = retryConditions(context.outcome, policy.statusCodes);
  const listed = matched.filter((c) => policy.retryOn.includes(c));
  if (listed.length === 0) return { retry: false, reason: 'outcome is not retryable under retryOn' };
  if (context.bodyBytes === 'stream') return { retry: false, reason: 'a streamed body cannot be replayed' };
  if (context.bodyBytes > policy.maxReplayBodyBytes) {
    return { retry: false, reason: `body of ${context.bodyBytes} bytes exceeds maxReplayBodyBytes (${policy.maxReplayBodyBytes})` };
  }
  if (!neverReachedApp(matched) && !isIdempotent(context.method) && !policy.nonIdempotent) {
    return { retry: false, reason: `${context.method} is not idempotent and the request may have reached the app` };
  }
  return { retry: true, conditions: listed };
}

/**
 * Back-off before retry number `retryNumber` (1 for the first retry): the policy's full-jitter
 * exponential back-off (see backoff.ts).
 */
export function backoffDelay(policy: Pick<RetryPolicy, 'backoffBaseMs' | 'backoffMaxMs'>, retryNumber: number, random: () => number = Math.random): number {
  return jitteredBackoff({ baseMs: policy.backoffBaseMs, maxMs: policy.backoffMaxMs }, retryNumber, random);
}

const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * Milliseconds a `Retry-After` header asks for, from delta-seconds or an HTTP-date (RFC 9110
 * §10.2.3, all three date forms); undefined when absent or unreadable. A date in the past is 0.
 */
export function retryAfterMs(headers: readonly Header[] | undefined, now: number = Date.now()): number | undefined {
  const value = headers?.find((h) => h.name.toLowerCase() === 'retry-after')?.value.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // Only strings shaped like dates: Date.parse reads almost anything (even "1" is a year).
  if (!/[A-Za-z]/.test(value)) return undefined;
  // asctime carries no zone but is GMT; Date.parse would read it as local time.
  const at = Date.parse(ASCTIME.test(value) ? `${value} GMT` : value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The wait before retry number `retryNumber`: what a 503 or 429 answer's Retry-After asks for when
 * the policy honours it, the jittered back-off otherwise. The caller caps it by the deadline left
 * (and should not retry at all when the wait would pass the deadline).
 */
export function retryDelay(policy: RetryPolicy, retryNumber: number, outcome: AttemptOutcome, now: number = Date.now(), random: () => number = Math.random): number {
  if (policy.honorRetryAfter && 'status' in outcome && (outcome.status === 503 || outcome.status === 429)) {
    const asked = retryAfterMs(outcome.headers, now);
    if (asked !== undefined) return asked;
  }
  return backoffDelay(policy, retryNumber, random);
}

const BUDGET_BUCKETS = 10;
const CALLS = 0;
const RETRIES = 1;

/**
 * Linkerd-style retry budget for one service: over a sliding window, retries may be at most
 * `ratio` × calls plus `minPerSecond` × window seconds (the floor lets a quiet service still retry).
 * The window is kept in buckets that slide with the (injectable) clock; no timers.
 */
export class RetryBudget {
  readonly #policy: RetryBudgetPolicy;
  readonly #window: RollingCounters;

  constructor(policy: RetryBudgetPolicy, options: { now?: () => number } = {}) {
    this.#policy = policy;
    this.#window = new RollingCounters({ buckets: BUDGET_BUCKETS, bucketMs: policy.windowMs / BUDGET_BUCKETS, lanes: 2, ...options });
  }

  /** Count one original call (not a retry) towards the allowance. */
  recordCall(): void {
    this.#window.add(CALLS);
  }

  /** True, and the retry is counted, when the budget still allows one; false means do not retry. */
  tryAcquire(): boolean {
    const counts = this.#window.current();
    const allowed = this.#policy.ratio * this.#window.sum(CALLS) + this.#policy.minPerSecond * (this.#policy.windowMs / 1000);
    if (this.#window.sum(RETRIES) + 1 > allowed) return false;
    counts[RETRIES]!++;
    return true;
  }

  /** Calls and retries in the current window (for /endpoints and metrics). */
  snapshot(): { calls: number; retries: number } {
    return { calls: this.#window.sum(CALLS), retries: this.#window.sum(RETRIES) };
  }
}
