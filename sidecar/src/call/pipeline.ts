// The outbound call pipeline, top to bottom in one place:
//
//   resolve → deadline → balance → link (unary over the shared link, or a Stream call)
//
// Each step is a plain function of the call; later layers (retry with budget, circuit breaker,
// affinity) slot in between deadline and balance without touching the others.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Balancer } from '../balancer/round-robin.ts';
import type { Endpoint, Resolver } from '../discovery/resolver.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { MessageType, Priority, type Envelope, type Header } from '../mcp/codec.ts';
import { newMessageId } from '../mcp/ids.ts';
import type { PeerLink } from '../mcp/link.ts';
import type { LinkPool } from '../mcp/link-pool.ts';
import { streamCall } from '../mcp/stream-client.ts';
import type { ServiceTarget } from '../outbound/target.ts';

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
  /** Overall deadline in ms from now; 0 for none. */
  deadlineMs: number;
  /** Aborted when the calling app goes away. */
  signal: AbortSignal;
}

export interface CallResult {
  status: number;
  headers: Header[];
  /** Inline bytes, or a stream for streamed and large bodies. */
  body: Buffer | Readable;
  endpoint: string;
}

export interface PipelineDeps {
  source: string;
  resolver: Resolver;
  links: LinkPool;
  balancer: Balancer;
  connectTimeoutMs: number;
  streamIdleMs: number;
  logger: Logger;
}

export type CallPipeline = (call: OutboundCall) => Promise<CallResult>;

export function createCallPipeline(deps: PipelineDeps): CallPipeline {
  return async function callService(call) {
    const qualified = `${call.target.service}.${call.target.namespace}`;
    const endpoints = resolve(deps.resolver, call.target);

    return withDeadline(call, qualified, async (signal) => {
      const link = await balance(deps, qualified, endpoints, signal);
      const request = requestEnvelope(deps.source, qualified, call);
      const streamed = call.body.kind === 'stream' || call.expectStream;
      return streamed ? sendOnStream(deps, link, request, call, signal) : sendOnLink(deps, link, request, signal);
    }).catch((err: unknown) => { throw naming(err, qualified); });
  };
}

/** Errors from the peer or the link do not know which service was called; the answer must say. */
function naming(err: unknown, service: string): unknown {
  if (!(err instanceof MeshError) || err.service) return err;
  return new MeshError(err.code, err.message, { service, cause: err });
}

// ---- resolve ----

function resolve(resolver: Resolver, target: ServiceTarget): readonly Endpoint[] {
  const endpoints = resolver.endpoints(target.service, target.namespace);
  if (!endpoints) {
    throw new MeshError('UNKNOWN_SERVICE', `no service "${target.service}" in namespace "${target.namespace}" is known to discovery`, { service: `${target.service}.${target.namespace}` });
  }
  return endpoints;
}

// ---- deadline ----

/** Runs `work` with a signal that aborts on the deadline or when the app goes away. */
async function withDeadline<T>(call: OutboundCall, service: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onClientGone = () => controller.abort(new MeshError('CLIENT_CLOSED', 'the calling app went away', { service }));
  call.signal.addEventListener('abort', onClientGone, { once: true });
  const timer = call.deadlineMs > 0
    ? setTimeout(() => controller.abort(new MeshError('DEADLINE_EXCEEDED', `no answer from ${service} within ${call.deadlineMs} ms`, { service })), call.deadlineMs)
    : undefined;
  try {
    return await work(controller.signal);
  } catch (err) {
    if (controller.signal.aborted && controller.signal.reason instanceof MeshError) throw controller.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    call.signal.removeEventListener('abort', onClientGone);
  }
}

// ---- balance ----

async function balance(deps: PipelineDeps, service: string, endpoints: readonly Endpoint[], signal: AbortSignal): Promise<PeerLink> {
  if (endpoints.length === 0) throw new MeshError('NO_HEALTHY_ENDPOINT', `service ${service} has no endpoints`, { service });
  const ready = deps.balancer.pick(service, endpoints, (e) => deps.links.get(e.address).state === 'ready');
  if (ready) return deps.links.get(ready.address);
  // Nothing ready: wait (up to the connect timeout) for the first link that comes up, e.g. at start-up.
  const waiting = endpoints.map((e) => deps.links.get(e.address)).filter((l) => l.state === 'connecting' || l.state === 'broken');
  if (waiting.length === 0) throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} is ready (all draining)`, { service });
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.any(waiting.map((link) => link.whenReady(deps.connectTimeoutMs, abort.signal).then(() => link)));
  } catch {
    if (signal.aborted) throw signal.reason;
    throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} became reachable within ${deps.connectTimeoutMs} ms`, { service });
  } finally {
    abort.abort();
    signal.removeEventListener('abort', onAbort);
  }
}

// ---- link ----

function requestEnvelope(source: string, destination: string, call: OutboundCall): Envelope {
  return {
    id: newMessageId(),
    type: MessageType.REQUEST,
    timestampMs: Date.now(),
    source,
    destination,
    priority: Priority.MEDIUM,
    deadlineMs: call.deadlineMs,
    headers: call.headers,
    payload: call.body.kind === 'inline' ? call.body.bytes : undefined,
    http: { method: call.method, path: call.path, authority: call.authority },
  };
}

async function sendOnLink(deps: PipelineDeps, link: PeerLink, request: Envelope, signal: AbortSignal): Promise<CallResult> {
  const response = await link.call(request, signal);
  const status = response.http?.status ?? 0;
  const headers = response.headers ?? [];
  const bodyStreamId = response.http?.bodyStreamId;
  if (!bodyStreamId) return { status, headers, body: Buffer.from(response.payload ?? []), endpoint: link.address };
  // The answer was too large or open-ended to inline: pull its body over a Stream call.
  const pull: Envelope = { id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: request.source, http: { bodyStreamId } };
  const streamed = await streamCall(link.openStream(), pull, null, { signal, idleTimeoutMs: deps.streamIdleMs });
  return { status, headers, body: streamed.body, endpoint: link.address };
}

async function sendOnStream(deps: PipelineDeps, link: PeerLink, request: Envelope, call: OutboundCall, signal: AbortSignal): Promise<CallResult> {
  const body = call.body.kind === 'stream' ? call.body.stream : null;
  if (body) request.http = { ...request.http, bodyFollows: true };
  const streamed = await streamCall(link.openStream(), request, body, { signal, idleTimeoutMs: deps.streamIdleMs });
  return { status: streamed.head.http?.status ?? 0, headers: streamed.head.headers ?? [], body: streamed.body, endpoint: link.address };
}
