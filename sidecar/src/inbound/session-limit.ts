// The limit on MCP sessions bound to this replica (`limits.maxSessions`), enforced by the sidecar next
// to the MCP server, which is the one that sees its sessions begin and end. An MCP server keeps state
// per session; without a bound, a client that opens sessions in a loop exhausts it.
//
// What counts as a bound session, seen from the answers the app gives:
//  - Streamable HTTP: an answer to a request without `Mcp-Session-Id` that hands one out opens a
//    session; it ends with a DELETE of it (2xx), with the app answering 404 for it (the app dropped
//    it), or after `limits.sessionIdleTimeout` with no request of it in flight or arriving;
//  - HTTP+SSE (2024-11-05): an event stream answered to a GET without a session is a session for as
//    long as the stream stays open.
// The app decides when a session starts, so the check comes with its answer: over the limit, the
// sidecar closes the session it just opened (a DELETE of it, or the stream cut) and refuses the call
// with 503 SESSION_LIMIT, which the caller's sidecar may retry on another replica.
import { finished, Readable } from 'node:stream';
import type { Logger } from 'pino';
import { findSessionParam, SESSION_HEADER } from '../affinity/mcp-session.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { headerValue } from '../http/headers.ts';
import { MessageType, type Envelope } from '../mcp/codec.ts';
import { newMessageId } from '../mcp/ids.ts';
import type { CallOrigin, InboundHandler, InboundResponse } from '../mcp/server.ts';

/** How long the app gets to drop a session the limit refused. */
const RELEASE_TIMEOUT_MS = 5000;
/** A streamed answer that no caller pulled within this long is gone (the app forwarder drops it sooner). */
const UNPULLED_MS = 60_000;

interface Session {
  lastSeenMs: number;
  /** Requests of it with the app, and open streams of it. */
  active: number;
  /** An HTTP+SSE session: it lives exactly as long as its stream. */
  streamBound: boolean;
}

/** The sessions this replica holds, with idle expiry done lazily (no timers). */
export class SessionTable {
  readonly #sessions = new Map<string, Session>();
  readonly #max: number;
  readonly #idleMs: number;
  readonly #now: () => number;

  /** `max` 0: no limit (sessions are still counted). */
  constructor(max: number, idleMs: number, now: () => number = Date.now) {
    this.#max = max;
    this.#idleMs = idleMs;
    this.#now = now;
  }

  get limit(): number {
    return this.#max;
  }

  /** Sessions held now (idle ones past their timeout are dropped first). */
  get size(): number {
    this.sweep();
    return this.#sessions.size;
  }

  has(id: string): boolean {
    return this.#sessions.has(id);
  }

