// One request to the local app, on undici's dispatcher API directly. undici's `request()` would wrap
// every answer in an async resource, a header object and a body stream, even the small answers
// that are read whole at once (most of them): here the answer's head is turned straight into the
// end-to-end header list the envelope carries, and a small body is gathered into one Buffer. Only an
// answer that must stream (large, open-ended, SSE) gets a Readable, with flow control back to the
// app's socket (undici's pause and resume). The caller's cancel signal and deadline are watched here
// too, until the answer's head is in (or, read whole, its body): one listener and one timer a call.
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { Readable } from 'node:stream';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import { MeshError } from '../errors/mesh-error.ts';
import { endToEndRawResponseHeaders } from '../http/headers.ts';
import { deadlines, type Deadline } from '../resilience/deadline-timers.ts';
import type { Header } from '../mcp/codec.ts';

export interface AppRequest {
  method: string;
  path: string;
  /** Flat [name, value, …]. */
  headers: string[];
  body: Buffer | Readable | null;
  /** The caller's cancel signal: the request fails with its reason. */
  signal: AbortSignal;
  /** The caller's deadline (ms left), 0 for none: past it the request fails with DEADLINE_EXCEEDED. */
  deadlineMs: number;
}

export interface AppAnswer {
  statusCode: number;
  /** End-to-end headers (hop-by-hop and mesh control headers dropped). */
  headers: Header[];
  /** The whole body when `readWhole` said so for this head, else the body as it streams. */
  body: Buffer | Readable;
}

/** Given the answer's head: read the body whole (true), or hand it on as a stream (false). */
export type ReadWhole = (statusCode: number, headers: readonly Header[]) => boolean;

/**
 * The largest answer head (status line and headers) taken from the app; the dispatcher is built
 * with it (app-forwarder.ts). A larger one fails the call with APP_RESET (docs/security.md, Limits).
 */
export const MAX_APP_ANSWER_HEAD_BYTES = 64 * 1024;

export function requestApp(dispatcher: Dispatcher, request: AppRequest, readWhole: ReadWhole): Promise<AppAnswer> {
  const invalid = notValidHttp(request);
  if (invalid) return Promise.reject(new MeshError('PROTOCOL_ERROR', `the call cannot be sent to the app: ${invalid}`));
  return new Promise((resolve, reject) => {
    const handler = new AnswerHandler(request.signal, request.deadlineMs, readWhole, resolve, reject);
    try {
      dispatcher.dispatch({ method: request.method as Dispatcher.HttpMethod, path: request.path, headers: request.headers, body: request.body }, handler);
    } catch (err) {
      handler.onError(err as Error);
    }
  });
}

/**
 * What in the request HTTP/1.1 cannot carry (a CR or LF in a header, a space in the path), checked
 * with Node's own header rules before undici sees it: the request comes from a peer's envelope and
 * the app must never get it. Checked here because undici's Pool, handed a request it refuses,
 * counts that connection as busy for good (undici 7): a few such calls would stall every later call
 * to the app. Headers undici treats specially are kept to what it accepts: one content-length, digits.
 */
function notValidHttp(request: AppRequest): string | undefined {
  if (!isHttpToken(request.method)) return `the method ${JSON.stringify(request.method)} is not an HTTP token`;
  if (!VALID_PATH.test(request.path)) return 'the path has characters HTTP does not allow (spaces, control characters)';
  const { headers } = request;
  let contentLengths = 0;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    if (!isHttpToken(name)) return `the header name ${JSON.stringify(name)} is not an HTTP token (a CR, LF, space or other separator in it)`;
    try {
      validateHeaderValue(name, value);
    } catch {
      return `the value of header ${name} has a character HTTP does not allow (CR, LF or another control character)`;
    }
    if (name.toLowerCase() === 'content-length' && (++contentLengths > 1 || !/^[0-9]+$/.test(value))) return 'the content-length header is repeated or not a number';
  }
  return undefined;
}

/** RFC 9110's token (header names, methods), by Node's own check. */
function isHttpToken(text: string): boolean {
  try {
    validateHeaderName(text);
    return true;
  } catch {
    return false;
  }
}

