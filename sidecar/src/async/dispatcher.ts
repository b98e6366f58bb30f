// Moves accepted messages from the outbox to their destinations, one delivery attempt at a time,
// through the same call pipeline as synchronous calls (policies, balancing, breakers, links).
//
//   queued message ──► its lane (high, medium, low) when due, and first of its ordering key
//                 ──► a delivery slot of that lane (storage.deliveryConcurrency each)
//                 ──► the call stack (one try) ──► delivered / failed / again later / dead, written to disk
//
// Lanes have slots of their own, so a flood of low-priority messages never holds a high one back.
// Messages sharing an ordering key go one at a time in acceptance order: the next leaves only when
// the one before is delivered, failed or dead, so order holds through retries.
// The in-memory index holds summaries only; a message's body is read from the store when it leaves.
import type { Logger } from 'pino';
import type { CallPipeline, CallResult } from '../call/pipeline.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { headerValue } from '../http/headers.ts';
import type { Endpoint } from '../discovery/resolver.ts';
import type { AsyncPolicy } from '../policy/types.ts';
import type { Header } from '../mcp/codec.ts';
import { nextAttempt, outcomeOfError, outcomeOfStatus, type Outcome } from './outcome.ts';
import { Fifo, MinHeap } from './queues.ts';
import type { MessageStore, MessageSummary, PriorityName, Settlement, StoredMessage, StoredResponse } from './types.ts';

/** Largest answer kept for GET /mesh/v1/messages/<id>; the rest is dropped (and the answer marked so). */
export const MAX_STORED_ANSWER_BYTES = 1024 * 1024;
/** A store that failed a read or write is tried again for that message after this long. */
const STORAGE_RETRY_MS = 1000;
/** Node timers fire at once beyond this (about 24.8 days): longer waits are taken in steps. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

const LANES: readonly PriorityName[] = ['high', 'medium', 'low'];

export interface DispatcherDeps {
  store: MessageStore;
  pipeline: CallPipeline;
  /** The async policy for a message (service, route). */
  policy: (message: MessageSummary & { method: string; path: string; headers: readonly Header[] }) => AsyncPolicy;
  /** The endpoints of a service; undefined when discovery does not know it (now). */
  endpoints: (service: string, namespace: string) => readonly Endpoint[] | undefined;
  /** Deliveries in flight at once, per lane. */
  concurrency: number;
  logger: Logger;
  onSettled?: (message: MessageSummary, state: Settlement['state'] | 'retry', attempts: number) => void;
}

interface Entry {
  summary: MessageSummary;
  /**
   * Where a try whose outcome is unknown went (the link broke, time ran out): the app there may have
   * run it, and its sidecar then holds the record that turns a redelivery into a dropped duplicate.
   * Cleared when a replica answered with a retryable status (it recorded nothing).
   */
  lastEndpoint?: string;
  /** Failed tries, refusals included (in memory): the back-off grows with them. */
  failures: number;
  running: boolean;
}

export class Dispatcher {
  readonly #deps: DispatcherDeps;
  readonly #entries = new Map<string, Entry>();
  /** Due and free to go, by lane, in acceptance order. */
  readonly #ready: Record<PriorityName, Fifo<Entry>> = { high: new Fifo(), medium: new Fifo(), low: new Fifo() };
  readonly #inFlight: Record<PriorityName, number> = { high: 0, medium: 0, low: 0 };
  /** Waiting for a back-off to pass, soonest first. */
  readonly #later = new MinHeap<Entry>((entry) => entry.summary.nextAttemptAt);
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  /** Messages of one ordering key, in acceptance order; only the first may be delivered. */
  readonly #chains = new Map<string, Fifo<Entry>>();
  /** No new deliveries start (shutdown has begun). */
  #draining = false;
  readonly #stopping = new AbortController();
  readonly #running = new Set<Promise<void>>();
  /** The AbortController of each delivery under way (made here, at its edge): stop() aborts them. */
  readonly #calls = new Set<AbortController>();

