// The SQLite side of the message store (store.ts), run in a worker thread: DatabaseSync is
// synchronous and every commit waits for fsync, which must never hold up the sidecar's event loop.
// Requests arrive in batches on a MessagePort. Each time the worker wakes it takes every request
// already queued and runs them all in one transaction, so writes made at the same moment share one
// fsync (group commit); a savepoint per request keeps one failing request from failing the others.
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { isMainThread, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import type {
  AttemptError, MessageSummary, NewMessage, PriorityName, SeenRecord, Settlement, StateCounts, StoredMessage, StoredResponse,
} from './types.ts';
import { STORE_FILE } from './types.ts';

// --- The protocol between store.ts and this worker -------------------------------------------------

export interface WorkerInit {
  /** Absolute path of the data directory. */
  dir: string;
  maxBytes: number;
  /** Requests come in and replies go out on this port. */
  port: MessagePort;
}

/** A value as it crosses the thread boundary: structured clone turns every Buffer into a Uint8Array. */
export type Wire<T> = T extends Buffer ? Uint8Array
  : T extends readonly (infer U)[] ? readonly Wire<U>[]
  : T extends object ? { [K in keyof T]: Wire<T[K]> }
  : T;

export type Ops = ReturnType<typeof makeOps>;
export type OpName = keyof Ops;

export interface Request {
  id: number;
  /** 'crash': for tests only (SqliteMessageStore.failForTesting), the worker dies of an uncaught error. */
  op: OpName | 'close' | 'crash';
  args: unknown[];
}

export type WireError =
  | { kind: 'storage'; code: 'STORAGE_FULL' | 'STORAGE_UNAVAILABLE'; message: string }
  /** Not the disk's fault (a duplicate id, a bug): becomes a plain Error. */
  | { kind: 'error'; message: string };

export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'failed'; error: WireError }
  /** `commits`: transactions committed since the store opened (for tests and metrics). */
  | { type: 'replies'; commits: number; replies: Reply[] };

// --- Schema ----------------------------------------------------------------------------------------

/**
 * How an older database is brought up to date: UPGRADES[v - 1] takes schema version v to v + 1. A
 * new database gets SCHEMA, the latest, at once.
 */
const UPGRADES: readonly string[] = [
  // 2: the replay time. ALTER TABLE can only append it, after the bodies: in an upgraded database a
  // summary of a row written since then reads past its body (a new database has it in place).
  'ALTER TABLE outbox ADD COLUMN replayed_at INTEGER',
];
const SCHEMA_VERSION = UPGRADES.length + 1;

// seq is the rowid (AUTOINCREMENT: never reused, so it is the order of acceptance); id has its own
// unique index. Columns a summary needs come first and the bodies last: SQLite reads a row from its
// start, so summaries stop before a large body's overflow pages. replayed_at: the latest replay from
// the dead letters (maxAge counts from it); null if never replayed.
const SCHEMA = `
  CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'failed', 'dead')),
    priority TEXT NOT NULL,
    ordering_key TEXT,
    service TEXT NOT NULL,
    namespace TEXT NOT NULL,
    topic TEXT,
    event_id TEXT,
    endpoint TEXT,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    replayed_at INTEGER,
    last_error TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    authority TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    response_status INTEGER,
    response_headers TEXT,
    response_body BLOB
  ) STRICT;
  CREATE INDEX outbox_state_seq ON outbox (state, seq);
  CREATE INDEX outbox_state_updated ON outbox (state, updated_at);
  CREATE TABLE seen (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
  ) STRICT;
  CREATE INDEX seen_at ON seen (at);
`;

const SUMMARY_COLUMNS = `seq, id, state, priority, ordering_key, service, namespace, topic, event_id, endpoint,
  attempts, next_attempt_at, created_at, updated_at, replayed_at, last_error`;
const MESSAGE_COLUMNS = `${SUMMARY_COLUMNS}, method, path, authority, headers, body,
  response_status, response_headers, response_body`;
/** A message with an empty request body in place of the stored one, which is never read. */
const MESSAGE_COLUMNS_NO_BODY = `${SUMMARY_COLUMNS}, method, path, authority, headers, x'' AS body,
  response_status, response_headers, response_body`;

