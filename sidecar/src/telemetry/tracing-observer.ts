// The spans of a call, as a CallObserver over an OpenTelemetry tracer (tracing.ts makes the tracer).
//
//   app A ── its own span, sent to the sidecar in `traceparent`
//     └─ egress payments.default      INTERNAL  calling sidecar: the app's call, all its tries
//          ├─ attempt payments.default  CLIENT    one per try (a retry is a second one)
//          │    └─ ingress payments.default SERVER  called sidecar (parent: the envelope's `trace`)
//          │         └─ app payments.default CLIENT  the call to the local app; its context is the
//          │                                        `traceparent` app B receives
//          └─ attempt payments.default  CLIENT    (attempt 2, if the first failed and was retried)
//
// Span kinds. A sidecar is a proxy: Envoy (Istio) and Linkerd give each hop one span, CLIENT on
// egress and SERVER on ingress, and hide their retries inside it. This sidecar retries itself, and
// the OpenTelemetry HTTP conventions ask for one CLIENT span per physical request ("each time an HTTP
// request is sent, including resends") under a span for the logical operation. That parent cannot be
// CLIENT too — two nested CLIENT spans for one call would count the orders → payments edge twice in
// service graphs — and it is not SERVER (the mesh is not the destination), so it is INTERNAL. The
// edge between services is then exactly one CLIENT (attempt) → SERVER (ingress) pair per try, and
// the ingress side follows Envoy: SERVER for the request from the peer, CLIENT for the request to
// the local app.
//
// Cost. An unsampled call (the sampler said no, or the caller's traceparent has flags 00) gets one
// non-recording span from the SDK (ids only: no attributes, no processor, no export) and its context
// is still propagated with flags 00, so the called side follows the decision. Its tries and its app
// call reuse that context instead of asking the SDK again: nothing of them is recorded anyway.
import { INVALID_SPANID, INVALID_TRACEID, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { parseTraceParent, TraceState } from '@opentelemetry/core';
import {
  ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL, ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_URL_PATH,
} from '@opentelemetry/semantic-conventions';
import type { Header, TraceContext } from '../mcp/codec.ts';
import type {
  AppCallObservation, AttemptObservation, CallObserver, InboundObservation, InboundStart, Outcome, OutboundObservation, OutboundStart, TraceIds,
} from './observer.ts';
import { NO_HEADERS } from './observer.ts';

/** The mesh's own span attributes. */
export const MESH = {
  service: 'mcp_mesh.service',
  source: 'mcp_mesh.source',
  route: 'mcp_mesh.route',
  endpoint: 'mcp_mesh.endpoint',
  attempt: 'mcp_mesh.attempt',
  attempts: 'mcp_mesh.attempts',
  breaker: 'mcp_mesh.breaker_state',
  affinity: 'mcp_mesh.affinity',
  callKind: 'mcp_mesh.call_kind',
  messageId: 'mcp_mesh.message_id',
  batchSize: 'mcp_mesh.batch_size',
  errorCode: 'mcp_mesh.error_code',
} as const;

/** Span names (low cardinality: services are a bounded set). */
export const SPAN_NAMES = {
  call: (service: string) => `egress ${service}`,
  attempt: (service: string) => `attempt ${service}`,
  inbound: (service: string) => `ingress ${service}`,
  appCall: (service: string) => `app ${service}`,
} as const;

export function createTracingObserver(tracer: Tracer): CallObserver {
  return {
    outbound: (start) => outbound(tracer, start),
    inbound: (start) => inbound(tracer, start),
  };
}

// ---- calling sidecar ----

function outbound(tracer: Tracer, start: OutboundStart): OutboundObservation {
  const parent = parentFromHeaders(start.headers);
  const span = tracer.startSpan(SPAN_NAMES.call(start.service), { kind: SpanKind.INTERNAL }, parent);
  const context = span.spanContext();
  const ids = idsOf(context);
  if (!span.isRecording()) {
    // Not sampled: every try hands on this span's context (flags 00), so the peer does not sample either.
    const quiet: AttemptObservation = { trace: ids ? traceContextOf(context) : undefined, end() {} };
    return { ids, route() {}, affinity() {}, attempt: () => quiet, end() {} };
  }
  const http = httpAttributes(start.method, start.path); // the call's and every try's
  span.setAttributes(http);
  span.setAttribute(MESH.service, start.service);
  span.setAttribute(MESH.callKind, start.kind);
  if (start.messageId) span.setAttribute(MESH.messageId, start.messageId);
  const callContext = trace.setSpan(parent, span);
  let route: string | undefined;
  return {
    ids,
    route(name) {
      route = name;
      span.setAttribute(MESH.route, name);
    },
    affinity(decision) {
      span.setAttribute(MESH.affinity, decision);
    },
    attempt(attempt, endpoint, breaker) {
      const child = tracer.startSpan(SPAN_NAMES.attempt(start.service), { kind: SpanKind.CLIENT }, callContext);
      if (child.isRecording()) {
        child.setAttributes(http);
        child.setAttributes(peerAttributes(endpoint));
        child.setAttribute(MESH.service, start.service);
        child.setAttribute(MESH.endpoint, endpoint);
        child.setAttribute(MESH.attempt, attempt);
        child.setAttribute(MESH.breaker, breaker);
        if (attempt > 1) child.setAttribute(ATTR_HTTP_REQUEST_RESEND_COUNT, attempt - 1);
        if (route !== undefined) child.setAttribute(MESH.route, route);
      }
      const childContext = child.spanContext();
      return {
        trace: idsOf(childContext) ? traceContextOf(childContext) : undefined,
        // How many envelopes shared the link batch this try left in (1 when alone on an idle link).
        ...(child.isRecording() ? { batched(size: number) { child.setAttribute(MESH.batchSize, size); } } : {}),
        end(outcome) { finish(child, outcome); },
      };
    },
    end(outcome, attempts) {
      span.setAttribute(MESH.attempts, attempts);
      finish(span, outcome);
    },
  };
}

// ---- called sidecar ----

function inbound(tracer: Tracer, start: InboundStart): InboundObservation {
  // The envelope's trace context is the attempt that sent this request; the forwarded W3C headers
  // carry the same (the caller puts its try's context in both), or the app's own when the calling
  // sidecar does not trace.
  const parent = parentFromTrace(start.trace) ?? parentFromHeaders(start.headers);
  const span = tracer.startSpan(SPAN_NAMES.inbound(start.service), { kind: SpanKind.SERVER }, parent);
  const context = span.spanContext();
  const ids = idsOf(context);
  if (!span.isRecording()) {
    const quiet: AppCallObservation = { headers: ids ? headersOf(context) : NO_HEADERS, end() {} };
    return { ids, appCall: () => quiet, end() {} };
  }
  const http = httpAttributes(start.method, start.path); // the call's and its app call's
  span.setAttributes(http);
  span.setAttribute(MESH.service, start.service);
  span.setAttribute(MESH.source, start.source);
  if (start.messageId !== undefined) {
    span.setAttribute(MESH.messageId, start.messageId);
    span.setAttribute(MESH.callKind, 'delivery');
  }
  return {
    ids,
    appCall() {
      const child = tracer.startSpan(SPAN_NAMES.appCall(start.service), { kind: SpanKind.CLIENT }, trace.setSpan(parent, span));
      if (child.isRecording()) {
        child.setAttributes(http);
        child.setAttribute(MESH.service, start.service);
        if (start.messageId !== undefined) child.setAttribute(MESH.messageId, start.messageId);
      }
      const childContext = child.spanContext();
      return { headers: idsOf(childContext) ? headersOf(childContext) : NO_HEADERS, end(outcome) { finish(child, outcome); } };
    },
    end(outcome) { finish(span, outcome); },
  };
}

// ---- spans ----

/**
 * The answer on a span: its status code, and for a failure (a mesh error code, or a 5xx) error.type
 * and status ERROR. A 4xx is the app's answer, not a failure of the mesh, on every span kind here.
 */
function finish(span: Span, outcome: Outcome): void {
  if (outcome.status > 0) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, outcome.status);
  if (outcome.code !== undefined) {
    span.setAttribute(ATTR_ERROR_TYPE, outcome.code);
    span.setAttribute(MESH.errorCode, outcome.code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.code });
  } else if (outcome.status >= 500) {
    span.setAttribute(ATTR_ERROR_TYPE, String(outcome.status));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

const KNOWN_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE', 'QUERY']);

/** http.request.method (a known method, else _OTHER with the original) and url.path (no query: it may hold secrets). */
function httpAttributes(method: string, path: string): Attributes {
  const query = path.indexOf('?');
  const attributes: Attributes = { [ATTR_URL_PATH]: query === -1 ? path : path.slice(0, query) };
  if (KNOWN_METHODS.has(method)) attributes[ATTR_HTTP_REQUEST_METHOD] = method;
  else {
    attributes[ATTR_HTTP_REQUEST_METHOD] = '_OTHER';
    attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = method;
  }
  return attributes;
}

/** server.address and server.port of a peer sidecar, from "host:port" or "[v6]:port". */
function peerAttributes(endpoint: string): Attributes {
  const colon = endpoint.lastIndexOf(':');
  const port = Number(endpoint.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port)) return { [ATTR_SERVER_ADDRESS]: endpoint };
  const host = endpoint.slice(0, colon);
  return { [ATTR_SERVER_ADDRESS]: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, [ATTR_SERVER_PORT]: port };
}

