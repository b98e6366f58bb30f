// The sidecar's durable message store: SQLite (node:sqlite) in a worker thread, see store-worker.ts.
// This side turns method calls into requests and the worker's replies back into results. Calls made
// in the same tick leave in one postMessage, and the worker commits everything it finds queued in
// one transaction, so concurrent writes share one fsync.
import path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort, type WorkerOptions } from 'node:worker_threads';
import {
  StorageError, type MessageStore, type MessageSummary, type NewMessage, type SeenRecord, type Settlement, type StateCounts,
  type StoredMessage, type StoredResponse,
} from './types.ts';
import type { OpName, Ops, Reply, Request, Wire, WireError, WorkerInit, WorkerMessage } from './store-worker.ts';

/**
 * The worker thread running store-worker.ts. Where this thread loads the sources pre-stripped (under
 * `mcp-mesh sidecar`: MCP_MESH_JS_CACHE names the module whose hook serves them, bin/js-cache.js), a
 * worker, which has a module loader of its own, installs the same hook first, or it would load Node's
 * TypeScript stripper (~10 MB) itself.
 */
function storeWorker(options: WorkerOptions): Worker {
  const entry = new URL('./store-worker.ts', import.meta.url);
  const jsCache = process.env['MCP_MESH_JS_CACHE'];
  if (jsCache === undefined) return new Worker(entry, options);
  const code = `import(${JSON.stringify(jsCache)}).then((m) => { m.useJsCache(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { ...options, eval: true });
}

/** Opens (creating if need be) `<dir>/messages.db`. maxBytes: the database's size limit, 0 for none. */
export async function openMessageStore(dir: string, options: { maxBytes: number }): Promise<MessageStore> {
  const absolute = path.resolve(dir);
  const { port1, port2 } = new MessageChannel();
  const init: WorkerInit = { dir: absolute, maxBytes: options.maxBytes, port: port2 };
  const worker = storeWorker({ name: 'message-store', workerData: init, transferList: [port2] });
  try {
    await started(worker, port1, absolute);
  } catch (err) {
    worker.on('error', () => {}); // already reported by the rejection
    port1.close();
    await worker.terminate();
    throw err;
  }
  return new SqliteMessageStore(worker, port1, absolute);
}

/** Resolves when the worker has opened the database; rejects with its reason if it could not. */
function started(worker: Worker, port: MessagePort, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      port.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      if (err) reject(err); else resolve();
    };
    const onMessage = (m: WorkerMessage) => done(m.type === 'failed' ? fromWire(m.error) : undefined);
    const onError = (err: Error) => done(new StorageError('STORAGE_UNAVAILABLE',
      `cannot open the message store in ${dir}: its worker failed: ${err.message}`, { cause: err }));
    const onExit = (code: number) => {
      // The exit can overtake the worker's last message: look for it first.
      const last = receiveMessageOnPort(port)?.message as WorkerMessage | undefined;
      if (last) onMessage(last);
      else done(new StorageError('STORAGE_UNAVAILABLE', `cannot open the message store in ${dir}: its worker exited (code ${code})`));
    };
    port.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

function fromWire(error: WireError): Error {
  return error.kind === 'storage' ? new StorageError(error.code, error.message) : new Error(error.message);
}

/** Structured clone copies a view's whole ArrayBuffer: a Buffer cut from a pool or a large read would drag all of it along. */
const compact = (bytes: Uint8Array): Uint8Array =>
  bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);

const toBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

const compactResponse = (r: StoredResponse): Wire<StoredResponse> => ({ ...r, body: compact(r.body) });
const reviveResponse = (r: Wire<StoredResponse>): StoredResponse => ({ ...r, headers: [...r.headers], body: toBuffer(r.body) });

function reviveMessage(m: Wire<StoredMessage>): StoredMessage {
  const { response, ...rest } = m;
  const message: StoredMessage = { ...rest, request: { ...m.request, headers: [...m.request.headers], body: toBuffer(m.request.body) } };
  if (response) message.response = reviveResponse(response);
  return message;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** openMessageStore's store. `commits` counts the transactions committed so far. */
export class SqliteMessageStore implements MessageStore {
  readonly #worker: Worker;
  readonly #port: MessagePort;
  readonly #dir: string;
  readonly #pending = new Map<number, Pending>();
  /** Requests of this tick, not yet posted. */
  #outgoing: Request[] = [];
  #nextId = 1;
  #commits = 0;
  /** Set once the store is closed or its worker died: every later call rejects with it. */
  #refusal: StorageError | undefined;
  #closing: Promise<void> | undefined;
  /** Set if the worker died while the store was open (not closed). */
  #failure: StorageError | undefined;
  readonly #failureListeners: ((err: StorageError) => void)[] = [];

  /** Use openMessageStore. */
  constructor(worker: Worker, port: MessagePort, dir: string) {
    this.#worker = worker;
    this.#port = port;
    this.#dir = dir;
    port.on('message', (m: WorkerMessage) => { if (m.type === 'replies') this.#settle(m.commits, m.replies); });
    worker.on('error', (err) => this.#died(new StorageError('STORAGE_UNAVAILABLE',
      `the message store in ${dir} failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => this.#died(new StorageError('STORAGE_UNAVAILABLE',
      `the message store in ${dir} stopped: its worker exited (code ${code})`)));
    this.#keepAlive(false);
  }

  get commits(): number {
    return this.#commits;
  }

  async accept(messages: readonly NewMessage[]): Promise<void> {
    const wire = messages.map((m) => ({ ...m, request: { ...m.request, body: compact(m.request.body) } }));
    await this.#call('accept', wire);
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    const m = await this.#call('get', id);
    return m && reviveMessage(m);
  }

  async getMany(ids: readonly string[]): Promise<StoredMessage[]> {
    return (await this.#call('getMany', ids)).map(reviveMessage);
  }

  unfinished(): Promise<MessageSummary[]> {
    return this.#call('unfinished');
  }

  async settle(id: string, settlement: Settlement): Promise<void> {
    const { response, ...rest } = settlement;
    await this.#call('settle', id, response ? { ...rest, response: compactResponse(response) } : rest, Date.now());
  }

  async deadLetters(options: { limit: number; after?: string }): Promise<StoredMessage[]> {
    return (await this.#call('deadLetters', options.limit, options.after)).map(reviveMessage);
  }

  replay(id: string, now: number): Promise<MessageSummary | undefined> {
    return this.#call('replay', id, now);
  }

  replayAll(now: number): Promise<MessageSummary[]> {
    return this.#call('replayAll', now);
  }

  deleteDead(id: string): Promise<boolean> {
    return this.#call('deleteDead', id);
  }

  deleteAllDead(): Promise<number> {
    return this.#call('deleteAllDead');
  }

  counts(): Promise<StateCounts> {
    return this.#call('counts');
  }

  purgeFinished(before: number): Promise<number> {
    return this.#call('purgeFinished', before);
  }

  async seen(key: string): Promise<SeenRecord | undefined> {
    const r = await this.#call('seen', key);
    return r && { ...r, response: reviveResponse(r.response) };
  }

  async remember(record: SeenRecord): Promise<void> {
    await this.#call('remember', { ...record, response: compactResponse(record.response) });
  }

  forgetSeen(before: number): Promise<number> {
    return this.#call('forgetSeen', before);
  }

  /**
   * `listener` is called once if the store becomes unusable for good (its worker crashed or exited)
   * while open, never because of close(). Added after that happened: called soon (not from here).
   */
  onFailure(listener: (err: StorageError) => void): void {
    if (this.#failure) {
      const failure = this.#failure;
      queueMicrotask(() => listener(failure));
    } else if (this.#closing === undefined) {
      this.#failureListeners.push(listener);
    }
  }

  /**
   * For tests only: makes the worker die as if it failed, 'terminate' (it is stopped from outside) or
   * 'crash' (an uncaught error in it). Resolves once it has died and the store has taken note.
   */
  async failForTesting(how: 'terminate' | 'crash'): Promise<void> {
    if (this.#refusal) throw new Error('the store is already closed or failed');
    const exited = new Promise((resolve) => this.#worker.once('exit', resolve));
    const keepAlive = setInterval(() => {}, 60_000); // the store lets go of the worker as soon as it fails
    try {
      if (how === 'terminate') void this.#worker.terminate();
      else this.#send('crash', []).catch(() => {}); // rejected by the death it causes
      await exited;
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** Finishes the calls already made, closes the database (checkpointing its log) and ends the worker. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    try {
      if (this.#refusal === undefined) {
        const closed = this.#send('close', []);
        this.#refusal = new StorageError('STORAGE_UNAVAILABLE', `the message store in ${this.#dir} is closed`);
        await closed;
      }
    } finally {
      this.#port.close();
      await this.#worker.terminate();
    }
  }

  #call<K extends OpName>(op: K, ...args: Parameters<Ops[K]>): Promise<ReturnType<Ops[K]>> {
    return this.#send(op, args) as Promise<ReturnType<Ops[K]>>;
  }

  #send(op: Request['op'], args: unknown[]): Promise<unknown> {
    if (this.#refusal) return Promise.reject(this.#refusal);
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      this.#pending.set(id, { resolve, reject });
      if (this.#pending.size === 1) this.#keepAlive(true);
      if (this.#outgoing.length === 0) queueMicrotask(() => this.#flush());
      this.#outgoing.push({ id, op, args });
    });
  }

  #flush(): void {
    const batch = this.#outgoing;
    this.#outgoing = [];
    if (batch.length === 0) return;
    try {
      this.#port.postMessage(batch);
    } catch (err) {
      // Something in the batch cannot be cloned (a caller's bug): fail this batch, not the store.
      this.#settle(this.#commits, batch.map((r) => ({ id: r.id, ok: false, error: { kind: 'error', message: String(err) } })));
    }
  }

  #settle(commits: number, replies: readonly Reply[]): void {
    this.#commits = commits;
    for (const reply of replies) {
      const pending = this.#pending.get(reply.id);
      if (!pending) continue;
      this.#pending.delete(reply.id);
      if (reply.ok) pending.resolve(reply.value); else pending.reject(fromWire(reply.error));
    }
    if (this.#pending.size === 0) this.#keepAlive(false);
  }

  /** The worker is gone (crashed, or closed): nothing pending will be answered. */
  #died(err: StorageError): void {
    // Its exit can overtake its last replies: take those first.
    for (let m = receiveMessageOnPort(this.#port); m !== undefined; m = receiveMessageOnPort(this.#port)) {
      const message = m.message as WorkerMessage;
      if (message.type === 'replies') this.#settle(message.commits, message.replies);
    }
    const failed = this.#refusal === undefined; // else closed, or already dead (an 'error' is followed by an 'exit')
    this.#refusal ??= err;
    this.#outgoing = [];
    for (const pending of this.#pending.values()) pending.reject(err);
    this.#pending.clear();
    this.#keepAlive(false);
    if (failed) {
      this.#failure = err;
      const listeners = this.#failureListeners.splice(0);
      for (const listener of listeners) {
        try {
          listener(err);
        } catch (thrown) {
          queueMicrotask(() => { throw thrown; }); // a listener's bug: reported as uncaught, after the others ran
        }
      }
    }
  }

  /** An idle store must not keep the process alive; one with calls pending must. */
  #keepAlive(on: boolean): void {
    if (on) {
      this.#worker.ref();
      this.#port.ref();
    } else {
      this.#worker.unref();
      this.#port.unref();
    }
  }
}
