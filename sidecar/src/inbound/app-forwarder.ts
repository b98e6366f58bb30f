// Hands calls that arrived from peer sidecars to the local app through one undici Pool
// (keep-alive, bounded connections) and turns the app's answers into MCP responses.
import { PassThrough, type Readable } from 'node:stream';
import { Pool, errors as undiciErrors } from 'undici';
import type { Logger } from 'pino';
import { MeshError } from '../errors/mesh-error.ts';
import { headerValue, peerHeadersForApp, SOURCE_HEADER } from '../http/headers.ts';
import { asBuffer, MessageType, type Envelope, type Header } from '../mcp/codec.ts';
import { newBodyStreamId, newMessageId } from '../mcp/ids.ts';
import { sameOrigin, type CallOrigin, type InboundHandler, type InboundResponse } from '../mcp/server.ts';
import type { CallObserver } from '../telemetry/observer.ts';
import { MAX_APP_ANSWER_HEAD_BYTES, requestApp, type AppAnswer, type ReadWhole } from './app-request.ts';
import { splitServiceName } from '../discovery/resolver.ts';

export interface AppForwarderOptions {
  host: string;
  port: number;
  connections: number;
  /** Response bodies up to this size (with a known length) travel inline in the link. */
  inlineBodyBytes: number;
  connectTimeoutMs: number;
  /** How long a parked response body waits for the caller to pull it. */
  parkTimeoutMs: number;
  logger: Logger;
  /** This sidecar's service, "name.namespace" (the called one), for telemetry. */
  service: string;
  observer: CallObserver;
}

interface ParkedBody {
  body: Readable;
  timer: NodeJS.Timeout;
  /** The caller whose call produced it: the only one that may pull it. */
  owner: CallOrigin | undefined;
}

/**
 * A durable message carries its id to the app, so the app can make even the one case the mesh cannot
 * close (this sidecar killed between the app's answer and its record of it) exactly-once: the id in
 * `mcp-mesh-message-id`, and in `Idempotency-Key` unless the caller set one of its own.
 */
function deliveryHeaders(request: Envelope): { name: string; value: string }[] {
  const headers = [{ name: 'mcp-mesh-message-id', value: request.messageId! }];
  if (request.topic) headers.push({ name: 'mcp-mesh-topic', value: request.topic });
  if (!request.headers?.some((h) => h.name === 'idempotency-key')) headers.push({ name: 'idempotency-key', value: request.messageId! });
  return headers;
}

/** A Stream call's answer always streams (SSE, large bodies): never read whole here. */
const streamAlways: ReadWhole = () => false;

function statusOfEnvelope(response: Envelope): number {
  return response.http?.status ?? 0;
}

export class AppForwarder implements InboundHandler {
  readonly #pool: Pool;
  readonly #options: AppForwarderOptions;
  readonly #parked = new Map<string, ParkedBody>();

