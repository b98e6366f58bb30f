// Retry: after a try, decide whether to try again — an outcome the policy lists, a request that may be
// replayed, time left before the deadline for the back-off, a token from the service's retry budget —
// then wait the back-off and go again. The only place a call is retried (the called sidecar never
// retries). The answer carries the number of tries (mcp-mesh-attempts); a final error carries it too.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { MeshError } from '../errors/mesh-error.ts';
import { ATTEMPTS_HEADER } from '../errors/respond.ts';
import { retryDelay, shouldRetry, type AttemptOutcome, type RetryDecision } from '../resilience/retry.ts';
import type { Call, Layer } from './call.ts';
import { PerTryTimeout } from './link-transport.ts';
import type { CallResult } from './pipeline.ts';

/** Whether to try `call` again after `outcome` (the try number `attempt` just ended). */
export type RetryRule = (call: Call, outcome: AttemptOutcome, attempt: number) => RetryDecision;

export interface RetryLayerOptions {
  logger: Logger;
  /** The rule; by default the call's policy (`retries`: attempts, retryOn, idempotency, replayable body). */
  rule?: RetryRule;
  /** Tell the app how many tries were made (mcp-mesh-attempts on the answer); on by default. */
  answerAttempts?: boolean;
}

/** The policy's rule (resilience/retry.ts shouldRetry). */
const policyRule: RetryRule = (call, outcome, attempt) => shouldRetry(call.policy.retries, {
  method: call.request.method, bodyBytes: bodyBytesOf(call), attempt, outcome,
});

function bodyBytesOf(call: Call): number | 'stream' {
  const body = call.request.body;
  return body.kind === 'stream' ? 'stream' : body.kind === 'inline' ? body.bytes.byteLength : 0;
}

/** An answer no rule of resilience/retry.ts would retry: not a 5xx or 409, nor a listed status (most answers). */
function plainAnswer(call: Call, status: number): boolean {
  return status < 500 && status !== 409 && !call.policy.retries.statusCodes.includes(status);
}

export function retryLayer(options: RetryLayerOptions): Layer {
  const { logger } = options;
  const rule = options.rule ?? policyRule;
  const answerAttempts = options.answerAttempts ?? true;
  return (next) => async (call) => {
    const retries = call.policy.retries;
    call.budget?.recordCall();
    for (let attempt = 1; ; attempt++) {
      call.attempt = attempt;
      let outcome: AttemptOutcome;
      let result: CallResult | undefined;
      try {
        result = await next(call);
        if (attempt >= retries.attempts || plainAnswer(call, result.status)) return answered(result, attempt, answerAttempts);
        outcome = { status: result.status, headers: result.headers };
      } catch (err) {
        // The deadline passed or the app left: the call ends with the reason its signal was aborted with.
        if (call.signal.aborted) throw withAttempts(call.signal.reason, attempt);
        outcome = { error: err, perTryTimeout: err instanceof PerTryTimeout };
      }
      const decision = rule(call, outcome, attempt);
      const delay = decision.retry ? retryDelay(retries, attempt, outcome) : 0;
      const retry = decision.retry && performance.now() + delay < call.deadlineAt && (call.budget?.tryAcquire() ?? true);
      if (!retry) {
        if (result) return answered(result, attempt, answerAttempts);
        throw withAttempts((outcome as { error: unknown }).error, attempt);
      }
      if (result && !Buffer.isBuffer(result.body)) result.body.destroy(); // the answer we will not use
      logger.debug({ target: call.service, attempt, conditions: decision.conditions, delayMs: Math.round(delay) }, 'retrying');
      if (delay > 0) {
        try {
          await sleep(delay, undefined, { signal: call.signal });
        } catch {
          throw withAttempts(call.signal.reason, attempt);
        }
      }
    }
  };
}

function answered(result: CallResult, attempt: number, answerAttempts: boolean): CallResult {
  if (answerAttempts) result.headers.push({ name: ATTEMPTS_HEADER, value: String(attempt) }); // the answer's own list, made for this try
  return result;
}

/** The final error of a call, told how many tries were made (set once, here). */
function withAttempts(err: unknown, attempts: number): unknown {
  if (err instanceof MeshError) err.attempts = attempts;
  return err;
}
