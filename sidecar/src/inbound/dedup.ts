// The receiving end of durable messages: a redelivery of a message the app has already answered
// never reaches the app again. Wraps the handler that talks to the app (AppForwarder); requests that
// are not durable messages (no message id) pass straight through.
//
//   arrives → seen before? answer from the record (a duplicate, dropped)
//           → the same message already with the app? wait for that answer (never run it twice at once)
//           → else hand it to the app; on a final answer, record it on disk, then answer the sender.
//
// The answer is the acknowledgement: the sender marks the message delivered only when it arrives,
// and it is sent only after the record is on disk. The one gap left is a kill of this sidecar after
// the app answered and before the record was written; the app sees the message id on every delivery
// (mcp-mesh-message-id, Idempotency-Key) to close that gap itself if it must.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { MeshError } from '../errors/mesh-error.ts';
import { headerValue } from '../http/headers.ts';
import { asBuffer, MessageType, type Envelope } from '../mcp/codec.ts';
import { newMessageId } from '../mcp/ids.ts';
import type { CallOrigin, InboundHandler, InboundResponse } from '../mcp/server.ts';
import { toStorageProblem, type MessageStore, type SeenRecord, type StoredResponse } from '../async/types.ts';
import { isFinalAnswer } from '../async/outcome.ts';

export interface DedupOptions {
  /** The store (opened on first use), or why there is none (the data directory cannot be used). */
  store: () => Promise<MessageStore | MeshError> | MessageStore | MeshError;
  logger: Logger;
  /** A redelivery was answered from the record. */
  onDuplicate: (source: string) => void;
}

export class DedupingHandler implements InboundHandler {
  readonly #app: InboundHandler;
  readonly #options: DedupOptions;
  /** Messages with the app right now, by dedup key. */
  readonly #running = new Map<string, Promise<Envelope>>();

  constructor(app: InboundHandler, options: DedupOptions) {
    this.#app = app;
    this.#options = options;
  }

  unary(request: Envelope, signal: AbortSignal, origin?: CallOrigin): Promise<Envelope> {
    if (!request.messageId) return this.#app.unary(request, signal, origin);
    return this.#deliver(request, origin);
  }

  stream(head: Envelope, body: Readable | Buffer | null, signal: AbortSignal): Promise<InboundResponse> {
    // Durable messages are always sent inline on the link (their bodies are bounded by storage.maxMessageBytes).
    if (head.messageId) return Promise.reject(new MeshError('PROTOCOL_ERROR', 'a durable message must be sent on the link, not as a stream'));
    return this.#app.stream(head, body, signal);
  }

  pull(bodyStreamId: string, origin?: CallOrigin): AsyncIterable<Uint8Array> | undefined {
    return this.#app.pull(bodyStreamId, origin);
  }

  async #deliver(request: Envelope, origin: CallOrigin | undefined): Promise<Envelope> {
    const store = await this.#options.store();
    // Without the record a redelivery could reach the app twice: refuse, and the message waits safely
    // in the sender's outbox until this sidecar can keep its promise again.
    if (store instanceof MeshError) throw store;
    const key = dedupKey(request);
    const running = this.#running.get(key);
    if (running) {
      this.#options.onDuplicate(request.source ?? '');
      return answerTo(request, await running);
    }
    // Once handed to the app, a durable message is carried through even if the sender gives up (its
    // attempt timed out, its link broke, it is shutting down): the answer is recorded, and the
    // redelivery that follows is answered from the record instead of running the work twice.
    const work = this.#firstDelivery(store, key, carriedThrough(request), NEVER, origin);
    this.#running.set(key, work);
    try {
      return await work;
    } finally {
      this.#running.delete(key);
    }
  }

  async #firstDelivery(store: MessageStore, key: string, request: Envelope, signal: AbortSignal, origin: CallOrigin | undefined): Promise<Envelope> {
    const seen = await store.seen(key).catch((err: unknown) => { throw toStorageProblem(err); });
    if (seen) {
      this.#options.onDuplicate(request.source ?? '');
      this.#options.logger.debug({ messageId: request.messageId, attempt: request.attempt }, 'duplicate delivery answered from the record');
      return recordedAnswer(request, seen.response);
    }
    const response = await this.#app.unary(request, signal, origin);
    const status = response.http?.status ?? 0;
    if (isFinalAnswer(status)) {
      const record: SeenRecord = { key, messageId: request.messageId!, at: Date.now(), response: storedAnswer(response) };
      await store.remember(record).catch((err: unknown) => {
        // The app has run it: acknowledge anyway, so the sender does not send it again (a refusal
        // here would make the sender redeliver, and the app run it a second time for certain).
        this.#options.logger.error({ code: 'STORAGE_UNAVAILABLE', messageId: request.messageId, err: String(err) }, 'could not record a delivered message; a redelivery would reach the app again');
      });
    }
    return response;
  }
}

/** A signal that never aborts: see #deliver. */
const NEVER = new AbortController().signal;

/** Time a durable message's app call gets beyond the sender's deadline, to finish and be recorded. */
export const CARRY_THROUGH_MS = 60_000;

function carriedThrough(request: Envelope): Envelope {
  return request.deadlineMs ? { ...request, deadlineMs: request.deadlineMs + CARRY_THROUGH_MS } : request;
}

/**
 * One record per calling service and message id; or, when the caller set its own Idempotency-Key,
 * per calling service, key, method, path and topic (the same key on another route or topic is
 * another request, not a duplicate).
 */
function dedupKey(request: Envelope): string {
  const idempotencyKey = request.headers ? headerValue(request.headers, 'idempotency-key')?.trim() : undefined;
  if (!idempotencyKey) return `${request.source ?? ''}|id|${request.messageId}`;
  return `${request.source ?? ''}|key|${idempotencyKey}|${request.http?.method ?? ''} ${request.http?.path ?? ''}|${request.topic ?? ''}`;
}

function storedAnswer(response: Envelope): StoredResponse {
  // A parked (large or streamed) body is not kept: a duplicate gets the status and headers only.
  const inline = response.http?.bodyStreamId ? Buffer.alloc(0) : asBuffer(response.payload ?? Buffer.alloc(0));
  return { status: response.http?.status ?? 0, headers: response.headers ?? [], body: inline };
}

function recordedAnswer(request: Envelope, response: StoredResponse): Envelope {
  return {
    id: newMessageId(), type: MessageType.RESPONSE, timestampMs: Date.now(), correlationId: request.id, priority: request.priority,
    headers: [...response.headers, { name: 'mcp-mesh-duplicate', value: 'true' }], payload: response.body, http: { status: response.status },
  };
}

/** The answer of the delivery already running, readdressed to this one. */
function answerTo(request: Envelope, response: Envelope): Envelope {
  if (response.http?.bodyStreamId) return recordedAnswer(request, storedAnswer(response));
  return { ...response, id: newMessageId(), correlationId: request.id, headers: [...(response.headers ?? []), { name: 'mcp-mesh-duplicate', value: 'true' }] };
}
