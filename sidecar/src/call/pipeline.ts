// The outbound call pipeline, top to bottom in one place:
//
//   resolve → policy → session affinity → concurrency limit → deadline → retry (budget, back-off)
//     → service breaker → balance (owner, or subset, health, endpoint breaker) → link (unary or Stream)
//   and on the way back: session affinity (bind a new MCP session to the replica that answered).
//
// Every step is a small function below, in that order. The per-service state they share (balancer,
// outlier detector, limiter, retry budget) lives in service-state.ts; the pieces themselves in
// resilience/ and balancer/. Retries happen here only, in the calling sidecar: the called sidecar
// never retries, so a chain of services cannot multiply them.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Endpoint, Resolver } from '../discovery/resolver.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { asBuffer, MessageType, Priority, type Envelope, type Header, type TraceContext } from '../mcp/codec.ts';
import { newMessageId } from '../mcp/ids.ts';
import type { PeerLink } from '../mcp/link.ts';
import type { LinkPool } from '../mcp/link-pool.ts';
import { streamCall } from '../mcp/stream-client.ts';
import type { ServiceTarget } from '../outbound/target.ts';
import type { EffectivePolicy, PriorityName, RetryPolicy } from '../policy/types.ts';
import { bindResponse, routeSession, SESSION_HEADER, type EndpointEventRewriter, type SessionRoute } from '../affinity/mcp-session.ts';
import type { OwnerTokens } from '../affinity/token.ts';
import { hashKey } from '../affinity/hash-key.ts';
import { selectSubset } from '../balancer/subsets.ts';
import { CircuitOpenError, failureStatuses, isBreakerFailure, type BreakerRegistry } from '../resilience/breaker.ts';
import { deadlines } from '../resilience/deadline-timers.ts';
import { isTraceHeader } from '../http/headers.ts';
import { retryDelay, shouldRetry, type AttemptOutcome } from '../resilience/retry.ts';
import type { AttemptObservation, CallObserver, OutboundObservation } from '../telemetry/observer.ts';
import type { ServiceState, ServiceStates } from './service-state.ts';

export type RequestBody =
  | { kind: 'none' }
  | { kind: 'inline'; bytes: Buffer }
  | { kind: 'stream'; stream: Readable };

export interface OutboundCall {
  target: ServiceTarget;
  method: string;
  /** Origin-form path with query string. */
  path: string;
  /** The Host the app used; the called app sees it unchanged. */
  authority: string;
  headers: Header[];
  body: RequestBody;
  /** The response is expected to stream (SSE): go straight to a Stream call. */
  expectStream: boolean;
  /** Deadline the app asked for (`mcp-mesh-timeout`), in ms; undefined: the policy's. */
  deadlineMs: number | undefined;
  /** Aborted when the calling app goes away. */
  signal: AbortSignal;
  /** The lane on the link: the app's `mcp-mesh-priority`, else the policy's. */
  priority?: PriorityName;
  /** Set when the call delivers a durable message (async/dispatcher.ts). */
  delivery?: Delivery;
  /** The call is an entry of a batch (POST /mesh/v1/batch), for telemetry. */
  batched?: boolean;
}

/**
 * A delivery attempt of a durable message. It gets one try and no more: the outbox redelivers, with
 * its own back-off, from disk. Its deadline is `deadlineMs` (the policy's async.attemptTimeout),
 * not the synchronous request deadline.
 */
export interface Delivery {
  messageId: string;
  attempt: number;
  topic?: string;
  /**
   * The replica to deliver to. `pinned` (broadcast): that one and no other. Otherwise a preference:
   * the replica an earlier attempt went to, so a redelivery meets the record of the first one and
   * is dropped there as a duplicate rather than run by another replica.
   */
  endpoint?: string;
  pinned: boolean;
  /** Told which replica the try is sent to, before it leaves (if it then fails, the app there may have run it). */
  onSent?: (endpoint: string) => void;
}

