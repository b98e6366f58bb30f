// Request logs: a CallObserver that writes one JSON line per call when the call ends (docs/logging.md).
//
//   answers (any status the app gave, 5xx too) and CLIENT_CLOSED  → debug
//   a mesh error (PEER_UNAVAILABLE, DEADLINE_EXCEEDED, …)           → warn, with its `code`
//   INTERNAL (a fault inside the sidecar)                           → error
//
// The level is read from the logger when the call ends, once (`isLevelEnabled`), so a change of
// `logger.level` at run time (the admin API's PUT /logging) applies to the next call; below the
// line's level nothing is built. That is why this takes the root logger and not a child: a child
// keeps the level it was made with.
//
// No headers are ever printed (they carry Authorization and cookies), and the path is printed
// without its query string (query strings carry tokens and API keys too).
import type { Logger } from 'pino';
import { ERROR_CODES, isErrorCode, type ErrorCode } from '../errors/codes.ts';
import type {
  AppCallObservation, AttemptObservation, CallObserver, InboundObservation, InboundStart, OutboundObservation, OutboundStart, Outcome,
} from './observer.ts';
import { QUIET_APP_CALL, QUIET_ATTEMPT } from './observer.ts';

export type RequestLogLevel = 'debug' | 'warn' | 'error';

/**
 * The level of a call's line, by the mesh error code of its outcome: an answer of the app (any
 * status, no code) is not a failure of the mesh; the caller going away (CLIENT_CLOSED) is not one
 * either; INTERNAL is a fault of this sidecar; any other code is a failure the mesh made the answer for.
 */
export function levelOf(code: string | undefined): RequestLogLevel {
  if (code === undefined || code === 'CLIENT_CLOSED') return 'debug';
  return code === 'INTERNAL' ? 'error' : 'warn';
}

/** The outcome's code: a mesh error code, as the observer's Outcome says (its type keeps it a string). */
function meshCode(outcome: Outcome): ErrorCode | undefined {
  return outcome.code as ErrorCode | undefined;
}

/** The path without its query string (or fragment): `/orders?token=…` → `/orders`. */
export function pathOnly(path: string): string {
  const end = path.search(/[?#]/);
  return end === -1 ? path : path.slice(0, end);
}

export function createRequestLog(logger: Logger): CallObserver {
  return {
    outbound: (start) => new OutboundLine(logger, start),
    inbound: (start) => new InboundLine(logger, start),
  };
}


/** Milliseconds since `started`, to a tenth. */
function since(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

function message(direction: 'outbound' | 'inbound', outcome: Outcome): string {
  const code = outcome.code;
  if (code === undefined) return `${direction} call`;
  if (code === 'CLIENT_CLOSED') return `${direction} call cancelled: the caller went away (CLIENT_CLOSED)`;
  const why = outcome.message ?? (isErrorCode(code) ? ERROR_CODES[code].summary : undefined);
  return `${direction} call failed: ${code}${why ? `: ${why}` : ''}`;
}

/** One call of the local app (or batch entry, or durable delivery) to a service. */
class OutboundLine implements OutboundObservation {
  readonly #logger: Logger;
  readonly #start: OutboundStart;
  readonly #started = performance.now();
  #route: string | undefined;
  #affinity: 'pinned' | 'bound' | undefined;

  constructor(logger: Logger, start: OutboundStart) {
    this.#logger = logger;
    this.#start = start;
  }

  route(route: string): void {
    this.#route = route;
  }

  affinity(decision: 'pinned' | 'bound'): void {
    this.#affinity = decision;
  }

  attempt(): AttemptObservation {
    return QUIET_ATTEMPT;
  }

  end(outcome: Outcome, attempts: number): void {
    const level = levelOf(outcome.code);
    if (!this.#logger.isLevelEnabled(level)) return;
    const start = this.#start;
    // `target`, not `service`: `service` is this sidecar's own (a base field of every line).
    this.#logger[level]({
      direction: 'outbound',
      kind: start.kind,
      target: start.service,
      route: this.#route,
      method: start.method,
      path: pathOnly(start.path),
      status: outcome.status,
      code: meshCode(outcome),
      attempts,
      durationMs: since(this.#started),
      affinity: this.#affinity,
      trace_id: start.ids?.traceId,
      span_id: start.ids?.spanId,
      ...(start.messageId ? { messageId: start.messageId } : {}),
      ...(start.egress ? { egress: start.egress } : {}),
    }, message('outbound', outcome));
  }
}

/** One call from a peer sidecar, handed to the local app. */
class InboundLine implements InboundObservation {
  readonly #logger: Logger;
  readonly #start: InboundStart;
  readonly #started = performance.now();

  constructor(logger: Logger, start: InboundStart) {
    this.#logger = logger;
    this.#start = start;
  }

  appCall(): AppCallObservation {
    return QUIET_APP_CALL;
  }

  end(outcome: Outcome): void {
    const level = levelOf(outcome.code);
    if (!this.#logger.isLevelEnabled(level)) return;
    const start = this.#start;
    this.#logger[level]({
      direction: 'inbound',
      kind: start.messageId === undefined ? 'call' : 'delivery',
      source: start.source,
      method: start.method,
      path: pathOnly(start.path),
      status: outcome.status,
      code: meshCode(outcome),
      durationMs: since(this.#started),
      messageId: start.messageId,
      trace_id: start.ids?.traceId,
      span_id: start.ids?.spanId,
    }, message('inbound', outcome));
  }
}
