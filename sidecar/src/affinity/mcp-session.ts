// MCP session affinity, learned from the traffic itself (no setting, no shared store):
//
//  - on the way back, a response that starts a session has its session id wrapped in an owner token
//    naming the replica that answered: the `Mcp-Session-Id` header (Streamable HTTP), or the
//    `sessionId` / `session_id` of the `endpoint` event that opens an HTTP+SSE stream;
//  - on the way out, a request carrying a token (header or query) is pinned to that replica, and the
//    original session id is put back before the app sees it.
//
// A request whose token does not verify is refused; one whose owner is gone gets 404, as the MCP
// specification asks, so the client starts a new session instead of being moved mid-session.
import { Transform, type Readable } from 'node:stream';
import type { Header } from '../mcp/codec.ts';
import { OwnerTokens, type SessionOwner } from './token.ts';

export const SESSION_HEADER = 'mcp-session-id';
const SESSION_PARAMS = ['sessionId', 'session_id'];

export type SessionRoute =
  | { kind: 'none' }
  | { kind: 'pinned'; owner: SessionOwner; headers: Header[]; path: string }
  | { kind: 'invalid'; reason: string };

/** What the request says about its session: nothing, a valid owner (request rewritten), or a bad token. */
export function routeSession(tokens: OwnerTokens, request: { headers: readonly Header[]; path: string }): SessionRoute {
  let owner: SessionOwner | undefined;
  let headers = request.headers as Header[];
  let path = request.path;

  const headerIndex = request.headers.findIndex((h) => h.name === SESSION_HEADER);
  const headerValue = headerIndex >= 0 ? request.headers[headerIndex]!.value : undefined;
  if (headerValue !== undefined && OwnerTokens.looksLikeToken(headerValue)) {
    owner = tokens.unwrap(headerValue);
    if (!owner) return { kind: 'invalid', reason: 'the Mcp-Session-Id token does not verify' };
    headers = request.headers.map((h, i) => (i === headerIndex ? { name: h.name, value: owner!.sessionId } : h));
  }

  const query = findSessionParam(request.path);
  if (query && OwnerTokens.looksLikeToken(query.value)) {
    const fromQuery = tokens.unwrap(query.value);
    if (!fromQuery) return { kind: 'invalid', reason: `the ${query.name} token does not verify` };
    if (owner && owner.address !== fromQuery.address) return { kind: 'invalid', reason: 'the header and query tokens name different owners' };
    owner = fromQuery;
    path = `${request.path.slice(0, query.start)}${encodeURIComponent(fromQuery.sessionId)}${request.path.slice(query.end)}`;
  }
  return owner ? { kind: 'pinned', owner, headers, path } : { kind: 'none' };
}