export interface CallResult {
  status: number;
  headers: Header[];
  /** Inline bytes, or a stream for streamed and large bodies. */
  body: Buffer | Readable;
  endpoint: string;
}

/** Where the effective policy of a call comes from (the policy store; a fixed policy in tests). */
export interface PolicySource {
  resolve(service: string, namespace: string, request: { method: string; path: string; headers: readonly Header[] }): EffectivePolicy;
}

/** MCP session affinity: the token signer, and counters for /sessions and metrics. */
export interface SessionAffinity {
  tokens: OwnerTokens;
  /** A response bound a new session to its owner. */
  onBound(service: string): void;
  /** A request was routed to its session's owner. */
  onRouted(service: string): void;
  /** A request's session owner is gone (404 to the client). */
  onOwnerGone(service: string): void;
}

export interface PipelineDeps {
  /** This sidecar's service, "name.namespace" (the `source` of every envelope). */
  source: string;
  /** This replica (pod) of it: the key of `hashOn: [{ source: true }]`, like IP hash at an edge. */
  instance: string;
  sessions: SessionAffinity;
  resolver: Resolver;
  links: LinkPool;
  policies: PolicySource;
  services: ServiceStates;
  breakers: BreakerRegistry;
  logger: Logger;
  /** Tracing, metrics and request logs (telemetry/observer.ts). */
  observer: CallObserver;
}

export type CallPipeline = (call: OutboundCall) => Promise<CallResult>;

/** Response header telling the app how many tries the mesh made. */
export const ATTEMPTS_HEADER = 'mcp-mesh-attempts';

export function createCallPipeline(deps: PipelineDeps): CallPipeline {
  return async function callService(call) {
    const service = `${call.target.service}.${call.target.namespace}`;
    const observed = deps.observer.outbound({
      service, method: call.method, path: call.path, headers: call.headers, kind: call.delivery ? 'delivery' : call.batched ? 'batch' : 'call',
      messageId: call.delivery?.messageId,
    });
    const tries = { count: 0 };
    try {
      const endpoints = resolve(deps.resolver, call.target, service);
      const policy = deps.policies.resolve(call.target.service, call.target.namespace, call);
      observed.route(policy.route);
      const affinity = affinityOn(policy);
      const session = affinity ? pinSession(deps, service, call) : undefined;
      if (session) observed.affinity('pinned');
      const routed = session ? { ...call, headers: session.headers, path: session.path } : call;
      const state = deps.services.get(service, policy);
      const deadline = call.delivery ? Math.min(call.deadlineMs ?? 0, LONGEST_TIMER_MS) : deadlineOf(call, policy);
      const result = await withDeadline(call, service, deadline, async (signal, deadlineAt) => {
        // The wait for a concurrency slot counts against the deadline; the slot is held across retries.
        const release = await state.limiter.acquire(signal, call.priority ?? policy.priority);
        try {
          return await withRetries({ deps, call: routed, service, policy, state, endpoints, signal, deadlineAt, owner: session?.owner.address, observed, tries });
        } finally {
          release();
        }
      });
      const answer = affinity ? bindSession(deps, service, result, hasSession(call), observed) : result;
      observed.end({ status: answer.status }, tries.count);
      return answer;
    } catch (err) {
      const named = naming(err, service);
      observed.end(outcomeOf(named), tries.count);
      throw named;
    }
  };
}

/** Everything one call's tries need. */
interface CallContext {
  deps: PipelineDeps;
  call: OutboundCall;
  service: string;
  policy: EffectivePolicy;
  state: ServiceState;
  endpoints: readonly Endpoint[];
  /** Aborts on the overall deadline or when the app goes away. */
  signal: AbortSignal;
  /** performance.now() value of the overall deadline; Infinity for none. */
  deadlineAt: number;
  /** The endpoint that owns the call's MCP session: every try goes there and nowhere else. */
  owner: string | undefined;
  observed: OutboundObservation;
  /** Tries made so far. */
  tries: { count: number };
}