  constructor(options: AppForwarderOptions) {
    this.#options = options;
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    this.#pool = new Pool(`http://${host}:${options.port}`, {
      connections: options.connections,
      connectTimeout: options.connectTimeoutMs,
      // The mesh enforces deadlines itself; the pool must not cut long streams.
      headersTimeout: 0,
      maxHeaderSize: MAX_APP_ANSWER_HEAD_BYTES,
      bodyTimeout: 0,
    });
  }

  async unary(request: Envelope, signal: AbortSignal, origin?: CallOrigin): Promise<Envelope> {
    const payload = request.payload && request.payload.byteLength > 0 ? asBuffer(request.payload) : null;
    const bodiless = request.http?.method === 'HEAD';
    const inlineBodyBytes = this.#options.inlineBodyBytes;
    // Read whole: an answer with no body, or one whose length is known and small enough to go inline.
    const readWhole = (status: number, headers: readonly Header[]) => {
      if (bodiless || status === 204 || status === 304) return true;
      for (const h of headers) if (h.name === 'content-length') return Number(h.value) <= inlineBodyBytes;
      return false;
    };
    return this.#observed(request, signal, statusOfEnvelope, async (callSignal, traceHeaders) => {
      const res = await this.#requestApp(request, payload, callSignal, traceHeaders, readWhole);
      const headers = res.headers;
      if (Buffer.isBuffer(res.body)) return responseEnvelope(request, res.statusCode, headers, res.body, undefined);
      // No length (chunked): a short answer is usually complete already; inline it if so. An event
      // stream is never waited for.
      const length = headerValue(headers, 'content-length');
      const eventStream = (headerValue(headers, 'content-type') ?? '').includes('text/event-stream');
      const taken = length === undefined && !eventStream ? await takeIfComplete(res.body, inlineBodyBytes) : { rest: res.body };
      if ('bytes' in taken) return responseEnvelope(request, res.statusCode, headers, taken.bytes, undefined);
      return responseEnvelope(request, res.statusCode, headers, undefined, this.#park(taken.rest, origin));
    });
  }

  async stream(head: Envelope, body: Readable | Buffer | null, signal: AbortSignal): Promise<InboundResponse> {
    return this.#observed(head, signal, (response) => statusOfEnvelope(response.head), async (callSignal, traceHeaders) => {
      const res = await this.#requestApp(head, body, callSignal, traceHeaders, streamAlways);
      return { head: responseEnvelope(head, res.statusCode, res.headers, undefined, undefined), body: res.body as Readable };
    });
  }

  pull(bodyStreamId: string, origin?: CallOrigin): AsyncIterable<Uint8Array> | undefined {
    const parked = this.#parked.get(bodyStreamId);
    if (!parked) return undefined;
    // Another caller (identity, or connection) holding the id is refused; the body waits for its owner.
    if (!sameOrigin(parked.owner, origin)) throw new MeshError('BODY_PULL_DENIED', 'this parked response body belongs to another caller');
    this.#parked.delete(bodyStreamId);
    clearTimeout(parked.timer);
    return parked.body;
  }

  async close(): Promise<void> {
    for (const parked of this.#parked.values()) { clearTimeout(parked.timer); parked.body.destroy(); }
    this.#parked.clear();
    await this.#pool.destroy();
  }

  /**
   * Keep an app's response body unread (so the app is held back by TCP) until `owner` pulls it, by
   * an id nobody can guess (ids.ts newBodyStreamId).
   */
  #park(body: Readable, owner: CallOrigin | undefined): string {
    const id = newBodyStreamId();
    const timer = setTimeout(() => {
      this.#parked.delete(id);
      body.destroy();
      this.#options.logger.warn({ bodyStreamId: id }, 'a parked response body was never pulled; dropped');
    }, this.#options.parkTimeoutMs);
    timer.unref();
    this.#parked.set(id, { body, timer, owner });
    return id;
  }

  /**
   * Run `work`, observed (traced, counted) as one inbound call with one call to the app. The caller's
   * deadline and cancel signal are watched by the request to the app itself (app-request.ts).
   */
  async #observed<T>(request: Envelope, signal: AbortSignal, statusOf: (answer: T) => number,
    work: (signal: AbortSignal, traceHeaders: readonly Header[]) => Promise<T>): Promise<T> {
    const inbound = this.#options.observer.inbound({
      service: this.#options.service, source: request.source ?? '', method: request.http?.method ?? '', path: request.http?.path ?? '',
      headers: request.headers ?? [], trace: request.trace ?? undefined, messageId: request.messageId || undefined,
    });
    const appCall = inbound.appCall();
    try {
      const answer = await work(signal, appCall.headers);
      const outcome = { status: statusOf(answer) };
      appCall.end(outcome);
      inbound.end(outcome);
      return answer;
    } catch (err) {
      const error = this.#classify(err, signal);
      const outcome = { status: error.status, code: error.code, message: error.message };
      appCall.end(outcome);
      inbound.end(outcome);
      throw error;
    }
  }

  #requestApp(request: Envelope, body: Buffer | Readable | null, signal: AbortSignal, traceHeaders: readonly Header[], readWhole: ReadWhole): Promise<AppAnswer> {
    const http = request.http;
    if (!http?.method || !http.path) throw new MeshError('PROTOCOL_ERROR', 'REQUEST without method or path');
    const extra: Header[] = http.authority ? [{ name: 'host', value: http.authority }] : [];
    extra.push({ name: SOURCE_HEADER, value: serviceName(request.source) });
    if (request.messageId) extra.push(...deliveryHeaders(request));
    // A traced call hands the app this sidecar's span as its parent, in place of the caller's.
    for (const h of traceHeaders) extra.push(h);
    const headers = peerHeadersForApp(request.headers, extra, traceHeaders.length > 0);
    return requestApp(this.#pool, { method: http.method, path: http.path, headers, body, signal, deadlineMs: request.deadlineMs ?? 0 }, readWhole);
  }

  #classify(err: unknown, signal: AbortSignal): MeshError {
    if (err instanceof MeshError) return err;
    if (signal.aborted && signal.reason instanceof MeshError) return signal.reason;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'UND_ERR_CONNECT_TIMEOUT' || err instanceof undiciErrors.ConnectTimeoutError) {
      return new MeshError('APP_UNAVAILABLE', `the app at ${this.#options.host}:${this.#options.port} refused the connection (${code})`);
    }
    if (err instanceof undiciErrors.SocketError || code === 'ECONNRESET' || code === 'EPIPE') {
      return new MeshError('APP_RESET', `the app closed the connection: ${(err as Error).message}`);
    }
    if (err instanceof undiciErrors.HTTPParserError || err instanceof undiciErrors.ResponseContentLengthMismatchError) {
      return new MeshError('APP_RESET', `the app's answer is not valid HTTP: ${(err as Error).message}`);
    }
    return new MeshError('INTERNAL', `calling the app failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The whole body, if it ends within `limit` bytes by the end of the current event-loop turn — undici
 * parses a short answer that arrived in one read at once, so no real waiting is involved; otherwise
 * a stream that replays what was read and then the rest, for the caller to pull.
 */
export function takeIfComplete(body: Readable, limit: number): Promise<{ bytes: Buffer } | { rest: Readable }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const stop = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onEnd);
      clearImmediate(turn);
    };
    const streamOn = () => {
      if (settled) return;
      settled = true;
      stop();
      body.pause();
      const rest = new PassThrough();
      for (const chunk of chunks) rest.write(chunk);
      body.on('error', (err) => rest.destroy(err));
      rest.on('close', () => { if (!body.readableEnded) body.destroy(); });
      body.pipe(rest);
      resolve({ rest });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.byteLength;
      if (size > limit) streamOn();
    };
    const onEnd = (err?: Error) => {
      if (settled) return;
      settled = true;
      stop();
      // Nothing has gone to the caller yet, so a failing app is still a clean, coded error (APP_RESET).
      if (err) reject(err);
      else resolve({ bytes: Buffer.concat(chunks) });
    };
    const turn = setImmediate(streamOn);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onEnd);
  });
}

function serviceName(source: string | undefined): string {
  // Sources travel as "service.namespace"; apps see the bare service name, as documented.
  return splitServiceName(source ?? '')[0];
}

function responseEnvelope(request: Envelope, status: number, headers: Envelope['headers'], payload: Buffer | undefined, bodyStreamId: string | undefined): Envelope {
  return {
    id: newMessageId(),
    type: MessageType.RESPONSE,
    timestampMs: Date.now(),
    correlationId: request.id,
    priority: request.priority,
    headers,
    payload,
    http: { status, bodyStreamId },
  };
}
