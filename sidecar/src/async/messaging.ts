// Asynchronous messaging as the rest of the sidecar sees it: accept (write to disk, then 202),
// publish (one copy per subscriber, or per replica for broadcast), status, dead letters. Owns the
// store and the dispatcher, and the upkeep (dropping expired records).
//
// The store may be unusable (data directory missing, read-only, full, in use): async requests then
// fail with a coded error (503 STORAGE_UNAVAILABLE, 507 STORAGE_FULL) and synchronous calls go on as
// before. Opening is tried again, at most once a second, while the problem lasts.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { CallPipeline } from '../call/pipeline.ts';
import type { MeshConfig } from '../config/load.ts';
import type { Endpoint } from '../discovery/resolver.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { jsonAnswer, type JsonAnswer } from '../http/json-answer.ts';
import type { Header } from '../mcp/codec.ts';
import { newMessageId } from '../mcp/ids.ts';
import type { Subscriber } from '../policy/resolve.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import { Dispatcher } from './dispatcher.ts';
import { openMessageStore } from './store.ts';
import { STORE_FILE, toStorageProblem, type StorageError, type MessageStore, type MessageSummary, type NewMessage, type PriorityName, type StateCounts, type StoredMessage, type StoredRequest } from './types.ts';

export interface AsyncMessagingOptions {
  storage: MeshConfig['storage'];
  pipeline: CallPipeline;
  policies: {
    resolve(service: string, namespace: string, request: { method: string; path: string; headers: readonly Header[] }): EffectivePolicy;
    subscribers(topic: string): readonly Subscriber[];
  };
  endpoints: (service: string, namespace: string) => readonly Endpoint[] | undefined;
  logger: Logger;
  metrics?: {
    onAccepted(service: string, kind: 'call' | 'event'): void;
    onSettled(service: string, outcome: string): void;
  };
}

/** A message as GET /mesh/v1/messages/<id> and the dead-letter API show it. */
export interface MessageView {
  id: string;
  state: StoredMessage['state'] | 'in-flight';
  service: string;
  namespace: string;
  method: string;
  path: string;
  priority: PriorityName;
  orderingKey?: string;
  topic?: string;
  eventId?: string;
  endpoint?: string;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  nextAttemptAt?: string;
  lastError?: StoredMessage['lastError'];
  response?: JsonAnswer;
}

/** What a caller asks to be sent asynchronously. */
export interface AsyncRequest {
  service: string;
  namespace: string;
  priority: PriorityName | undefined;
  orderingKey: string | undefined;
  request: StoredRequest;
}

const REOPEN_INTERVAL_MS = 1000;
const UPKEEP_INTERVAL_MS = 60_000;