// ---- resolve ----

function resolve(resolver: Resolver, target: ServiceTarget, service: string): readonly Endpoint[] {
  const endpoints = resolver.endpoints(target.service, target.namespace);
  if (!endpoints) throw new MeshError('UNKNOWN_SERVICE', `no service "${target.service}" in namespace "${target.namespace}" is known to discovery`, { service });
  return endpoints;
}

/** What telemetry records of a failed call or try. */
function outcomeOf(err: unknown): { status: number; code?: string; message?: string } {
  return err instanceof MeshError ? { status: err.status, code: err.code, message: err.message } : { status: 500, code: 'INTERNAL', message: String(err) };
}

/** Errors from the peer or the link do not know which service was called; the answer must say. */
function naming(err: unknown, service: string): unknown {
  if (!(err instanceof MeshError) || err.service) return err;
  const named = new MeshError(err.code, err.message, { service, cause: err });
  named.attempts = err.attempts;
  return named;
}

// ---- session affinity ----

/** MCP session affinity is on unless a policy turns it off (`mcp: { affinity: false }`). */
function affinityOn(policy: EffectivePolicy): boolean {
  return policy.mcp.affinity;
}

/** A request carrying an owner token is pinned to that owner, with the app's own session id restored. */
function pinSession(deps: PipelineDeps, service: string, call: OutboundCall): Extract<SessionRoute, { kind: 'pinned' }> | undefined {
  const route = routeSession(deps.sessions.tokens, call);
  if (route.kind === 'invalid') throw new MeshError('SESSION_TOKEN_INVALID', route.reason, { service });
  if (route.kind === 'none') return undefined;
  deps.sessions.onRouted(service);
  return route;
}

/** A response that hands out a session id binds that session to the replica that answered. */
function bindSession(deps: PipelineDeps, service: string, result: CallResult, requestHadSession: boolean, observed: OutboundObservation): CallResult {
  const bound = bindResponse(deps.sessions.tokens, result.endpoint, result, requestHadSession);
  if (bound.bound) {
    deps.sessions.onBound(service);
    observed.affinity('bound');
  }
  if (bound.headers === result.headers && bound.body === result.body) return result; // most answers: nothing to bind
  if (!Buffer.isBuffer(bound.body) && bound.body !== result.body) {
    // An SSE stream whose first event may bind the session (HTTP+SSE): counted when it does.
    (bound.body as EndpointEventRewriter).once('bound', () => deps.sessions.onBound(service));
  }
  return { ...result, headers: bound.headers, body: bound.body };
}

function hasSession(call: OutboundCall): boolean {
  return call.headers.some((h) => h.name === SESSION_HEADER);
}

// ---- deadline ----

/** Node timers fire at once beyond this (about 24.8 days). */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * The overall deadline: the policy's, or a shorter one the app asked for (`mcp-mesh-timeout`). An app
 * may shorten its deadline but not lengthen or remove the policy's.
 */
function deadlineOf(call: OutboundCall, policy: EffectivePolicy): number {
  const byPolicy = policy.timeouts.overallMs;
  const asked = call.deadlineMs !== undefined && call.deadlineMs > 0 ? call.deadlineMs : undefined;
  const deadline = byPolicy > 0 ? Math.min(asked ?? byPolicy, byPolicy) : (asked ?? 0);
  return Math.min(deadline, LONGEST_TIMER_MS);
}