/** A path as undici takes it: visible characters only, no space or control character. */
const VALID_PATH = /^[\u0021-\u00ff]+$/;

/** An error undici reports, in mesh terms when it has one (else as it is, for the caller to classify). */
function appError(err: Error): Error {
  if (err instanceof undiciErrors.HeadersOverflowError) {
    return new MeshError('APP_RESET', `the app's answer head is larger than ${MAX_APP_ANSWER_HEAD_BYTES} bytes, the most the sidecar takes from an app`);
  }
  return err;
}

/** undici's handler for one request (the callbacks its HTTP/1.1 client calls, in this order). */
class AnswerHandler implements Dispatcher.DispatchHandler {
  readonly #signal: AbortSignal;
  readonly #readWhole: ReadWhole;
  #resolve: ((answer: AppAnswer) => void) | undefined;
  readonly #reject: (err: Error) => void;
  #abort: ((err?: Error) => void) | undefined;
  #reason: Error | undefined;
  #head: { statusCode: number; headers: Header[] } | undefined;
  /** Reading whole: the chunks so far. */
  #chunks: Buffer[] | undefined;
  /** Streaming: the body handed out. */
  #stream: Readable | undefined;
  #ended = false;
  #watching = false;
  readonly #deadline: Deadline | undefined;
  readonly #onAbort = (): void => this.#stop(this.#signal.reason instanceof Error ? this.#signal.reason : new undiciErrors.RequestAbortedError());

  constructor(signal: AbortSignal, deadlineMs: number, readWhole: ReadWhole, resolve: (answer: AppAnswer) => void, reject: (err: Error) => void) {
    this.#signal = signal;
    this.#readWhole = readWhole;
    this.#resolve = resolve;
    this.#reject = reject;
    if (signal.aborted) {
      this.#reason = signal.reason instanceof Error ? signal.reason : new undiciErrors.RequestAbortedError();
      return;
    }
    signal.addEventListener('abort', this.#onAbort, { once: true });
    this.#watching = true;
    if (deadlineMs > 0) {
      this.#deadline = deadlines.start(deadlineMs, () => this.#stop(new MeshError('DEADLINE_EXCEEDED', `the app did not answer within the caller's deadline (${deadlineMs} ms)`)));
    }
  }

  /** Cancelled or out of time before the answer was in: end the request (undici then calls onError). */
  #stop(reason: Error): void {
    this.#reason = reason;
    this.#done();
    this.#abort?.(reason);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.#reason) return abort(this.#reason);
    this.#abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx: informational, the real head follows
    const headers = endToEndRawResponseHeaders(rawHeaders);
    if (this.#readWhole(statusCode, headers)) {
      this.#head = { statusCode, headers };
      this.#chunks = [];
      return true;
    }
    // The head is in: from here the caller's side ends a streamed body (by destroying it).
    this.#done();
    const abort = this.#abort;
    const stream = new Readable({
      read: () => resume(),
      // The reader gave up before the end (a cancelled call, a parked body dropped): stop the app's answer.
      destroy: (err, callback) => {
        if (!this.#ended) abort?.(err ?? new undiciErrors.RequestAbortedError());
        callback(err);
      },
    });
    this.#stream = stream;
    this.#settle({ statusCode, headers, body: stream });
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#stream) return this.#stream.push(chunk);
    this.#chunks?.push(chunk);
    return true;
  }

  onComplete(): void {
    this.#ended = true;
    if (this.#stream) {
      this.#stream.push(null);
      this.#done();
      return;
    }
    const head = this.#head!;
    const chunks = this.#chunks!;
    this.#done();
    this.#settle({ statusCode: head.statusCode, headers: head.headers, body: Buffer.concat(chunks) });
  }

  onError(err: Error): void {
    this.#ended = true;
    this.#done();
    if (this.#resolve) {
      this.#resolve = undefined;
      this.#reject(this.#reason ?? appError(err));
    }
    this.#stream?.destroy(err);
  }

  #settle(answer: AppAnswer): void {
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.(answer);
  }

  /** Stop watching the caller's signal and deadline. */
  #done(): void {
    if (!this.#watching) return;
    this.#watching = false;
    this.#deadline?.cancel();
    this.#signal.removeEventListener('abort', this.#onAbort);
  }
}
