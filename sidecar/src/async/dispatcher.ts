// Moves accepted messages from the outbox to their destinations, one delivery attempt at a time,
// through the same call pipeline as synchronous calls (policies, balancing, breakers, links).
//
//   queued message ──► its lane (high, medium, low) when due, and first of its ordering key
//                 ──► a delivery slot of that lane (storage.deliveryConcurrency each)
//                 ──► pipeline (one try) ──► delivered / failed / again later / dead, written to disk
//
// Lanes have slots of their own, so a flood of low-priority messages never holds a high one back.
// Messages sharing an ordering key go one at a time in acceptance order: the next leaves only when
// the one before is delivered, failed or dead, so order holds through retries.
// The in-memory index holds summaries only; a message's body is read from the store when it leaves.
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { CallPipeline, CallResult } from '../call/pipeline.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { headerValue } from '../http/headers.ts';
import type { Endpoint } from '../discovery/resolver.ts';
import type { AsyncPolicy } from '../policy/types.ts';
import type { Header } from '../mcp/codec.ts';
import { nextAttempt, outcomeOfError, outcomeOfStatus, type Outcome } from './outcome.ts';
import type { MessageStore, MessageSummary, PriorityName, Settlement, StoredMessage, StoredResponse } from './types.ts';

/** Largest answer kept for GET /mesh/v1/messages/<id>; the rest is dropped (and the answer marked so). */
export const MAX_STORED_ANSWER_BYTES = 1024 * 1024;

const LANES: readonly PriorityName[] = ['high', 'medium', 'low'];

export interface DispatcherDeps {
  store: MessageStore;
  pipeline: CallPipeline;
  /** The async policy for a message (service, route). */
  policy: (message: MessageSummary & { method: string; path: string; headers: readonly Header[] }) => AsyncPolicy;
  endpoints: (service: string, namespace: string) => readonly Endpoint[] | undefined;
  /** Deliveries in flight at once, per lane. */
  concurrency: number;
  logger: Logger;
  onSettled?: (message: MessageSummary, state: Settlement['state'] | 'retry', attempts: number) => void;
}

interface Entry {
  summary: MessageSummary;
  /** Where the last attempt went: the next one prefers it, to meet the receiver's record there. */
  lastEndpoint?: string;
  running: boolean;
}

export class Dispatcher {
  readonly #deps: DispatcherDeps;
  readonly #entries = new Map<string, Entry>();
  /** Due and free to go, by lane, in acceptance order. */
  readonly #ready: Record<PriorityName, Entry[]> = { high: [], medium: [], low: [] };
  readonly #inFlight: Record<PriorityName, number> = { high: 0, medium: 0, low: 0 };
  /** Waiting for a back-off to pass, soonest first. */
  readonly #later: Entry[] = [];
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  /** Messages of one ordering key, in acceptance order; only the first may be delivered. */
  readonly #chains = new Map<string, Entry[]>();
  readonly #stopping = new AbortController();
  readonly #running = new Set<Promise<void>>();