/** Runs `work` with a signal that aborts on the overall deadline or when the app goes away. */
async function withDeadline<T>(call: OutboundCall, service: string, deadlineMs: number, work: (signal: AbortSignal, deadlineAt: number) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onClientGone = () => controller.abort(new MeshError('CLIENT_CLOSED', 'the calling app went away', { service }));
  call.signal.addEventListener('abort', onClientGone, { once: true });
  const timer = deadlineMs > 0
    ? deadlines.start(deadlineMs, () => controller.abort(new MeshError('DEADLINE_EXCEEDED', `no answer from ${service} within ${deadlineMs} ms`, { service })))
    : undefined;
  try {
    return await work(controller.signal, deadlineMs > 0 ? performance.now() + deadlineMs : Infinity);
  } catch (err) {
    if (controller.signal.aborted && controller.signal.reason instanceof MeshError) {
      const reason = controller.signal.reason;
      if (err instanceof MeshError) reason.attempts = err.attempts;
      throw reason;
    }
    throw err;
  } finally {
    timer?.cancel();
    call.signal.removeEventListener('abort', onClientGone);
  }
}

// ---- retry ----

async function withRetries(ctx: CallContext): Promise<CallResult> {
  const { call, policy, state } = ctx;
  const retries = call.delivery ? singleTry(policy.retries) : policy.retries;
  const bodyBytes = call.body.kind === 'stream' ? 'stream' : call.body.kind === 'inline' ? call.body.bytes.byteLength : 0;
  const tried = new Set<string>();
  const splitDraw = Math.random(); // one draw per call: every try lands in the same subset
  state.budget.recordCall();
  for (let attempt = 1; ; attempt++) {
    ctx.tries.count = attempt;
    let outcome: AttemptOutcome;
    let result: CallResult | undefined;
    try {
      result = await throughServiceBreaker(ctx, () => tryOnce(ctx, tried, splitDraw));
      outcome = { status: result.status, headers: result.headers };
    } catch (err) {
      if (ctx.signal.aborted) throw withAttempts(err, attempt);
      outcome = { error: err, perTryTimeout: err instanceof PerTryTimeout };
    }
    const decision = shouldRetry(retries, { method: call.method, bodyBytes, attempt, outcome });
    const delay = decision.retry ? retryDelay(retries, attempt, outcome) : 0;
    const retry = decision.retry && performance.now() + delay < ctx.deadlineAt && state.budget.tryAcquire();
    if (!retry) {
      if (result) {
        result.headers.push({ name: ATTEMPTS_HEADER, value: String(attempt) }); // the answer's own list, made for this try
        return result;
      }
      throw withAttempts((outcome as { error: unknown }).error, attempt);
    }
    if (result && !Buffer.isBuffer(result.body)) result.body.destroy(); // the answer we will not use
    ctx.deps.logger.debug({ target: ctx.service, attempt, conditions: decision.conditions, delayMs: Math.round(delay) }, 'retrying');
    if (delay > 0) await sleep(delay, undefined, { signal: ctx.signal });
  }
}

/** A delivery of a durable message is tried once here; the outbox redelivers from disk. */
const singleTries = new WeakMap<RetryPolicy, RetryPolicy>();
function singleTry(retries: RetryPolicy): RetryPolicy {
  let once = singleTries.get(retries);
  if (!once) singleTries.set(retries, once = { ...retries, attempts: 1 });
  return once;
}

function withAttempts(err: unknown, attempts: number): unknown {
  if (err instanceof MeshError) err.attempts = attempts;
  return err;
}

// ---- service breaker ----

function throughServiceBreaker(ctx: CallContext, attempt: () => Promise<CallResult>): Promise<CallResult> {
  const breaker = ctx.deps.breakers.service(ctx.service, ctx.policy.circuitBreaker);
  return breaker.run(attempt, failureStatuses(ctx.policy.circuitBreaker));
}

// ---- balance, then one try ----

/** A try that ran out of its per-try time (the overall deadline may still have room). */
class PerTryTimeout extends MeshError {
  constructor(service: string, ms: number) {
    super('DEADLINE_EXCEEDED', `no answer from ${service} within the per-try timeout of ${ms} ms`, { service });
  }
}

