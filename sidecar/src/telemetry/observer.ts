// The one seam between the data path and telemetry. The call pipeline, the inbound handler and the
// app forwarder report what happens to each call through these handles; tracing (tracing.ts),
// metrics (call-metrics.ts) and request logs (request-log.ts) each implement them, and `combine`
// fans a call out to all three. The data path never imports OpenTelemetry or Prometheus itself.
//
//   calling sidecar:  outbound(call) ─┬─ attempt(1, endpoint) ─ end   (one per try: retries show)
//                                     ├─ attempt(2, endpoint) ─ end
//                                     └─ end(outcome)
//   called sidecar:   inbound(request) ── appCall() ── end  (the local app)
//                                     └─ end(outcome)
import type { Header, TraceContext } from '../mcp/codec.ts';

/** How a call, a try or an app call ended: the HTTP status it produced, or the mesh error code. */
export interface Outcome {
  status: number;
  /** A mesh error code (mcp-mesh-error) when the mesh, not the app, made the answer. */
  code?: string;
  /** The mesh error's own words, for the log line. */
  message?: string;
}

/** The ids of the span that covers a call on this sidecar, for logs. */
export interface TraceIds {
  traceId: string;
  spanId: string;
}

export interface OutboundStart {
  /** The called service, "name.namespace". */
  service: string;
  method: string;
  path: string;
  /** The request headers as the app sent them (traceparent, tracestate). */
  headers: readonly Header[];
  /** How the call came in: an app's call, an entry of a batch, or a delivery of a durable message. */
  kind: 'call' | 'batch' | 'delivery';
  /** The durable message a delivery carries. */
  messageId?: string;
  /** Set by `combine` for the observers after the tracer: the call's trace and span ids. */
  ids?: TraceIds;
  /** A call to a host outside the mesh: the host and the address dialled, or refused and why. */
  egress?: EgressTarget;
}

export interface EgressTarget {
  /** The host as the app named it. */
  host: string;
  /** The address dialled (or the one refused); unset when the name did not resolve. */
  address?: string;
  /** Why the call was refused: the address class (loopback, metadata, private…) or `unresolved`. */
  refused?: string;
}

export interface OutboundObservation {
  /** The call's trace and span ids, when this observer traces it. */
  readonly ids?: TraceIds;
  /** The route the policy matched (bounded label set: route names come from policies). */
  route(route: string): void;
  /** MCP session affinity: the call was pinned to its session's owner, or bound a new session. */
  affinity(decision: 'pinned' | 'bound'): void;
  /** A try begins on `endpoint`; `breaker` is the endpoint breaker's state. */
  attempt(attempt: number, endpoint: string, breaker: string): AttemptObservation;
  /** The call's answer (head) is back, or it failed; `attempts` tries were made. */
  end(outcome: Outcome, attempts: number): void;
}

export interface AttemptObservation {
  /**
   * The trace context the peer should continue (carried in the envelope), or undefined when this
   * try is not traced. Also what replaces `traceparent`/`tracestate` in the forwarded headers.
   */
  readonly trace: TraceContext | undefined;
  /** The try left on the link in a batch of this many envelopes (not told for Stream calls). */
  batched?(size: number): void;
  end(outcome: Outcome): void;
}

export interface InboundStart {
  /** This sidecar's service, "name.namespace" (the called one). */
  service: string;
  /** The calling service, "name.namespace". */
  source: string;
  method: string;
  path: string;
  headers: readonly Header[];
  /** The trace context the caller put in the envelope. */
  trace: TraceContext | undefined;
  /** Set when the request delivers a durable message. */
  messageId: string | undefined;
  /** Set by `combine` for the observers after the tracer. */
  ids?: TraceIds;
}

export interface InboundObservation {
  readonly ids?: TraceIds;
  /** The call to the local app begins; `headers` to add to it (traceparent, tracestate), if any. */
  appCall(): AppCallObservation;
  end(outcome: Outcome): void;
}

export interface AppCallObservation {
  readonly headers: readonly Header[];
  end(outcome: Outcome): void;
}

export interface CallObserver {
  outbound(start: OutboundStart): OutboundObservation;
  inbound(start: InboundStart): InboundObservation;
}

// ---- nothing observed ----

/** Shared by the observers for what they do not observe: nothing per call is allocated for it. */
export const NO_HEADERS: readonly Header[] = [];
export const QUIET_ATTEMPT: AttemptObservation = { trace: undefined, end() {} };
export const QUIET_APP_CALL: AppCallObservation = { headers: NO_HEADERS, end() {} };
const quietOutbound: OutboundObservation = { route() {}, affinity() {}, attempt: () => QUIET_ATTEMPT, end() {} };
const quietInbound: InboundObservation = { appCall: () => QUIET_APP_CALL, end() {} };