  constructor(deps: DispatcherDeps) {
    this.#deps = deps;
    // Every running delivery listens on this one signal: that many listeners is by design, not a leak.
    setMaxListeners(0, this.#stopping.signal);
  }

  /** Load what the outbox still holds (after a restart: everything not finished) and start. */
  async start(): Promise<void> {
    for (const summary of await this.#deps.store.unfinished()) this.add(summary);
  }

  /** A message just written to the outbox. */
  add(summary: MessageSummary): void {
    if (this.#entries.has(summary.id) || this.#stopping.signal.aborted) return;
    const entry: Entry = { summary, running: false };
    this.#entries.set(summary.id, entry);
    const chainKey = chainOf(summary);
    if (chainKey !== undefined) {
      const chain = this.#chains.get(chainKey);
      if (chain) { chain.push(entry); return; } // waits for the ones before it
      this.#chains.set(chainKey, [entry]);
    }
    this.#schedule(entry);
    this.#pump();
  }

  /** Whether a message is being delivered right now (its state on disk is still `queued`). */
  isInFlight(id: string): boolean {
    return this.#entries.get(id)?.running ?? false;
  }

  /** Messages waiting or in flight, per lane. */
  get depth(): Record<PriorityName, number> {
    const depth = { high: 0, medium: 0, low: 0 };
    for (const entry of this.#entries.values()) depth[entry.summary.priority]++;
    return depth;
  }

  /** Stop starting deliveries and cut the running ones; what they carried stays queued on disk. */
  async stop(): Promise<void> {
    this.#stopping.abort(new MeshError('SHUTTING_DOWN', 'this sidecar is shutting down'));
    clearTimeout(this.#timer);
    await Promise.allSettled([...this.#running]);
  }

  // ---- scheduling ----

  #schedule(entry: Entry): void {
    if (entry.summary.nextAttemptAt <= Date.now()) {
      this.#ready[entry.summary.priority].push(entry);
      return;
    }
    // Sorted insert: the soonest first.
    const at = entry.summary.nextAttemptAt;
    let low = 0;
    let high = this.#later.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.#later[mid]!.summary.nextAttemptAt <= at) low = mid + 1; else high = mid;
    }
    this.#later.splice(low, 0, entry);
    this.#armTimer();
  }

  #armTimer(): void {
    const first = this.#later[0];
    if (!first || first.summary.nextAttemptAt >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = first.summary.nextAttemptAt;
    this.#timer = setTimeout(() => {
      this.#timerAt = Infinity;
      const now = Date.now();
      while (this.#later.length > 0 && this.#later[0]!.summary.nextAttemptAt <= now) {
        const entry = this.#later.shift()!;
        this.#ready[entry.summary.priority].push(entry);
      }
      this.#armTimer();
      this.#pump();
    }, Math.max(0, this.#timerAt - Date.now()));
    this.#timer.unref();
  }

  #pump(): void {
    if (this.#stopping.signal.aborted) return;
    for (const lane of LANES) {
      const ready = this.#ready[lane];
      while (ready.length > 0 && this.#inFlight[lane] < this.#deps.concurrency) {
        const entry = ready.shift()!;
        if (!this.#entries.has(entry.summary.id)) continue; // gone meanwhile
        this.#inFlight[lane]++;
        entry.running = true;
        const run = this.#deliver(entry)
          .catch((err: unknown) => this.#deps.logger.error({ messageId: entry.summary.id, err: String(err) }, 'delivery bookkeeping failed; the message stays queued'))
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

  // ---- one attempt ----

  async #deliver(entry: Entry): Promise<void> {
    const summary = entry.summary;
    const message = await this.#deps.store.get(summary.id);
    if (!message) { this.#forget(entry); return; } // deleted meanwhile
    const attempt = summary.attempts + 1;
    const policy = this.#deps.policy({ ...summary, method: message.request.method, path: message.request.path, headers: message.request.headers });
    let outcome: Outcome;
    let answer: StoredResponse | undefined;
    if (summary.endpoint !== undefined && !this.#deps.endpoints(summary.service, summary.namespace)?.some((e) => e.address === summary.endpoint)) {
      // A broadcast to a replica that has left: nobody is left to receive this copy.
      outcome = { kind: 'failed', error: { code: 'NO_HEALTHY_ENDPOINT', message: `replica ${summary.endpoint} left ${summary.service} before the event reached it` } };
    } else {
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
          signal: this.#stopping.signal,
          priority: summary.priority,
          delivery: {
            messageId: summary.id, attempt, ...(summary.topic ? { topic: summary.topic } : {}),
            ...(summary.endpoint !== undefined ? { endpoint: summary.endpoint, pinned: true } : { ...(entry.lastEndpoint ? { endpoint: entry.lastEndpoint } : {}), pinned: false }),
          },
        });
        entry.lastEndpoint = result.endpoint;
        answer = await keptAnswer(result);
        outcome = outcomeOfStatus(result.status, headerValue(result.headers, 'retry-after'));
      } catch (err) {
        if (this.#stopping.signal.aborted) return; // shutting down: it stays queued on disk
        outcome = outcomeOfError(err);
      }
    }
    await this.#settle(entry, message, attempt, outcome, answer, policy);
  }

  async #settle(entry: Entry, message: StoredMessage, attempts: number, outcome: Outcome, answer: StoredResponse | undefined, policy: AsyncPolicy): Promise<void> {
    const now = Date.now();
    let settlement: Settlement;
    if (outcome.kind === 'delivered') {
      settlement = { state: 'delivered', attempts, nextAttemptAt: now, ...(answer ? { response: answer } : {}) };
    } else if (outcome.kind === 'failed') {
      settlement = { state: 'failed', attempts, nextAttemptAt: now, lastError: outcome.error, ...(answer ? { response: answer } : {}) };
    } else {
      const next = nextAttempt(policy, { attempts, createdAt: message.createdAt }, now, outcome.retryAfterMs);
      settlement = next.dead
        ? { state: 'dead', attempts, nextAttemptAt: now, lastError: { ...outcome.error, message: `${outcome.error.message}; ${next.why}` }, ...(answer ? { response: answer } : {}) }
        : { state: 'queued', attempts, nextAttemptAt: next.at, lastError: outcome.error };
    }
    await this.#deps.store.settle(message.id, settlement);
    this.#deps.onSettled?.(entry.summary, settlement.state === 'queued' ? 'retry' : settlement.state, attempts);
    if (settlement.state === 'queued') {
      entry.summary = { ...entry.summary, attempts, nextAttemptAt: settlement.nextAttemptAt, updatedAt: now, ...(settlement.lastError ? { lastError: settlement.lastError } : {}) };
      this.#deps.logger.debug({ messageId: message.id, attempts, retryInMs: settlement.nextAttemptAt - now, code: outcome.kind === 'retry' ? outcome.error.code : undefined }, 'delivery failed; will retry');
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
    if (!chain) return;
    const index = chain.indexOf(entry);
    if (index >= 0) chain.splice(index, 1);
    if (chain.length === 0) { this.#chains.delete(chainKey); return; }
    if (index === 0) this.#schedule(chain[0]!);
  }
}

/** Messages to one service with the same ordering key form one chain. */
function chainOf(summary: MessageSummary): string | undefined {
  return summary.orderingKey === undefined ? undefined : `${summary.service}.${summary.namespace}|${summary.endpoint ?? ''}|${summary.orderingKey}`;
}

/** The app's answer as kept for the status API: at most MAX_STORED_ANSWER_BYTES of its body. */
async function keptAnswer(result: CallResult): Promise<StoredResponse> {
  if (Buffer.isBuffer(result.body)) {
    const truncated = result.body.byteLength > MAX_STORED_ANSWER_BYTES;
    return { status: result.status, headers: truncated ? [...result.headers, TRUNCATED] : result.headers, body: truncated ? result.body.subarray(0, MAX_STORED_ANSWER_BYTES) : result.body };
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  try {
    for await (const chunk of result.body) {
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
    result.body.destroy();
  }
  return { status: result.status, headers: truncated ? [...result.headers, TRUNCATED] : result.headers, body: Buffer.concat(chunks) };
}

const TRUNCATED: Header = { name: 'mcp-mesh-answer-truncated', value: 'true' };