async function tryOnce(ctx: CallContext, tried: Set<string>, splitDraw: number): Promise<CallResult> {
  const { deps, service, policy, state } = ctx;
  const link = await balance(ctx, tried, splitDraw);
  const address = link.address;
  tried.add(address);
  ctx.call.delivery?.onSent?.(address);
  const endpointBreaker = deps.breakers.endpoint(service, address, policy.circuitBreaker);
  const isFailure = failureStatuses(policy.circuitBreaker);
  const observed = ctx.observed.attempt(ctx.tries.count, address, endpointBreaker.state);
  state.balancer.onStart(address);
  const started = performance.now();
  let ok = false;
  let counted = true;
  try {
    const result = await endpointBreaker.run(() => sendWithPerTryTimeout(ctx, link, observed), isFailure);
    ok = !isFailure(result);
    observed.end({ status: result.status });
    return result;
  } catch (err) {
    // A refusal by this endpoint's own breaker, or the caller leaving, says nothing about its health.
    counted = !(err instanceof CircuitOpenError) && isBreakerFailure(err);
    observed.end(outcomeOf(err));
    throw err;
  } finally {
    state.balancer.onEnd(address, performance.now() - started, ok);
    if (counted) state.outlier.record(address, ok);
  }
}

/**
 * Choose the link for this try: the subset for the request, among endpoints whose link is ready,
 * not ejected and whose breaker is closed; avoiding endpoints this call already tried. If health
 * rules leave nothing while some links are ready, they are ignored for this call (panic mode): a
 * partly-up service is better served than refused.
 */