export class AsyncMessaging {
  readonly #options: AsyncMessagingOptions;
  #store: MessageStore | undefined;
  #problem: MeshError | undefined;
  #opening: Promise<void> | undefined;
  #lastOpenAttempt = 0;
  #dispatcher: Dispatcher | undefined;
  #counts: StateCounts | undefined;
  #upkeep: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: AsyncMessagingOptions) {
    this.#options = options;
  }

  /**
   * Never fails: a store that cannot open is reported (logged, and on every async request). A data
   * directory that already holds a store is opened now, so what it still has to deliver leaves at
   * once after a restart; otherwise the store (a worker thread, about 20 MiB) is opened on first use,
   * and a sidecar that never sends or receives an async message never pays for it.
   */
  static async start(options: AsyncMessagingOptions): Promise<AsyncMessaging> {
    const messaging = new AsyncMessaging(options);
    if (existsSync(path.join(options.storage.dir, STORE_FILE))) await messaging.#open();
    else options.logger.info({ dir: options.storage.dir }, 'async storage opens on first use');
    messaging.#upkeep = setInterval(() => void messaging.#tidy(), UPKEEP_INTERVAL_MS);
    messaging.#upkeep.unref();
    return messaging;
  }

  /** For the receiving side (dedup): the store (opened now if need be), or why there is none. */
  async store(): Promise<MessageStore | MeshError> {
    if (!this.#store) await this.#retryOpen();
    return this.storeOrProblem();
  }

  /** The store if it is open now, else why not (no attempt to open it). */
  storeOrProblem(): MessageStore | MeshError {
    return this.#store ?? this.#problem ?? new MeshError('STORAGE_UNAVAILABLE', 'the data directory is not open yet');
  }

  /** Last counts by state (refreshed on every upkeep and change), for metrics. */
  get counts(): StateCounts | undefined {
    return this.#counts;
  }

  /** Write one async call to disk; resolves (with its id) once it is there. */
  async accept(call: AsyncRequest): Promise<string> {
    const policy = this.#options.policies.resolve(call.service, call.namespace, call.request);
    const message: NewMessage = {
      id: newMessageId(), service: call.service, namespace: call.namespace,
      priority: call.priority ?? policy.priority, request: call.request, createdAt: Date.now(),
      ...(call.orderingKey !== undefined ? { orderingKey: call.orderingKey } : {}),
    };
    await this.#write([message]);
    this.#options.metrics?.onAccepted(`${call.service}.${call.namespace}`, 'call');
    return message.id;
  }

  /**
   * Publish an event: one message per subscribing service (competing consumers: one replica gets
   * it), or one per replica known now (broadcast). All are written in one commit, or none.
   */
  async publish(topic: string, event: { headers: Header[]; body: Buffer; priority: PriorityName | undefined; orderingKey: string | undefined }):
    Promise<{ eventId: string; messages: { id: string; service: string; namespace: string; endpoint?: string }[]; unreached: { service: string; namespace: string; why: string }[] }> {
    const subscribers = this.#options.policies.subscribers(topic);
    if (subscribers.length === 0) throw new MeshError('UNKNOWN_TOPIC', `no policy subscribes a service to topic "${topic}" (spec.subscriptions)`);
    const eventId = newMessageId();
    const now = Date.now();
    const messages: NewMessage[] = [];
    const unreached: { service: string; namespace: string; why: string }[] = [];
    for (const subscriber of subscribers) {
      const request: StoredRequest = { method: 'POST', path: subscriber.path, authority: subscriber.service, headers: event.headers, body: event.body };
      const policy = this.#options.policies.resolve(subscriber.service, subscriber.namespace, request);
      const base = {
        service: subscriber.service, namespace: subscriber.namespace, topic, eventId, request, createdAt: now,
        priority: event.priority ?? policy.priority, ...(event.orderingKey !== undefined ? { orderingKey: event.orderingKey } : {}),
      };
      const replicas = subscriber.delivery === 'broadcast' ? (this.#options.endpoints(subscriber.service, subscriber.namespace) ?? []) : [undefined];
      // A broadcast reaches the replicas known now; with none known there is nobody to keep a copy for.
      if (replicas.length === 0) unreached.push({ service: subscriber.service, namespace: subscriber.namespace, why: 'broadcast subscription, and no replica of the service is known to discovery' });
      for (const replica of replicas) messages.push({ ...base, id: newMessageId(), ...(replica ? { endpoint: replica.address } : {}) });
    }
    if (messages.length === 0) {
      throw new MeshError('NO_HEALTHY_ENDPOINT', `topic "${topic}" has only broadcast subscribers, and none of them has a replica known to discovery: the event was not accepted`);
    }
    await this.#write(messages);
    for (const message of messages) this.#options.metrics?.onAccepted(`${message.service}.${message.namespace}`, 'event');
    return { eventId, messages: messages.map((m) => ({ id: m.id, service: m.service, namespace: m.namespace, ...(m.endpoint ? { endpoint: m.endpoint } : {}) })), unreached };
  }

  async status(id: string): Promise<MessageView | undefined> {
    const message = await (await this.#ready()).get(id).catch(rethrow);
    return message && this.#view(message);
  }

  async deadLetters(limit: number, after: string | undefined): Promise<MessageView[]> {
    const dead = await (await this.#ready()).deadLetters({ limit, ...(after ? { after } : {}) }).catch(rethrow);
    return dead.map((m) => this.#view(m));
  }

  async deadLetter(id: string): Promise<MessageView | undefined> {
    const message = await (await this.#ready()).get(id).catch(rethrow);
    return message?.state === 'dead' ? this.#view(message) : undefined;
  }

  /** Put dead letters back in the queue, attempts reset; resolves with their ids. */
  async replay(id: string | undefined): Promise<string[]> {
    const store = await this.#ready();
    const now = Date.now();
    const replayed = id === undefined ? await store.replayAll(now).catch(rethrow) : [await store.replay(id, now).catch(rethrow)].filter((m): m is MessageSummary => m !== undefined);
    for (const summary of replayed) this.#dispatcher?.add(summary);
    void this.#refreshCounts();
    return replayed.map((m) => m.id);
  }

  async deleteDead(id: string | undefined): Promise<number> {
    const store = await this.#ready();
    const deleted = id === undefined ? await store.deleteAllDead().catch(rethrow) : (await store.deleteDead(id).catch(rethrow)) ? 1 : 0;
    void this.#refreshCounts();
    return deleted;
  }

  /**
   * Stop delivering and close the store: deliveries running get up to `graceMs` to finish; the ones
   * cut after that stay queued on disk for the next start.
   */
  async close(graceMs = 0): Promise<void> {
    this.#closed = true;
    clearInterval(this.#upkeep);
    await this.#dispatcher?.stop(graceMs);
    await this.#store?.close().catch(() => {});
  }

  // ---- store ----

  async #write(messages: NewMessage[]): Promise<void> {
    const store = this.#store ?? (await this.#retryOpen(), this.#store);
    if (!store) throw this.#problem!;
    await store.accept(messages).catch(rethrow);
    for (const message of messages) this.#dispatcher!.add(summaryOf(message));
    if (this.#counts) this.#counts.queued += messages.length;
  }

  async #ready(): Promise<MessageStore> {
    const store = await this.store();
    if (store instanceof MeshError) throw store;
    return store;
  }

  #retryOpen(): Promise<void> {
    if (this.#store || this.#closed) return Promise.resolve();
    if (Date.now() - this.#lastOpenAttempt < REOPEN_INTERVAL_MS) return this.#opening ?? Promise.resolve();
    return this.#open();
  }

  #open(): Promise<void> {
    this.#opening ??= (async () => {
      this.#lastOpenAttempt = Date.now();
      const { dir, maxBytes } = this.#options.storage;
      try {
        const store = await openMessageStore(dir, { maxBytes });
        if (this.#closed) { await store.close(); return; }
        const dispatcher = new Dispatcher({
          store,
          pipeline: this.#options.pipeline,
          policy: (message) => this.#options.policies.resolve(message.service, message.namespace, message).async,
          endpoints: this.#options.endpoints,
          concurrency: this.#options.storage.deliveryConcurrency,
          logger: this.#options.logger,
          onSettled: (message, outcome) => {
            this.#options.metrics?.onSettled(`${message.service}.${message.namespace}`, outcome);
            if (this.#counts && outcome !== 'retry') {
              this.#counts.queued--;
              this.#counts[outcome as keyof StateCounts]++;
            }
          },
        });
        try {
          await dispatcher.start();
        } catch (err) {
          await store.close().catch(() => {});
          throw err;
        }
        // In use only once its backlog is loaded: a failed start leaves nothing half-open, and is tried again.
        this.#store = store;
        this.#dispatcher = dispatcher;
        this.#problem = undefined;
        store.onFailure((err) => void this.#lost(store, dispatcher, err));
        await this.#refreshCounts();
        this.#options.logger.info({ dir, queued: this.#counts?.queued ?? 0, dead: this.#counts?.dead ?? 0 }, 'async storage open');
      } catch (err) {
        this.#problem = toStorageProblem(err);
        this.#options.logger.error({ code: this.#problem.code, dir }, `async calls and pub/sub are unavailable: ${this.#problem.message}`);
      } finally {
        this.#opening = undefined;
      }
    })();
    return this.#opening;
  }

  /** The store died under us (its worker crashed): stop using it, and open it anew. */
  async #lost(store: MessageStore, dispatcher: Dispatcher, err: StorageError): Promise<void> {
    if (this.#store !== store) return;
    this.#store = undefined;
    this.#dispatcher = undefined;
    this.#problem = toStorageProblem(err);
    this.#options.logger.error({ code: this.#problem.code }, `async storage failed; reopening it: ${err.message}`);
    await dispatcher.stop();
    this.#lastOpenAttempt = 0;
    await this.#retryOpen();
  }

  async #refreshCounts(): Promise<void> {
    if (!this.#store) return;
    try {
      this.#counts = await this.#store.counts();
    } catch { /* the next request reports it */ }
  }

  async #tidy(): Promise<void> {
    const store = this.#store;
    // Not open: retried only if an open was tried and failed. One never tried waits for its first
    // use, or every idle sidecar would start the store worker a minute after it started.
    if (!store) {
      if (this.#problem) void this.#retryOpen();
      return;
    }
    const now = Date.now();
    try {
      await store.purgeFinished(now - this.#options.storage.retentionMs);
      await store.forgetSeen(now - this.#options.storage.dedupWindowMs);
      await this.#refreshCounts();
    } catch (err) {
      this.#options.logger.warn({ code: toStorageProblem(err).code }, `async storage upkeep failed: ${(err as Error).message}`);
    }
  }

  #view(message: StoredMessage): MessageView {
    const running = this.#dispatcher?.isInFlight(message.id) ?? false;
    return {
      id: message.id,
      state: message.state === 'queued' && running ? 'in-flight' : message.state,
      service: message.service,
      namespace: message.namespace,
      method: message.request.method,
      path: message.request.path,
      priority: message.priority,
      ...(message.orderingKey !== undefined ? { orderingKey: message.orderingKey } : {}),
      ...(message.topic !== undefined ? { topic: message.topic, eventId: message.eventId } : {}),
      ...(message.endpoint !== undefined ? { endpoint: message.endpoint } : {}),
      attempts: message.attempts,
      createdAt: new Date(message.createdAt).toISOString(),
      updatedAt: new Date(message.updatedAt).toISOString(),
      ...(message.state === 'queued' ? { nextAttemptAt: new Date(message.nextAttemptAt).toISOString() } : {}),
      ...(message.lastError ? { lastError: message.lastError } : {}),
      ...(message.response ? { response: jsonAnswer(message.response.status, message.response.headers, message.response.body) } : {}),
    };
  }
}

/** A message just accepted, as the dispatcher indexes it (the body stays on disk). */
function summaryOf(message: NewMessage): MessageSummary {
  const { request: _body, ...rest } = message;
  return { ...rest, seq: 0, state: 'queued', attempts: 0, nextAttemptAt: message.createdAt, updatedAt: message.createdAt };
}

function rethrow(err: unknown): never {
  throw toStorageProblem(err);
}