interface SummaryRow {
  seq: number;
  id: string;
  state: StoredMessage['state'];
  priority: PriorityName;
  ordering_key: string | null;
  service: string;
  namespace: string;
  topic: string | null;
  event_id: string | null;
  endpoint: string | null;
  attempts: number;
  next_attempt_at: number;
  created_at: number;
  updated_at: number;
  replayed_at: number | null;
  last_error: string | null;
}

interface MessageRow extends SummaryRow {
  method: string;
  path: string;
  authority: string;
  headers: string;
  body: Uint8Array;
  response_status: number | null;
  response_headers: string | null;
  response_body: Uint8Array | null;
}

interface SeenRow {
  key: string;
  message_id: string;
  at: number;
  status: number;
  headers: string;
  body: Uint8Array;
}

/** Headers are stored as JSON pairs: [["content-type","text/plain"], …]. */
type HeaderPairs = [string, string][];
const encodeHeaders = (headers: Wire<StoredResponse['headers']>) => JSON.stringify(headers.map((h) => [h.name, h.value]));
const decodeHeaders = (json: string) => (JSON.parse(json) as HeaderPairs).map(([name, value]) => ({ name, value }));

function toSummary(row: SummaryRow): MessageSummary {
  const m: MessageSummary = {
    id: row.id, seq: row.seq, state: row.state, priority: row.priority, service: row.service, namespace: row.namespace,
    attempts: row.attempts, nextAttemptAt: row.next_attempt_at, createdAt: row.created_at, updatedAt: row.updated_at,
  };
  // Optional fields stay absent rather than undefined, as the caller wrote them.
  if (row.topic !== null) m.topic = row.topic;
  if (row.event_id !== null) m.eventId = row.event_id;
  if (row.endpoint !== null) m.endpoint = row.endpoint;
  if (row.ordering_key !== null) m.orderingKey = row.ordering_key;
  if (row.replayed_at !== null) m.replayedAt = row.replayed_at;
  if (row.last_error !== null) m.lastError = JSON.parse(row.last_error) as AttemptError;
  return m;
}

function toMessage(row: MessageRow): Wire<StoredMessage> {
  const m: Wire<StoredMessage> = {
    ...toSummary(row),
    request: { method: row.method, path: row.path, authority: row.authority, headers: decodeHeaders(row.headers), body: row.body },
  };
  if (row.response_status !== null) {
    m.response = { status: row.response_status, headers: decodeHeaders(row.response_headers ?? '[]'), body: row.response_body ?? new Uint8Array() };
  }
  return m;
}

const SQLITE_CONSTRAINT_UNIQUE = 2067;

/**
 * A number for an INTEGER column, rounded: the tables are STRICT, and a fractional timestamp (a
 * back-off with jitter) must not fail the write. Not a finite number: the caller's bug, said plainly.
 */
function integer(name: string, value: number): number {
  const n = Math.round(value);
  if (!Number.isSafeInteger(n)) throw new TypeError(`${name} must be a finite number, got ${String(value)}`);
  return n;
}

/** The quota's headroom: accept stops at this share of maxBytes, so settles and dedup records still fit. */
const ACCEPT_SHARE = 0.9;

/** Thrown by accept when the database is at its headroom: a STORAGE_FULL (see classify). */
class AcceptRefused extends Error {}

/** A database size limit, in pages: the hard one (SQLite's max_page_count), and accept's (its headroom). */
interface Quota {
  maxPages: number;
  acceptPages: number;
}