// ---- W3C trace context ----

/**
 * The ids of a span the SDK made, or undefined for the invalid context it returns when tracing is
 * suppressed. (Its ids are well-formed by construction: comparing with the all-zero ids is enough,
 * and cheaper than the API's regular-expression check.)
 */
function idsOf(context: SpanContext): TraceIds | undefined {
  return context.traceId !== INVALID_TRACEID && context.spanId !== INVALID_SPANID ? { traceId: context.traceId, spanId: context.spanId } : undefined;
}

export function traceparentOf(context: SpanContext): string {
  return `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

function traceContextOf(context: SpanContext): TraceContext {
  const tracestate = context.traceState?.serialize();
  return tracestate ? { traceparent: traceparentOf(context), tracestate } : { traceparent: traceparentOf(context) };
}

function headersOf(context: SpanContext): readonly Header[] {
  const headers = [{ name: 'traceparent', value: traceparentOf(context) }];
  const tracestate = context.traceState?.serialize();
  if (tracestate) headers.push({ name: 'tracestate', value: tracestate });
  return headers;
}

/** The remote parent in `traceparent`/`tracestate`, or the root context (a new trace) if there is none or it is invalid. */
export function remoteParent(traceparent: string | undefined, tracestate: string | undefined): Context | undefined {
  if (traceparent === undefined) return undefined;
  const parsed = parseTraceParent(traceparent);
  if (!parsed) return undefined;
  const context: SpanContext = { traceId: parsed.traceId, spanId: parsed.spanId, traceFlags: parsed.traceFlags, isRemote: true };
  if (tracestate) context.traceState = new TraceState(tracestate);
  return trace.setSpanContext(ROOT_CONTEXT, context);
}

function parentFromTrace(context: TraceContext | undefined): Context | undefined {
  return context ? remoteParent(context.traceparent, context.tracestate) : undefined;
}

/** The app's W3C headers (names are lower case here). Several traceparent headers are invalid: a new trace. */
function parentFromHeaders(headers: readonly Header[]): Context {
  let traceparent: string | undefined;
  let tracestate: string | undefined;
  let parents = 0;
  for (const header of headers) {
    if (header.name === 'traceparent') {
      traceparent = header.value;
      parents++;
    } else if (header.name === 'tracestate') {
      tracestate = tracestate === undefined ? header.value : `${tracestate},${header.value}`;
    }
  }
  return (parents === 1 ? remoteParent(traceparent, tracestate) : undefined) ?? ROOT_CONTEXT;
}
