// The durable messages of async calls and pub/sub, as the outbox stores them and the mesh API shows
// them. Plain data: the store (store.ts) persists it, the dispatcher (dispatcher.ts) moves it along.
import { MeshError } from '../errors/mesh-error.ts';
import type { ErrorCode } from '../errors/codes.ts';
import type { Header } from '../mcp/codec.ts';

/**
 * queued → in-flight → delivered (the app answered 2xx/3xx)
 *                    → failed    (the app answered a final 4xx: retrying cannot help)
 *                    → queued again with a back-off (5xx, 408, 429, a mesh error) …
 *                    → dead      (out of attempts or too old: the dead-letter queue)
 * `in-flight` lives in memory only: after a restart every unfinished message is `queued`.
 */
export type MessageState = 'queued' | 'in-flight' | 'delivered' | 'failed' | 'dead';

export type PriorityName = 'high' | 'medium' | 'low';

/** The HTTP request a message delivers. */
export interface StoredRequest {
  method: string;
  /** Origin-form path with query string. */
  path: string;
  /** The Host the calling app used. */
  authority: string;
  headers: Header[];
  body: Buffer;
}

/** What the app answered (kept for GET /mesh/v1/messages/<id> until the retention passes). */
export interface StoredResponse {
  status: number;
  headers: Header[];
  body: Buffer;
}

/** Why the last attempt did not deliver: a mesh error code, or the app's status. */
export interface AttemptError {
  code: ErrorCode | 'APP_STATUS';
  message: string;
  status?: number;
}

export interface NewMessage {
  /** ULID, assigned by the sidecar that accepted the message. */
  id: string;
  /** Destination service and namespace. */
  service: string;
  namespace: string;
  /** Pub/sub: the topic this delivery belongs to, and the id of the publish that made it. */
  topic?: string;
  eventId?: string;
  /** Broadcast deliveries must reach this one replica (its inbound address); else unset. */
  endpoint?: string;
  priority: PriorityName;
  orderingKey?: string;
  request: StoredRequest;
  /** Unix ms. */
  createdAt: number;
}

export interface StoredMessage extends NewMessage {
  /** Order of acceptance in this store (ordering keys follow it). */
  seq: number;
  state: Exclude<MessageState, 'in-flight'>;
  /** Delivery attempts made so far. */
  attempts: number;
  /** Unix ms: not before this (back-off). */
  nextAttemptAt: number;
  /** Unix ms of the last change. */
  updatedAt: number;
  /** Unix ms of its latest replay from the dead letters, if any: async.maxAge counts from it, not createdAt. */
  replayedAt?: number;
  lastError?: AttemptError;
  response?: StoredResponse;
}

/** The receiving side's record of a message it handed to its app (duplicates are answered from it). */
export interface SeenRecord {
  /** The dedup key: "<source service>|<Idempotency-Key or message id>". */
  key: string;
  messageId: string;
  /** Unix ms. */
  at: number;
  response: StoredResponse;
}

/** The database file in the data directory. */
export const STORE_FILE = 'messages.db';

/** Thrown by the store; becomes a coded error (507 STORAGE_FULL, 503 STORAGE_UNAVAILABLE). */
export class StorageError extends Error {
  readonly code: 'STORAGE_FULL' | 'STORAGE_UNAVAILABLE';
  constructor(code: 'STORAGE_FULL' | 'STORAGE_UNAVAILABLE', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'StorageError';
  }
}

/** A stored message without its request and response bodies: what the dispatcher keeps in memory. */
export type MessageSummary = Omit<StoredMessage, 'request' | 'response'>;

/** The outcome of a delivery attempt, as written to the store. */
export interface Settlement {
  state: 'queued' | 'delivered' | 'failed' | 'dead';
  attempts: number;
  /** Unix ms; for `queued`, when to try again. */
  nextAttemptAt: number;
  lastError?: AttemptError;
  response?: StoredResponse;
}

export type StateCounts = Record<StoredMessage['state'], number>;

/**
 * The sidecar's durable store: its outbox (messages it accepted) and its record of messages it
 * received (dedup). Every write resolves once it is on disk (fsync); writes made at the same moment
 * share one commit. Every method rejects with StorageError when the disk fails. Timestamps, attempts
 * and statuses are stored as integers: fractional ones are rounded (one that is not finite is an Error).
 */
export interface MessageStore {
  /**
   * With a size limit, accept is refused (STORAGE_FULL) once the store is at about 90% of it: the
   * rest is kept for settle and remember, which only the limit itself stops, so that what was
   * accepted can still be delivered.
   */
  accept(messages: readonly NewMessage[]): Promise<void>;
  get(id: string): Promise<StoredMessage | undefined>;
  getMany(ids: readonly string[]): Promise<StoredMessage[]>;
  /** Every `queued` message, in acceptance order (seq): the dispatcher's load at start-up. */
  unfinished(): Promise<MessageSummary[]>;
  /** A final state (delivered, failed) drops the request body: get() then returns it empty. */
  settle(id: string, settlement: Settlement): Promise<void>;
  /**
   * Dead letters, oldest first; `after`: a message id, for paging. Their request bodies are not read:
   * request.body is always empty here (get() returns it).
   */
  deadLetters(options: { limit: number; after?: string }): Promise<StoredMessage[]>;
  /** dead → queued with attempts 0, no back-off and replayedAt = now; undefined if no such dead letter. */
  replay(id: string, now: number): Promise<MessageSummary | undefined>;
  replayAll(now: number): Promise<MessageSummary[]>;
  /** Delete a dead letter; false if there was none with that id. */
  deleteDead(id: string): Promise<boolean>;
  deleteAllDead(): Promise<number>;
  counts(): Promise<StateCounts>;
  /** Drop delivered and failed messages last updated before `before` (Unix ms); returns how many. */
  purgeFinished(before: number): Promise<number>;
  seen(key: string): Promise<SeenRecord | undefined>;
  remember(record: SeenRecord): Promise<void>;
  /** Drop seen records older than `before` (Unix ms); returns how many. */
  forgetSeen(before: number): Promise<number>;
  /**
   * `listener` is called once if the store becomes unusable for good while open (its worker crashed
   * or exited): every call rejects with STORAGE_UNAVAILABLE from then on. Never because of close().
   */
  onFailure(listener: (err: StorageError) => void): void;
  close(): Promise<void>;
}

/** Any failure of the store as the coded mesh error a caller answers with (507 or 503). */
export function toStorageProblem(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  if (err instanceof StorageError) return new MeshError(err.code, err.message, { cause: err });
  return new MeshError('STORAGE_UNAVAILABLE', `the data directory cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