/** The store's operations, on prepared statements (parsed once). Names match MessageStore's methods. */
function makeOps(db: DatabaseSync, quota: Quota | undefined) {
  const insert = db.prepare(`INSERT INTO outbox (id, state, priority, ordering_key, service, namespace, topic, event_id,
      endpoint, attempts, next_attempt_at, created_at, updated_at, method, path, authority, headers, body)
    VALUES ($id, 'queued', $priority, $orderingKey, $service, $namespace, $topic, $eventId,
      $endpoint, 0, $createdAt, $createdAt, $createdAt, $method, $path, $authority, $headers, $body)`);
  const byId = db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM outbox WHERE id = ?`);
  const queued = db.prepare(`SELECT ${SUMMARY_COLUMNS} FROM outbox WHERE state = 'queued' ORDER BY seq`);
  // Dead letters are listed without their request bodies (the API never shows them, and they can be large).
  const deadFirst = db.prepare(`SELECT ${MESSAGE_COLUMNS_NO_BODY} FROM outbox WHERE state = 'dead' ORDER BY seq LIMIT ?`);
  const deadAfter = db.prepare(`SELECT ${MESSAGE_COLUMNS_NO_BODY} FROM outbox
    WHERE state = 'dead' AND seq > (SELECT seq FROM outbox WHERE id = ?) ORDER BY seq LIMIT ?`);
  // A final state drops the request body (only queued and dead messages are sent again): that makes
  // room for the response.
  const settle = db.prepare(`UPDATE outbox SET state = $state, attempts = $attempts, next_attempt_at = $nextAttemptAt,
      updated_at = $now, last_error = $lastError, response_status = $status, response_headers = $headers, response_body = $body,
      body = CASE WHEN $state IN ('delivered', 'failed') THEN x'' ELSE body END
    WHERE id = $id`);
  const requeue = `UPDATE outbox SET state = 'queued', attempts = 0, next_attempt_at = $now, updated_at = $now, replayed_at = $now`;
  const replay = db.prepare(`${requeue} WHERE id = $id AND state = 'dead' RETURNING ${SUMMARY_COLUMNS}`);
  const replayAll = db.prepare(`${requeue} WHERE state = 'dead' RETURNING ${SUMMARY_COLUMNS}`);
  const deleteDead = db.prepare(`DELETE FROM outbox WHERE id = ? AND state = 'dead'`);
  const deleteAllDead = db.prepare(`DELETE FROM outbox WHERE state = 'dead'`);
  const counts = db.prepare(`SELECT state, count(*) AS n FROM outbox GROUP BY state`);
  const purge = db.prepare(`DELETE FROM outbox WHERE state IN ('delivered', 'failed') AND updated_at < ?`);
  const seen = db.prepare(`SELECT key, message_id, at, status, headers, body FROM seen WHERE key = ?`);
  const remember = db.prepare(`INSERT INTO seen (key, message_id, at, status, headers, body)
    VALUES ($key, $messageId, $at, $status, $headers, $body)
    ON CONFLICT (key) DO UPDATE SET message_id = excluded.message_id, at = excluded.at, status = excluded.status,
      headers = excluded.headers, body = excluded.body`);
  const forgetSeen = db.prepare(`DELETE FROM seen WHERE at < ?`);
  // Pages in use, this transaction's writes included.
  const usedPages = db.prepare(`SELECT (SELECT page_count FROM pragma_page_count())
    - (SELECT freelist_count FROM pragma_freelist_count()) AS used`);
  const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number };

  /**
   * Refuses messages that would take the database past accept's share of the quota, so that the
   * settles and dedup records of the messages already in it still fit. The size is a rough estimate
   * that errs high (a message takes at least a page).
   */
  const checkHeadroom = (messages: Wire<readonly NewMessage[]>): void => {
    if (quota === undefined) return;
    let bytes = 0;
    for (const m of messages) {
      bytes += 256 + m.id.length + m.service.length + m.namespace.length + (m.orderingKey?.length ?? 0)
        + m.request.path.length + m.request.authority.length + m.request.body.byteLength;
      for (const h of m.request.headers) bytes += 8 + h.name.length + h.value.length;
    }
    const { used } = usedPages.get() as { used: number };
    if (used + Math.ceil(bytes / pageSize) > quota.acceptPages) {
      const percent = Math.floor((used / quota.maxPages) * 100);
      throw new AcceptRefused(`it is ${percent}% full (${used * pageSize} of ${quota.maxPages * pageSize} bytes): it takes no new `
        + `messages past ${ACCEPT_SHARE * 100}%, the rest is kept for the deliveries of those it has`);
    }
  };

  const message = (id: string) => {
    const row = byId.get(id) as MessageRow | undefined;
    return row && toMessage(row);
  };

  return {
    accept(messages: Wire<readonly NewMessage[]>): void {
      checkHeadroom(messages);
      for (const m of messages) {
        try {
          insert.run({
            id: m.id, priority: m.priority, orderingKey: m.orderingKey ?? null, service: m.service, namespace: m.namespace,
            topic: m.topic ?? null, eventId: m.eventId ?? null, endpoint: m.endpoint ?? null, createdAt: integer('createdAt', m.createdAt),
            method: m.request.method, path: m.request.path, authority: m.request.authority,
            headers: encodeHeaders(m.request.headers), body: m.request.body,
          });
        } catch (err) {
          if ((err as { errcode?: unknown }).errcode !== SQLITE_CONSTRAINT_UNIQUE) throw err;
          throw new Error(`message ${m.id} is already in the store`, { cause: err });
        }
      }
    },
    get: message,
    getMany(ids: readonly string[]): Wire<StoredMessage>[] {
      return ids.map(message).filter((m) => m !== undefined);
    },
    unfinished(): MessageSummary[] {
      return (queued.all() as unknown as SummaryRow[]).map(toSummary);
    },
    /**
     * `now` becomes updatedAt. Response and lastError are replaced: they describe the latest attempt.
     * delivered and failed drop the request body.
     */
    settle(id: string, s: Wire<Settlement>, now: number): void {
      settle.run({
        id, state: s.state, attempts: integer('attempts', s.attempts), nextAttemptAt: integer('nextAttemptAt', s.nextAttemptAt),
        now: integer('now', now),
        lastError: s.lastError === undefined ? null : JSON.stringify(s.lastError),
        status: s.response === undefined ? null : integer('response.status', s.response.status),
        headers: s.response === undefined ? null : encodeHeaders(s.response.headers),
        body: s.response?.body ?? null,
      });
    },
    /**
     * Request bodies are left out (returned empty). An `after` id that is no longer stored ends the
     * paging (its place in the order is lost).
     */
    deadLetters(limit: number, after: string | undefined): Wire<StoredMessage>[] {
      const n = Math.max(0, Math.floor(limit));
      const rows = after === undefined ? deadFirst.all(n) : deadAfter.all(after, n);
      return (rows as unknown as MessageRow[]).map(toMessage);
    },
    replay(id: string, now: number): MessageSummary | undefined {
      const row = replay.get({ id, now: integer('now', now) }) as SummaryRow | undefined;
      return row && toSummary(row);
    },
    replayAll(now: number): MessageSummary[] {
      // RETURNING yields rows in no promised order.
      return (replayAll.all({ now: integer('now', now) }) as unknown as SummaryRow[]).map(toSummary).sort((a, b) => a.seq - b.seq);
    },
    deleteDead(id: string): boolean {
      return Number(deleteDead.run(id).changes) > 0;
    },
    deleteAllDead(): number {
      return Number(deleteAllDead.run().changes);
    },
    counts(): StateCounts {
      const result: StateCounts = { queued: 0, delivered: 0, failed: 0, dead: 0 };
      for (const row of counts.all() as unknown as { state: StoredMessage['state']; n: number }[]) result[row.state] = row.n;
      return result;
    },
    purgeFinished(before: number): number {
      return Number(purge.run(before).changes);
    },
    seen(key: string): Wire<SeenRecord> | undefined {
      const row = seen.get(key) as SeenRow | undefined;
      return row && {
        key: row.key, messageId: row.message_id, at: row.at,
        response: { status: row.status, headers: decodeHeaders(row.headers), body: row.body },
      };
    },
    remember(r: Wire<SeenRecord>): void {
      remember.run({
        key: r.key, messageId: r.messageId, at: integer('at', r.at),
        status: integer('response.status', r.response.status), headers: encodeHeaders(r.response.headers), body: r.response.body,
      });
    },
    forgetSeen(before: number): number {
      return Number(forgetSeen.run(before).changes);
    },
  };
}

const WRITES: ReadonlySet<Request['op']> = new Set<OpName>([
  'accept', 'settle', 'replay', 'replayAll', 'deleteDead', 'deleteAllDead', 'purgeFinished', 'remember', 'forgetSeen',
]);

// --- Errors ----------------------------------------------------------------------------------------

// Primary result codes (node:sqlite reports extended ones in err.errcode; the low byte is the primary).
const SQLITE_ERROR = 1;
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_FULL = 13;
const SQLITE_CONSTRAINT = 19;
const SQLITE_MISMATCH = 20;
const SQLITE_MISUSE = 21;
const SQLITE_RANGE = 25;

interface ErrorLike { message?: unknown; code?: unknown; errcode?: unknown; errstr?: unknown; syscall?: unknown }

/** Sorts an error into disk full / storage unavailable / not the storage's fault. */
function classify(err: unknown): { code: 'STORAGE_FULL' | 'STORAGE_UNAVAILABLE' | undefined; reason: string } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as ErrorLike;
  const reason = typeof e.message === 'string' ? e.message : String(err);
  if (e.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number') {
    switch (e.errcode & 0xff) {
      case SQLITE_FULL: return { code: 'STORAGE_FULL', reason };
      case SQLITE_BUSY: case SQLITE_LOCKED:
        return { code: 'STORAGE_UNAVAILABLE', reason: `it is in use by another sidecar (${reason})` };
      // Our SQL or our caller's data is wrong; the disk is fine.
      case SQLITE_ERROR: case SQLITE_CONSTRAINT: case SQLITE_MISMATCH: case SQLITE_MISUSE: case SQLITE_RANGE:
        return { code: undefined, reason };
      // I/O, read-only, cannot open, corrupt, not a database, out of memory…
      default: return { code: 'STORAGE_UNAVAILABLE', reason };
    }
  }
  if (e.code === 'ENOSPC' || err instanceof AcceptRefused) return { code: 'STORAGE_FULL', reason };
  if (typeof e.syscall === 'string') return { code: 'STORAGE_UNAVAILABLE', reason }; // from node:fs
  return { code: undefined, reason };
}

function toWireError(err: unknown, dir: string): WireError {
  const { code, reason } = classify(err);
  return code === undefined ? { kind: 'error', message: reason } : { kind: 'storage', code, message: `message store in ${dir}: ${reason}` };
}

function toOpenError(err: unknown, dir: string): WireError {
  const { code, reason } = classify(err);
  return { kind: 'storage', code: code ?? 'STORAGE_UNAVAILABLE', message: `cannot open the message store in ${dir}: ${reason}` };
}

// --- Opening ---------------------------------------------------------------------------------------

/** The open database, and its quota for makeOps. */
function openDatabase(dir: string, maxBytes: number): { db: DatabaseSync; quota: Quota | undefined } {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    if ((err as ErrorLike).code === 'EEXIST') throw Object.assign(new Error(`it is not a directory`), { syscall: 'mkdir' });
    throw err;
  }
  // SQLite only says "unable to open database file"; ask the OS first so the error says why.
  fs.accessSync(dir, fs.constants.R_OK | fs.constants.W_OK);
  const file = path.join(dir, STORE_FILE);
  if (fs.existsSync(file)) fs.accessSync(file, fs.constants.R_OK | fs.constants.W_OK);

  const db = new DatabaseSync(file);
  try {
    // Exclusive locking before WAL: the WAL index then lives in this process's memory (no -shm
    // file), and the lock taken by the first transaction is held until close, so a second sidecar on
    // this directory fails with SQLITE_BUSY instead of sharing it. FULL: a commit returns once on disk.
    db.exec('PRAGMA busy_timeout = 50; PRAGMA locking_mode = EXCLUSIVE');
    const { journal_mode: mode } = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string };
    if (mode !== 'wal') throw Object.assign(new Error(`cannot use a write-ahead log (journal mode stays ${mode})`), { syscall: 'open' });
    db.exec('PRAGMA synchronous = FULL');
    migrate(db);
    let quota: Quota | undefined;
    if (maxBytes > 0) {
      // After migrating, so the schema always fits. A larger existing database keeps its size (SQLite
      // will not set the limit below it) but cannot grow.
      const { page_size: pageSize } = db.prepare('PRAGMA page_size').get() as { page_size: number };
      const { max_page_count: maxPages } = db.prepare(`PRAGMA max_page_count = ${Math.max(1, Math.floor(maxBytes / pageSize))}`)
        .get() as { max_page_count: number };
      quota = { maxPages, acceptPages: Math.floor(maxPages * ACCEPT_SHARE) };
    }
    return { db, quota };
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Creates the schema, or upgrades an older one; user_version holds the version. */
function migrate(db: DatabaseSync): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
    if (version > SCHEMA_VERSION) {
      throw Object.assign(new Error(`its schema (version ${version}) is newer than this sidecar's (${SCHEMA_VERSION})`), { syscall: 'open' });
    }
    if (version < SCHEMA_VERSION) {
      db.exec(version < 1 ? SCHEMA : UPGRADES.slice(version - 1).join(';\n'));
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    }
    db.exec('COMMIT');
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

