// The seam between a call and the wire: what one try of a call needs from MCP (LinkCall, LinkTry),
// and how it goes — inline on the shared Link stream (batched), as a Stream call (a streamed request
// body or an expected stream such as SSE), and, when an inline answer turns out too large, its body
// pulled over a Stream call. PeerLink.send() is the one entry; the call stack never builds an envelope.
import type { Readable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { MeshError } from '../errors/mesh-error.ts';
import { isTraceHeader } from '../http/headers.ts';
import { asBuffer, MessageType, Priority, type Envelope, type Frame, type Header, type TraceContext } from './codec.ts';
import type { CompressionSetting } from './compression.ts';
import { newMessageId } from './ids.ts';
import { streamCall } from './stream-client.ts';

export type RequestBody =
  | { kind: 'none' }
  | { kind: 'inline'; bytes: Buffer }
  | { kind: 'stream'; stream: Readable };

export type LaneName = 'high' | 'medium' | 'low';

/** What a call carries to the peer, and the try it is on. */
export interface LinkCall {
  /** The called service, "name.namespace": the envelope's destination, and the service errors name. */
  readonly service: string;
  readonly method: string;
  /** Origin-form path with query string. */
  readonly path: string;
  readonly authority: string;
  readonly headers: readonly Header[];
  readonly body: RequestBody;
  /** The response is expected to stream (SSE): go straight to a Stream call. */
  readonly expectStream: boolean;
  readonly lane: LaneName;
  /** Set when the call delivers a durable message. */
  readonly delivery: { messageId: string; attempt: number; topic?: string } | undefined;
  /** The policy's payload compression; undefined for none. */
  readonly compression: CompressionSetting | undefined;
  /** A Stream call (or a pulled body) is cut when no frame arrives for this long. */
  readonly streamIdleMs: number;

  // ---- the current try (a call is sent once per try; these change between tries) ----
  /** Aborts the try: the call's deadline, the app leaving, or the per-try timeout. */
  readonly trySignal: AbortSignal;
  /** The time the peer is told it has (ms, 0 for none). */
  readonly budgetMs: number;
  /** The trace context the peer continues, when this try is traced. */
  readonly trace: TraceContext | undefined;
  /** Told the size of the batch the request left in (telemetry). */
  batched(size: number): void;
}

export interface LinkAnswer {
  status: number;
  headers: Header[];
  /** Inline bytes, or a stream for streamed and large bodies. */
  body: Buffer | Readable;
  /** The peer that answered (the link's address). */
  endpoint: string;
}

/** What the transport needs of a link (PeerLink; a double in tests). */
export interface TransportLink {
  readonly address: string;
  call(request: Envelope, signal: AbortSignal, compression: CompressionSetting | undefined, observer: Pick<LinkCall, 'batched'>): Promise<Envelope>;
  openStream(service: string): grpc.ClientDuplexStream<Frame, Frame>;
}

/**
 * Send one try of `call` on `link` from `source` (PeerLink.send); rejects with a MeshError naming the
 * call's service, or with the signal's reason when the try is aborted.
 */
export function sendCall(link: TransportLink, source: string, call: LinkCall): Promise<LinkAnswer> {
  const request = requestEnvelope(source, call);
  return call.body.kind === 'stream' || call.expectStream ? sendOnStream(link, call, request) : sendOnLink(link, call, request);
}

const LANES: Readonly<Record<LaneName, Priority>> = { high: Priority.HIGH, medium: Priority.MEDIUM, low: Priority.LOW };

function requestEnvelope(source: string, call: LinkCall): Envelope {
  const trace = call.trace;
  const envelope: Envelope = {
    id: newMessageId(),
    type: MessageType.REQUEST,
    timestampMs: Date.now(),
    source,
    destination: call.service,
    priority: LANES[call.lane],
    deadlineMs: call.budgetMs,
    headers: trace ? withTraceHeaders(call.headers, trace) : call.headers as Header[],
    payload: call.body.kind === 'inline' ? call.body.bytes : undefined,
    http: { method: call.method, path: call.path, authority: call.authority },
  };
  if (trace) envelope.trace = trace;
  const delivery = call.delivery;
  if (delivery) {
    envelope.messageId = delivery.messageId;
    envelope.attempt = delivery.attempt;
    if (delivery.topic) envelope.topic = delivery.topic;
  }
  return envelope;
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

async function sendOnLink(link: TransportLink, call: LinkCall, request: Envelope): Promise<LinkAnswer> {
  const response = await link.call(request, call.trySignal, call.compression, call);
  const status = response.http?.status ?? 0;
  const headers = response.headers ?? [];
  const bodyStreamId = response.http?.bodyStreamId;
  if (!bodyStreamId) return { status, headers, body: asBuffer(response.payload ?? Buffer.alloc(0)), endpoint: link.address };
  // The answer was too large or open-ended to inline: pull its body over a Stream call.
  const pull: Envelope = { id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: request.source, http: { bodyStreamId } };
  const streamed = await streamCall(link.openStream(call.service), pull, null, { signal: call.trySignal, idleTimeoutMs: call.streamIdleMs, service: call.service });
  return { status, headers, body: streamed.body, endpoint: link.address };
}

async function sendOnStream(link: TransportLink, call: LinkCall, request: Envelope): Promise<LinkAnswer> {
  const body = call.body.kind === 'stream' ? call.body.stream : null;
  if (body) request.http = { ...request.http, bodyFollows: true };
  const streamed = await streamCall(link.openStream(call.service), request, body, { signal: call.trySignal, idleTimeoutMs: call.streamIdleMs, service: call.service });
  return { status: streamed.head.http?.status ?? 0, headers: streamed.head.headers ?? [], body: streamed.body, endpoint: link.address };
}

/** The error a try ends with when its signal aborted: the signal's reason, made once by whoever aborted it. */
export function abortReason(signal: AbortSignal, service: string | undefined): MeshError {
  return signal.reason instanceof MeshError ? signal.reason : new MeshError('CLIENT_CLOSED', 'call cancelled', service === undefined ? undefined : { service });
}