/** Observes nothing and allocates nothing: the default, and what tests use. */
export const NO_OBSERVER: CallObserver = { outbound: () => quietOutbound, inbound: () => quietInbound };

// ---- several at once ----

/**
 * One observer that reports to all of `observers` (tracing first, then metrics, then logs). The
 * trace and span ids the first of them gives a call are handed to the ones after it (`ids`), so a
 * request log line carries the ids of the call's span. Per call it allocates one array and one
 * object per observation (classes, not closures: this runs on every call).
 */
export function combine(observers: readonly CallObserver[]): CallObserver {
  const active = observers.filter((o) => o !== NO_OBSERVER);
  if (active.length === 0) return NO_OBSERVER;
  if (active.length === 1) return active[0]!;
  return {
    outbound: (start) => {
      const { all, ids } = startAll(active, start, (o, s) => o.outbound(s));
      return new CombinedOutbound(all, ids);
    },
    inbound: (start) => {
      const { all, ids } = startAll(active, start, (o, s) => o.inbound(s));
      return new CombinedInbound(all, ids);
    },
  };
}

/** Start one observation per observer; the first ids given are handed to the observers after it. */
function startAll<S extends { ids?: TraceIds }, O extends { ids?: TraceIds }>(
  observers: readonly CallObserver[], start: S, begin: (observer: CallObserver, start: S) => O,
): { all: O[]; ids: TraceIds | undefined } {
  const all = new Array<O>(observers.length);
  let current = start;
  for (let i = 0; i < observers.length; i++) {
    const observation = all[i] = begin(observers[i]!, current);
    if (observation.ids && !current.ids) current = { ...current, ids: observation.ids };
  }
  return { all, ids: current.ids };
}

class CombinedOutbound implements OutboundObservation {
  readonly #all: OutboundObservation[];
  readonly ids: TraceIds | undefined;

  constructor(all: OutboundObservation[], ids: TraceIds | undefined) {
    this.#all = all;
    this.ids = ids;
  }

  route(route: string): void {
    for (const o of this.#all) o.route(route);
  }

  affinity(decision: 'pinned' | 'bound'): void {
    for (const o of this.#all) o.affinity(decision);
  }

  attempt(attempt: number, endpoint: string, breaker: string): AttemptObservation {
    const all = new Array<AttemptObservation>(this.#all.length);
    for (let i = 0; i < all.length; i++) all[i] = this.#all[i]!.attempt(attempt, endpoint, breaker);
    return new CombinedAttempt(all);
  }

  end(outcome: Outcome, attempts: number): void {
    for (const o of this.#all) o.end(outcome, attempts);
  }
}

class CombinedAttempt implements AttemptObservation {
  readonly #all: AttemptObservation[];
  readonly trace: TraceContext | undefined;

  /** Only when one of them counts batch sizes: the link then skips the call for the others. */
  readonly batched: ((size: number) => void) | undefined;

  constructor(all: AttemptObservation[]) {
    this.#all = all;
    let trace: TraceContext | undefined;
    for (const t of all) if (!trace && t.trace) trace = t.trace;
    this.trace = trace;
    const counting = all.filter((t) => t.batched);
    this.batched = counting.length === 0 ? undefined : (size) => { for (const t of counting) t.batched!(size); };
  }

  end(outcome: Outcome): void {
    for (const t of this.#all) t.end(outcome);
  }
}

class CombinedInbound implements InboundObservation {
  readonly #all: InboundObservation[];
  readonly ids: TraceIds | undefined;

  constructor(all: InboundObservation[], ids: TraceIds | undefined) {
    this.#all = all;
    this.ids = ids;
  }

  appCall(): AppCallObservation {
    const calls = new Array<AppCallObservation>(this.#all.length);
    let headers: readonly Header[] = NO_HEADERS;
    for (let i = 0; i < calls.length; i++) {
      const call = calls[i] = this.#all[i]!.appCall();
      // Most observers add no headers (only tracing does): no list is built for them.
      if (call.headers.length > 0) headers = headers.length === 0 ? call.headers : [...headers, ...call.headers];
    }
    return new CombinedAppCall(calls, headers);
  }

  end(outcome: Outcome): void {
    for (const o of this.#all) o.end(outcome);
  }
}

class CombinedAppCall implements AppCallObservation {
  readonly #all: AppCallObservation[];
  readonly headers: readonly Header[];

  constructor(all: AppCallObservation[], headers: readonly Header[]) {
    this.#all = all;
    this.headers = headers;
  }

  end(outcome: Outcome): void {
    for (const c of this.#all) c.end(outcome);
  }
}