// --- The loop --------------------------------------------------------------------------------------

function serve(db: DatabaseSync, quota: Quota | undefined, port: MessagePort, dir: string): void {
  const ops = makeOps(db, quota);
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT op');
  const release = db.prepare('RELEASE op');
  const rollbackOp = db.prepare('ROLLBACK TO op');
  let commits = 0;

  const ok = (id: number, value: unknown): Reply => ({ id, ok: true, value });
  const fail = (id: number, err: unknown): Reply => ({ id, ok: false, error: toWireError(err, dir) });
  const run = (request: Request): unknown => (ops[request.op as OpName] as (...args: unknown[]) => unknown)(...request.args);

  /** Runs a group of requests; writes share one transaction and so one fsync. */
  function runGroup(requests: Request[]): Reply[] {
    if (!requests.some((r) => WRITES.has(r.op))) {
      return requests.map((r) => { try { return ok(r.id, run(r)); } catch (err) { return fail(r.id, err); } });
    }
    // Requests that failed in a way that cost the whole transaction: they are not run again.
    const lost = new Map<Request, Reply>();
    attempt: for (;;) {
      const replies: Reply[] = [];
      try {
        begin.run();
        for (const request of requests) {
          const reply = lost.get(request);
          if (reply) {
            replies.push(reply);
            continue;
          }
          savepoint.run();
          try {
            replies.push(ok(request.id, run(request)));
            release.run();
          } catch (err) {
            if (!db.isTransaction) {
              // SQLite rolled the whole transaction back (it does on SQLITE_FULL, even inside a
              // savepoint): run the group again without this request, so that the others (a purge
              // that frees space, a settle) are not lost with it.
              lost.set(request, fail(request.id, err));
              continue attempt;
            }
            rollbackOp.run();
            release.run();
            replies.push(fail(request.id, err));
          }
        }
        commit.run();
        commits++;
        return replies;
      } catch (err) {
        // BEGIN, COMMIT or a savepoint failed (the disk): nothing of the group is on disk. Reads
        // fail too, as they may have seen the group's writes.
        if (db.isTransaction) rollback.run();
        return requests.map((r) => lost.get(r) ?? fail(r.id, err));
      }
    }
  }

  port.on('message', (batch: Request[]) => {
    // Everything already queued joins this group.
    for (let next = receiveMessageOnPort(port); next !== undefined; next = receiveMessageOnPort(port)) {
      for (const request of next.message as Request[]) batch.push(request);
    }
    if (batch.some((r) => r.op === 'crash')) {
      // Tests only: die the way a bug in this worker would, with nothing answered.
      throw new Error('the message store worker crashed on request (SqliteMessageStore.failForTesting)');
    }
    const close = batch.find((r) => r.op === 'close'); // store.ts sends nothing after it
    const replies = runGroup(close ? batch.filter((r) => r !== close) : batch);
    if (close) {
      try {
        db.close(); // checkpoints the WAL into the database and removes it
        replies.push(ok(close.id, undefined));
      } catch (err) {
        replies.push(fail(close.id, err));
      }
    }
    port.postMessage({ type: 'replies', commits, replies } satisfies WorkerMessage);
    if (close) port.close(); // nothing left to keep the thread alive: it ends
  });
}

if (!isMainThread) {
  const { dir, maxBytes, port } = workerData as WorkerInit;
  let opened: ReturnType<typeof openDatabase> | undefined;
  try {
    opened = openDatabase(dir, maxBytes);
  } catch (err) {
    port.postMessage({ type: 'failed', error: toOpenError(err, dir) } satisfies WorkerMessage);
    port.close();
  }
  if (opened) {
    serve(opened.db, opened.quota, port, dir);
    port.postMessage({ type: 'ready' } satisfies WorkerMessage);
  }
}