  /** Whether one more session would go over the limit. */
  full(): boolean {
    if (this.#max === 0 || this.#sessions.size < this.#max) return false;
    this.sweep();
    return this.#sessions.size >= this.#max;
  }

  /** A new session; `active` when its answer is still streaming. */
  open(id: string, options: { active: boolean; streamBound?: boolean }): void {
    this.#sessions.set(id, { lastSeenMs: this.#now(), active: options.active ? 1 : 0, streamBound: options.streamBound ?? false });
  }

  /** A request of a known session went to the app. False when the session is not held here. */
  begin(id: string): boolean {
    const session = this.#sessions.get(id);
    if (!session) return false;
    session.active++;
    session.lastSeenMs = this.#now();
    return true;
  }

  /** A request (or stream) of the session is over. */
  end(id: string): void {
    const session = this.#sessions.get(id);
    if (!session) return;
    if (session.streamBound) { this.#sessions.delete(id); return; }
    session.active = Math.max(0, session.active - 1);
    session.lastSeenMs = this.#now();
  }

  close(id: string): void {
    this.#sessions.delete(id);
  }

  /** Drop the sessions idle for longer than the timeout. */
  sweep(): void {
    const before = this.#now() - this.#idleMs;
    for (const [id, session] of this.#sessions) {
      if (session.active === 0 && session.lastSeenMs <= before) this.#sessions.delete(id);
    }
  }
}

export interface SessionLimitOptions {
  table: SessionTable;
  /** This sidecar's service, "name.namespace", for the error message. */
  service: string;
  logger: Logger;
  /** A new session was refused (metrics). */
  onRefused: () => void;
}

/** The session a request names: its Mcp-Session-Id header, or the HTTP+SSE `sessionId` parameter. */
function requestSession(request: Envelope): string | undefined {
  const header = headerValue(request.headers, SESSION_HEADER);
  if (header) return header;
  return findSessionParam(request.http?.path ?? '')?.value || undefined;
}

/** What an answer means for the sessions: a session it opens, if any. */
function openedSession(request: Envelope, response: Envelope, streaming: boolean): { id: string; streamBound: boolean } | undefined {
  const handedOut = headerValue(response.headers, SESSION_HEADER);
  if (handedOut) return { id: handedOut, streamBound: false };
  const status = response.http?.status ?? 0;
  const eventStream = (headerValue(response.headers, 'content-type') ?? '').includes('text/event-stream');
  // The HTTP+SSE transport: the stream is the session; it has no id until its first event, and needs none here.
  if (streaming && eventStream && request.http?.method === 'GET' && status >= 200 && status < 300) return { id: `stream:${request.id}`, streamBound: true };
  return undefined;
}

export class SessionLimitingHandler implements InboundHandler {
  readonly #next: InboundHandler;
  readonly #options: SessionLimitOptions;
  /** Streamed answers parked for a pull that end a session's request when they end. */
  readonly #awaitingPull = new Map<string, { session: string; sinceMs: number }>();

  constructor(next: InboundHandler, options: SessionLimitOptions) {
    this.#next = next;
    this.#options = options;
  }

  async unary(request: Envelope, signal: AbortSignal, origin?: CallOrigin): Promise<Envelope> {
    const named = requestSession(request);
    const known = named !== undefined && this.#options.table.begin(named);
    let response: Envelope;
    try {
      response = await this.#next.unary(request, signal, origin);
    } catch (err) {
      if (known) this.#options.table.end(named);
      throw err;
    }
    const parked = response.http?.bodyStreamId || undefined;
    if (known) {
      if (this.#settleKnown(request, named, response)) return response;
      if (parked) this.#awaitPull(parked, named);
      else this.#options.table.end(named);
      return response;
    }
    if (named !== undefined) return response; // a session this replica does not hold (the app says so)
    const opened = openedSession(request, response, parked !== undefined);
    if (!opened || this.#options.table.has(opened.id)) return response;
    if (this.#options.table.full()) {
      if (parked) destroy(this.#next.pull(parked, origin));
      throw await this.#refuse(request, opened);
    }
    this.#options.table.open(opened.id, { active: parked !== undefined, streamBound: opened.streamBound });
    if (parked) this.#awaitPull(parked, opened.id);
    return response;
  }

  async stream(head: Envelope, body: Readable | Buffer | null, signal: AbortSignal): Promise<InboundResponse> {
    const named = requestSession(head);
    const known = named !== undefined && this.#options.table.begin(named);
    let response: InboundResponse;
    try {
      response = await this.#next.stream(head, body, signal);
    } catch (err) {
      if (known) this.#options.table.end(named);
      throw err;
    }
    if (known) {
      if (this.#settleKnown(head, named, response.head)) return response;
      return { head: response.head, body: this.#endsSession(response.body, named) };
    }
    if (named !== undefined) return response;
    const opened = openedSession(head, response.head, response.body !== null);
    if (!opened || this.#options.table.has(opened.id)) return response;
    if (this.#options.table.full()) {
      destroy(response.body);
      throw await this.#refuse(head, opened);
    }
    this.#options.table.open(opened.id, { active: response.body !== null, streamBound: opened.streamBound });
    return { head: response.head, body: this.#endsSession(response.body, opened.id) };
  }

  pull(bodyStreamId: string, origin?: CallOrigin): AsyncIterable<Uint8Array> | undefined {
    const body = this.#next.pull(bodyStreamId, origin); // throws for another caller: its session waits on
    const waiting = this.#awaitingPull.get(bodyStreamId);
    if (!waiting) return body;
    this.#awaitingPull.delete(bodyStreamId);
    if (!body) { this.#options.table.end(waiting.session); return undefined; }
    return this.#endsSession(body, waiting.session) ?? undefined;
  }

  /** A request of a held session that closes it (true), or one that leaves it open (false). */
  #settleKnown(request: Envelope, session: string, response: Envelope): boolean {
    const status = response.http?.status ?? 0;
    const deleted = request.http?.method === 'DELETE' && status >= 200 && status < 300;
    if (!deleted && status !== 404) return false;
    if (response.http?.bodyStreamId) this.#awaitPull(response.http.bodyStreamId, session);
    this.#options.table.close(session);
    return true;
  }

  /** The session's request is over when the streamed body ends, however it ends. */
  #endsSession(body: AsyncIterable<Uint8Array> | null, session: string): AsyncIterable<Uint8Array> | null {
    const table = this.#options.table;
    if (body === null) { table.end(session); return null; }
    // The body itself goes on (not a wrapper): whoever streams it destroys it to cut the app's stream.
    if (body instanceof Readable) { finished(body, () => table.end(session)); return body; }
    return (async function* () {
      try { yield* body; } finally { table.end(session); }
    })();
  }

  #awaitPull(bodyStreamId: string, session: string): void {
    const now = Date.now();
    // An answer never pulled is dropped by the app forwarder; its session must not stay active for ever.
    for (const [id, waiting] of this.#awaitingPull) {
      if (now - waiting.sinceMs < UNPULLED_MS) break; // in insertion order: the rest are younger
      this.#awaitingPull.delete(id);
      this.#options.table.end(waiting.session);
    }
    this.#awaitingPull.set(bodyStreamId, { session, sinceMs: now });
  }

  /** Close at the app the session it just opened, and the error that refuses the call. */
  async #refuse(request: Envelope, opened: { id: string; streamBound: boolean }): Promise<MeshError> {
    const { table, service, logger } = this.#options;
    this.#options.onRefused();
    if (!opened.streamBound) await this.#release(request, opened.id);
    logger.warn({ code: 'SESSION_LIMIT', service, source: request.source, sessions: table.size, limit: table.limit }, 'a new MCP session was refused: this replica holds limits.maxSessions sessions');
    return new MeshError('SESSION_LIMIT', `${service} holds ${table.limit} MCP sessions, the most limits.maxSessions allows; the session the app had just opened was closed again`, { service });
  }

  /** DELETE the refused Streamable HTTP session at the app, as a client ending it would. */
  async #release(request: Envelope, session: string): Promise<void> {
    const path = request.http?.path ?? '/';
    const deleteRequest: Envelope = {
      id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: request.source,
      deadlineMs: RELEASE_TIMEOUT_MS, headers: [{ name: SESSION_HEADER, value: session }],
      http: { method: 'DELETE', path, authority: request.http?.authority },
    };
    try {
      const answer = await this.#next.unary(deleteRequest, AbortSignal.timeout(RELEASE_TIMEOUT_MS));
      if (answer.http?.bodyStreamId) destroy(this.#next.pull(answer.http.bodyStreamId));
    } catch (err) {
      this.#options.logger.warn({ code: 'SESSION_LIMIT', err: (err as Error).message }, 'the app did not take the DELETE of a refused MCP session');
    }
  }
}

/** Let go of a body nobody will read (a Readable is destroyed, so the app's stream closes). */
function destroy(body: AsyncIterable<Uint8Array> | null | undefined): void {
  if (!body) return;
  const readable = body as Partial<Readable>;
  if (typeof readable.destroy === 'function') {
    readable.on?.('error', () => {}); // destroying an app's body errors it (undici: aborted); nobody else listens any more
    readable.destroy();
  }
  else void body[Symbol.asyncIterator]().return?.();
}