/** Where a session parameter's value sits in a path's query string (the value decoded; start and end of the raw one). */
export function findSessionParam(path: string): { name: string; value: string; start: number; end: number } | undefined {
  const q = path.indexOf('?');
  if (q < 0) return undefined;
  let start = q + 1;
  while (start < path.length) {
    let end = path.indexOf('&', start);
    if (end < 0) end = path.length;
    const eq = path.indexOf('=', start);
    if (eq > start && eq < end) {
      const name = path.slice(start, eq);
      if (SESSION_PARAMS.includes(name)) {
        const raw = path.slice(eq + 1, end);
        return { name, value: safeDecode(raw), start: eq + 1, end };
      }
    }
    start = end + 1;
  }
  return undefined;
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

export interface BoundResponse {
  headers: Header[];
  body: Buffer | Readable;
  /** A session was bound to its owner by this response (a new session id was wrapped). */
  bound: boolean;
}

/**
 * Wrap any session id the response hands out in an owner token for `ownerAddress`. The headers are
 * rewritten at once; an SSE body is rewritten as it streams past (only its first event can be the
 * `endpoint` event, so nothing after it is held back).
 */
export function bindResponse(tokens: OwnerTokens, ownerAddress: string, response: { headers: Header[]; body: Buffer | Readable }, requestHadSession: boolean): BoundResponse {
  let bound = false;
  // Most answers hand out no session: they pass without a copy of their headers.
  const handsOutSession = response.headers.some((h) => h.name === SESSION_HEADER);
  const headers = !handsOutSession ? response.headers : response.headers.map((h) => {
    if (h.name !== SESSION_HEADER || OwnerTokens.looksLikeToken(h.value)) return h;
    // Servers repeat the id on later answers too; only an answer to a request without one starts a session.
    if (!requestHadSession) bound = true;
    return { name: h.name, value: tokens.wrap({ address: ownerAddress, sessionId: h.value }) };
  });
  const contentType = headers.find((h) => h.name === 'content-type')?.value ?? '';
  if (Buffer.isBuffer(response.body) || !contentType.includes('text/event-stream')) return { headers, body: response.body, bound };
  const rewriter = new EndpointEventRewriter((sessionId) => tokens.wrap({ address: ownerAddress, sessionId }));
  response.body.on('error', (err) => rewriter.destroy(err));
  rewriter.on('close', () => { if (!(response.body as Readable).readableEnded) (response.body as Readable).destroy(); });
  return { headers, body: response.body.pipe(rewriter), bound };
}

/** Largest first event we wait for; an SSE stream whose first event is longer is not an MCP one. */
const MAX_FIRST_EVENT = 16 * 1024;

/**
 * Rewrites the session parameter in the `data:` URL of an `event: endpoint` that opens an HTTP+SSE
 * stream (2024-11-05 transport). Holds back only the bytes of the first event, then passes through.
 */
export class EndpointEventRewriter extends Transform {
  readonly #wrap: (sessionId: string) => string;
  #pending: Buffer | undefined = Buffer.alloc(0);
  /** Set (and 'bound' emitted) once the endpoint event was rewritten. */
  bound = false;

  constructor(wrap: (sessionId: string) => string) {
    super();
    this.#wrap = wrap;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    if (this.#pending === undefined) return done(null, chunk);
    const pending = Buffer.concat([this.#pending, chunk]);
    const end = firstEventEnd(pending);
    if (end < 0) {
      if (pending.length > MAX_FIRST_EVENT) { this.#pending = undefined; return done(null, pending); }
      this.#pending = pending;
      return done();
    }
    this.#pending = undefined;
    // Only the first event is decoded and re-encoded; the bytes after it pass as they came.
    const first = this.#rewrite(pending.subarray(0, end).toString('utf8'));
    done(null, Buffer.concat([Buffer.from(first, 'utf8'), pending.subarray(end)]));
  }

  override _flush(done: (err?: Error | null, data?: Buffer) => void): void {
    const rest = this.#pending;
    this.#pending = undefined;
    done(null, rest && rest.length > 0 ? rest : undefined);
  }

  #rewrite(event: string): string {
    const lines = event.split(/\r?\n/);
    if (!lines.some((l) => /^event:\s*endpoint\s*$/.test(l))) return event;
    const newline = event.includes('\r\n') ? '\r\n' : '\n';
    return lines.map((line) => {
      const match = /^data:( ?)(.*)$/.exec(line);
      if (!match) return line;
      const url = match[2]!;
      const param = findSessionParam(url.startsWith('/') || url.includes('?') ? url : `?${url}`);
      if (!param || OwnerTokens.looksLikeToken(param.value)) return line;
      const offset = url.startsWith('/') || url.includes('?') ? 0 : 1;
      this.bound = true;
      this.emit('bound');
      return `data:${match[1]}${url.slice(0, param.start - offset)}${encodeURIComponent(this.#wrap(param.value))}${url.slice(param.end - offset)}`;
    }).join(newline);
  }
}

/** Byte index just past the blank line that ends the first SSE event, or -1 if it has not arrived. */
function firstEventEnd(bytes: Buffer): number {
  const lf = bytes.indexOf('\n\n');
  const crlf = bytes.indexOf('\r\n\r\n');
  if (lf < 0 && crlf < 0) return -1;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 4;
  return lf + 2;
}