async function balance(ctx: CallContext, tried: ReadonlySet<string>, splitDraw: number): Promise<PeerLink> {
  const { deps, service, policy, state, endpoints, call } = ctx;
  if (ctx.owner !== undefined) return ownerLink(ctx, ctx.owner);
  const preferred = call.delivery?.endpoint;
  if (preferred !== undefined) {
    if (call.delivery!.pinned) return pinnedLink(ctx, preferred);
    const link = deps.links.find(preferred);
    const healthy = !state.outlier.isEjected(preferred) && !deps.breakers.isOpen(service, preferred, policy.circuitBreaker);
    if (link?.state === 'ready' && healthy && endpoints.some((e) => e.address === preferred)) return link;
  }
  if (endpoints.length === 0) throw new MeshError('NO_HEALTHY_ENDPOINT', `service ${service} has no endpoints`, { service });
  const ready: Endpoint[] = [];
  const healthy: Endpoint[] = [];
  for (const e of endpoints) {
    if (deps.links.find(e.address)?.state !== 'ready') continue;
    ready.push(e);
    if (!state.outlier.isEjected(e.address) && !deps.breakers.isOpen(service, e.address, policy.circuitBreaker)) healthy.push(e);
  }
  const candidates = healthy.length > 0 ? healthy : ready;
  if (candidates.length === 0) return waitForAnyLink(ctx);
  const selection = policy.subsets.length === 0 ? { subset: undefined, endpoints: candidates } : selectSubset(candidates, policy, call.headers, () => splitDraw);
  // Under consistent hashing the key owns the endpoint: retries stay on it (no exclusion).
  const hashing = policy.loadBalancer.policy === 'consistent-hash';
  const key = hashing ? hashKey(policy.loadBalancer.consistentHash.hashOn, { headers: call.headers, path: call.path, source: deps.instance }) : undefined;
  const endpoint = state.balancer.pick(selection.endpoints, hashing ? { hashKey: key } : { exclude: tried });
  if (!endpoint) throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} in subset ${selection.subset ?? '(all)'} is ready`, { service });
  const link = deps.links.find(endpoint.address);
  if (!link) throw new MeshError('NO_HEALTHY_ENDPOINT', `endpoint ${endpoint.address} of ${service} left discovery`, { service });
  return link;
}

/**
 * The link to a session's owner. The session lives there and nowhere else: an owner that left
 * discovery, or whose link does not come up within the connect timeout, means the session is gone.
 */
async function ownerLink(ctx: CallContext, owner: string): Promise<PeerLink> {
  const { deps, service } = ctx;
  const gone = (why: string) => {
    deps.sessions.onOwnerGone(service);
    return new MeshError('SESSION_OWNER_GONE', `the replica that owns this session (${owner}) ${why}`, { service });
  };
  if (!ctx.endpoints.some((e) => e.address === owner)) throw gone('is no longer an endpoint of the service');
  const link = deps.links.find(owner);
  if (!link) throw gone('is no longer an endpoint of the service');
  if (link.state === 'ready') return link;
  try {
    await link.whenReady(ctx.policy.timeouts.connectMs, ctx.signal);
    return link;
  } catch {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    throw gone(`is unreachable (link ${link.state})`);
  }
}

/** A broadcast delivery goes to its one replica, or fails (the outbox tries again later). */
async function pinnedLink(ctx: CallContext, address: string): Promise<PeerLink> {
  const { deps, service } = ctx;
  const link = ctx.endpoints.some((e) => e.address === address) ? deps.links.find(address) : undefined;
  if (!link) throw new MeshError('NO_HEALTHY_ENDPOINT', `replica ${address} is no longer an endpoint of ${service}`, { service });
  if (link.state !== 'ready') await link.whenReady(ctx.policy.timeouts.connectMs, ctx.signal);
  return link;
}

/** Nothing ready (e.g. at start-up): wait up to the connect timeout for the first link to come up. */
async function waitForAnyLink(ctx: CallContext): Promise<PeerLink> {
  const { deps, service, endpoints, signal } = ctx;
  const connectMs = ctx.policy.timeouts.connectMs;
  const waiting = endpoints.flatMap((e) => deps.links.find(e.address) ?? []).filter((l) => l.state === 'connecting' || l.state === 'broken');
  if (waiting.length === 0) throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} is ready (all draining)`, { service });
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.any(waiting.map((link) => link.whenReady(connectMs, abort.signal).then(() => link)));
  } catch {
    if (signal.aborted) throw signal.reason;
    throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} became reachable within ${connectMs} ms`, { service });
  } finally {
    abort.abort();
    signal.removeEventListener('abort', onAbort);
  }
}

// ---- link ----

/** Send on `link` under the per-try timeout (if any), which also caps the deadline the peer is told. */
async function sendWithPerTryTimeout(ctx: CallContext, link: PeerLink, observed: AttemptObservation): Promise<CallResult> {
  const perTryMs = ctx.policy.timeouts.perTryMs;
  const remaining = ctx.deadlineAt - performance.now();
  const budgetMs = Math.max(1, Math.ceil(Math.min(perTryMs > 0 ? perTryMs : Infinity, remaining)));
  const request = requestEnvelope(ctx.deps.source, ctx.service, ctx.call, ctx.policy, Number.isFinite(budgetMs) ? budgetMs : 0, observed.trace);
  if (!(perTryMs > 0 && perTryMs < remaining)) return send(ctx, link, request, ctx.signal, observed).catch((err: unknown) => { throw endedByCaller(ctx, err); });
  const tryController = new AbortController();
  const onAbort = () => tryController.abort(ctx.signal.reason);
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  const timer = deadlines.start(perTryMs, () => tryController.abort(new PerTryTimeout(ctx.service, perTryMs)));
  try {
    return await send(ctx, link, request, tryController.signal, observed);
  } catch (err) {
    if (tryController.signal.aborted && tryController.signal.reason instanceof PerTryTimeout) throw tryController.signal.reason;
    throw endedByCaller(ctx, err);
  } finally {
    timer.cancel();
    ctx.signal.removeEventListener('abort', onAbort);
  }
}

/**
 * A try cut short by the overall deadline or by the app leaving says nothing about the endpoint: it
 * must not count as its failure (breakers, ejection) — an app's own tight deadline would otherwise
 * eject healthy replicas. The pipeline reports the real reason to the app (withDeadline).
 */
function endedByCaller(ctx: CallContext, err: unknown): unknown {
  return ctx.signal.aborted ? new MeshError('CLIENT_CLOSED', 'the try was ended by the call\'s deadline or its caller', { service: ctx.service }) : err;
}

function send(ctx: CallContext, link: PeerLink, request: Envelope, signal: AbortSignal, observed: AttemptObservation): Promise<CallResult> {
  const streamed = ctx.call.body.kind === 'stream' || ctx.call.expectStream;
  return streamed ? sendOnStream(ctx, link, request, signal) : sendOnLink(ctx, link, request, signal, observed);
}

/**
 * A traced try continues the trace in its own span: the called side sees this try as the parent, in
 * the envelope and in the forwarded W3C headers alike (so an untraced called sidecar still hands the
 * app a parent that exists).
 */
function withTraceHeaders(headers: readonly Header[], trace: TraceContext): Header[] {
  const out = headers.filter((h) => !isTraceHeader(h.name));
  if (trace.traceparent) out.push({ name: 'traceparent', value: trace.traceparent });
  if (trace.tracestate) out.push({ name: 'tracestate', value: trace.tracestate });
  return out;
}

const LANES: Readonly<Record<PriorityName, Priority>> = { high: Priority.HIGH, medium: Priority.MEDIUM, low: Priority.LOW };

function requestEnvelope(source: string, destination: string, call: OutboundCall, policy: EffectivePolicy, deadlineMs: number, trace: TraceContext | undefined): Envelope {
  const envelope: Envelope = {
    id: newMessageId(),
    type: MessageType.REQUEST,
    timestampMs: Date.now(),
    source,
    destination,
    priority: LANES[call.priority ?? policy.priority],
    deadlineMs,
    headers: trace ? withTraceHeaders(call.headers, trace) : call.headers,
    payload: call.body.kind === 'inline' ? call.body.bytes : undefined,
    http: { method: call.method, path: call.path, authority: call.authority },
  };
  if (trace) envelope.trace = trace;
  if (call.delivery) {
    envelope.messageId = call.delivery.messageId;
    envelope.attempt = call.delivery.attempt;
    if (call.delivery.topic) envelope.topic = call.delivery.topic;
  }
  return envelope;
}

async function sendOnLink(ctx: CallContext, link: PeerLink, request: Envelope, signal: AbortSignal, observed: AttemptObservation): Promise<CallResult> {
  const compression = ctx.policy.compression;
  const response = await link.call(request, signal, compression.algorithm === 'none' ? undefined : compression, observed.batched ? observed : undefined);
  const status = response.http?.status ?? 0;
  const headers = response.headers ?? [];
  const bodyStreamId = response.http?.bodyStreamId;
  if (!bodyStreamId) return { status, headers, body: asBuffer(response.payload ?? Buffer.alloc(0)), endpoint: link.address };
  // The answer was too large or open-ended to inline: pull its body over a Stream call.
  const pull: Envelope = { id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: request.source, http: { bodyStreamId } };
  const streamed = await streamCall(link.openStream(ctx.service), pull, null, { signal, idleTimeoutMs: ctx.policy.timeouts.streamIdleMs });
  return { status, headers, body: streamed.body, endpoint: link.address };
}

async function sendOnStream(ctx: CallContext, link: PeerLink, request: Envelope, signal: AbortSignal): Promise<CallResult> {
  const body = ctx.call.body.kind === 'stream' ? ctx.call.body.stream : null;
  if (body) request.http = { ...request.http, bodyFollows: true };
  const streamed = await streamCall(link.openStream(ctx.service), request, body, { signal, idleTimeoutMs: ctx.policy.timeouts.streamIdleMs });
  return { status: streamed.head.http?.status ?? 0, headers: streamed.head.headers ?? [], body: streamed.body, endpoint: link.address };
}