  constructor(deps: DispatcherDeps) {
    this.#deps = deps;
  }

  /** Load what the outbox still holds (after a restart: everything not finished) and start. */
  async start(): Promise<void> {
    for (const summary of await this.#deps.store.unfinished()) this.add(summary);
  }

  /** A message just written to the outbox, or replayed from the dead letters. */
  add(summary: MessageSummary): void {
    if (this.#entries.has(summary.id) || this.#draining) return;
    const entry: Entry = { summary, failures: summary.attempts, running: false };
    this.#entries.set(summary.id, entry);
    const chainKey = chainOf(summary);
    if (chainKey !== undefined) {
      const chain = this.#chains.get(chainKey);
      if (chain) { chain.push(entry); return; } // waits for the ones before it
      const fresh = new Fifo<Entry>();
      fresh.push(entry);
      this.#chains.set(chainKey, fresh);
    }
    this.#schedule(entry);
    this.#pump();
  }

  /** Whether a message is being delivered right now (its state on disk is still `queued`). */
  isInFlight(id: string): boolean {
    return this.#entries.get(id)?.running ?? false;
  }

  /**
   * Shutdown: start no more deliveries, give the running ones up to `graceMs` to finish (a delivery
   * cut short may have reached the app, and would reach it again after the restart), then cut the
   * rest. What they carried stays queued on disk.
   */
  async stop(graceMs = 0): Promise<void> {
    this.#draining = true;
    clearTimeout(this.#timer);
    if (graceMs > 0 && this.#running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.#running]), new Promise((resolve) => { timer = setTimeout(resolve, graceMs); })]);
      clearTimeout(timer);
    }
    const reason = new MeshError('SHUTTING_DOWN', 'this sidecar is shutting down');
    this.#stopping.abort(reason);
    for (const cancel of this.#calls) cancel.abort(reason);
    await Promise.allSettled([...this.#running]);
  }

  // ---- scheduling ----

  #schedule(entry: Entry): void {
    if (entry.summary.nextAttemptAt <= Date.now()) {
      this.#ready[entry.summary.priority].push(entry);
      return;
    }
    this.#later.push(entry);
    this.#armTimer();
  }

  #armTimer(): void {
    const first = this.#later.peek();
    if (!first || first.summary.nextAttemptAt >= this.#timerAt || this.#draining) return;
    clearTimeout(this.#timer);
    this.#timerAt = first.summary.nextAttemptAt;
    this.#timer = setTimeout(() => {
      this.#timerAt = Infinity;
      const now = Date.now();
      while (this.#later.length > 0 && this.#later.peek()!.summary.nextAttemptAt <= now) {
        const entry = this.#later.pop()!;
        this.#ready[entry.summary.priority].push(entry);
      }
      this.#armTimer();
      this.#pump();
    }, Math.min(LONGEST_TIMER_MS, Math.max(0, this.#timerAt - Date.now())));
    this.#timer.unref();
  }

  #pump(): void {
    if (this.#draining) return;
    for (const lane of LANES) {
      const ready = this.#ready[lane];
      while (ready.length > 0 && this.#inFlight[lane] < this.#deps.concurrency) {
        const entry = ready.shift()!;
        if (this.#entries.get(entry.summary.id) !== entry) continue; // gone meanwhile
        this.#inFlight[lane]++;
        entry.running = true;
        const run = this.#deliver(entry)
          .catch((err: unknown) => this.#storageTrouble(entry, err))
          .finally(() => {
            this.#running.delete(run);
            entry.running = false;
            this.#inFlight[lane]--;
            this.#pump();
          });
        this.#running.add(run);
      }
    }
  }

  /** The store failed a read or write for this message: keep it (in memory) and try again shortly. */
  #storageTrouble(entry: Entry, err: unknown): void {
    if (this.#stopping.signal.aborted) return;
    this.#deps.logger.error({ messageId: entry.summary.id, code: (err as { code?: 'STORAGE_FULL' | 'STORAGE_UNAVAILABLE' }).code, err: String(err) }, 'async storage failed during a delivery; the message stays queued and is tried again');
    entry.summary = { ...entry.summary, nextAttemptAt: Date.now() + STORAGE_RETRY_MS };
    this.#schedule(entry);
  }

  // ---- one attempt ----

  async #deliver(entry: Entry): Promise<void> {
    const summary = entry.summary;
    const message = await this.#deps.store.get(summary.id);
    if (!message) { this.#forget(entry); return; } // deleted meanwhile
    const policy = this.#deps.policy({ ...summary, method: message.request.method, path: message.request.path, headers: message.request.headers });
    let outcome: Outcome;
    let answer: StoredResponse | undefined;
    const broadcastTo = summary.endpoint;
    const replicas = this.#deps.endpoints(summary.service, summary.namespace);
    if (broadcastTo !== undefined && replicas !== undefined && !replicas.some((e) => e.address === broadcastTo)) {
      // A broadcast to a replica that has left: nobody is left to receive this copy.
      outcome = { kind: 'failed', error: { code: 'NO_HEALTHY_ENDPOINT', message: `replica ${broadcastTo} left ${summary.service} before the event reached it` } };
    } else {
      // The delivery's one AbortController: its attempt timeout (the deadline layer) or shutdown aborts it.
      const cancel = new AbortController();
      this.#calls.add(cancel);
      try {
        const result = await this.#deps.pipeline({
          target: { service: message.service, namespace: message.namespace },
          method: message.request.method,
          path: message.request.path,
          authority: message.request.authority,
          headers: message.request.headers,
          body: message.request.body.byteLength > 0 ? { kind: 'inline', bytes: message.request.body } : { kind: 'none' },
          expectStream: false,
          deadlineMs: policy.attemptTimeoutMs,
          cancel,
          priority: summary.priority,
          delivery: {
            messageId: summary.id, attempt: summary.attempts + 1, ...(summary.topic ? { topic: summary.topic } : {}),
            ...(broadcastTo !== undefined ? { endpoint: broadcastTo, pinned: true } : { ...(entry.lastEndpoint ? { endpoint: entry.lastEndpoint } : {}), pinned: false }),
            onSent: (endpoint) => { entry.lastEndpoint = endpoint; },
          },
        });
        answer = await keptAnswer(result, policy.attemptTimeoutMs);
        outcome = outcomeOfStatus(result.status, headerValue(result.headers, 'retry-after'));
        if (outcome.kind === 'retry') entry.lastEndpoint = undefined; // that replica answered and recorded nothing
      } catch (err) {
        if (this.#stopping.signal.aborted) return; // shutting down: it stays queued on disk
        outcome = outcomeOfError(err);
      } finally {
        this.#calls.delete(cancel);
      }
    }
    await this.#settle(entry, message, outcome, answer, policy);
  }

  async #settle(entry: Entry, message: StoredMessage, outcome: Outcome, answer: StoredResponse | undefined, policy: AsyncPolicy): Promise<void> {
    const now = Date.now();
    // A refusal never reached an app: it delays the message without using one of its attempts.
    const attempts = entry.summary.attempts + (outcome.kind === 'refused' ? 0 : 1);
    const failures = entry.failures + 1;
    const withAnswer = answer ? { response: answer } : {};
    let settlement: Settlement;
    if (outcome.kind === 'delivered') {
      settlement = { state: 'delivered', attempts, nextAttemptAt: now, ...withAnswer };
    } else if (outcome.kind === 'failed') {
      settlement = { state: 'failed', attempts, nextAttemptAt: now, lastError: outcome.error, ...withAnswer };
    } else {
      const retryAfterMs = outcome.kind === 'retry' ? outcome.retryAfterMs : undefined;
      // The age limit counts from acceptance, or from the replay that brought it back from the dead letters.
      const ageFrom = entry.summary.replayedAt ?? entry.summary.createdAt;
      const next = nextAttempt(policy, { attempts, failures, createdAt: ageFrom }, now, retryAfterMs);
      settlement = next.dead
        ? { state: 'dead', attempts, nextAttemptAt: now, lastError: { ...outcome.error, message: `${outcome.error.message}; ${next.why}` }, ...withAnswer }
        : { state: 'queued', attempts, nextAttemptAt: next.at, lastError: outcome.error };
    }
    await this.#deps.store.settle(message.id, settlement);
    this.#deps.onSettled?.(entry.summary, settlement.state === 'queued' ? 'retry' : settlement.state, attempts);
    if (settlement.state === 'queued') {
      entry.failures = failures;
      entry.summary = { ...entry.summary, attempts, nextAttemptAt: settlement.nextAttemptAt, updatedAt: now, ...(settlement.lastError ? { lastError: settlement.lastError } : {}) };
      this.#deps.logger.debug({ messageId: message.id, attempts, retryInMs: settlement.nextAttemptAt - now, code: settlement.lastError?.code }, 'delivery failed; will retry');
      this.#schedule(entry);
      return;
    }
    if (settlement.state === 'dead') {
      this.#deps.logger.warn({ messageId: message.id, target: message.service, attempts, code: settlement.lastError?.code }, `message is a dead letter: ${settlement.lastError?.message}`);
    }
    this.#forget(entry);
  }

  /** The message is finished (or deleted): drop it and let the next of its ordering key go. */
  #forget(entry: Entry): void {
    this.#entries.delete(entry.summary.id);
    const chainKey = chainOf(entry.summary);
    if (chainKey === undefined) return;
    const chain = this.#chains.get(chainKey);
    if (chain?.peek() !== entry) return; // only a chain's first message is ever delivered
    chain.shift();
    const next = chain.peek();
    if (next) this.#schedule(next);
    else this.#chains.delete(chainKey);
  }
}

/** Messages to one service with the same ordering key form one chain. */
function chainOf(summary: MessageSummary): string | undefined {
  return summary.orderingKey === undefined ? undefined : `${summary.service}.${summary.namespace}|${summary.endpoint ?? ''}|${summary.orderingKey}`;
}

/**
 * The app's answer as kept for the status API: at most MAX_STORED_ANSWER_BYTES of its body, read
 * within `timeoutMs` (a slow stream must not hold the delivery slot and its ordering key).
 */
async function keptAnswer(result: CallResult, timeoutMs: number): Promise<StoredResponse> {
  if (Buffer.isBuffer(result.body)) {
    const truncated = result.body.byteLength > MAX_STORED_ANSWER_BYTES;
    return { status: result.status, headers: truncated ? [...result.headers, TRUNCATED] : result.headers, body: truncated ? result.body.subarray(0, MAX_STORED_ANSWER_BYTES) : result.body };
  }
  const body = result.body;
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const timer = setTimeout(() => body.destroy(), timeoutMs > 0 ? timeoutMs : 30_000);
  try {
    for await (const chunk of body) {
      const room = MAX_STORED_ANSWER_BYTES - size;
      if ((chunk as Buffer).byteLength > room) {
        chunks.push((chunk as Buffer).subarray(0, room));
        truncated = true;
        break;
      }
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).byteLength;
    }
  } catch {
    truncated = true; // the status arrived: the delivery happened, whatever became of the body
  } finally {
    clearTimeout(timer);
    body.destroy();
  }
  return { status: result.status, headers: truncated ? [...result.headers, TRUNCATED] : result.headers, body: Buffer.concat(chunks) };
}

const TRUNCATED: Header = { name: 'mcp-mesh-answer-truncated', value: 'true' };
