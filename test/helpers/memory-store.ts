// A test double of the durable MessageStore (async/types.ts): the same contract, in memory, with no
// disk. For unit tests of the parts built on a store (dispatcher, dedup); the real store has its own
// tests against SQLite (test/unit/async/store.test.ts).
import type {
  MessageStore, MessageSummary, NewMessage, SeenRecord, Settlement, StateCounts, StorageError, StoredMessage,
} from '../../sidecar/src/async/types.ts';

export class MemoryStoreDouble implements MessageStore {
  readonly messages = new Map<string, StoredMessage>();
  readonly seenRecords = new Map<string, SeenRecord>();
  readonly settlements: { id: string; settlement: Settlement }[] = [];
  /** What onFailure registered; never called by the double itself (call them to simulate a failure). */
  readonly failureListeners: ((err: StorageError) => void)[] = [];
  #seq = 0;

  async accept(messages: readonly NewMessage[]): Promise<void> {
    for (const m of messages) {
      this.messages.set(m.id, { ...m, seq: ++this.#seq, state: 'queued', attempts: 0, nextAttemptAt: m.createdAt, updatedAt: m.createdAt });
    }
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    return this.messages.get(id);
  }

  async getMany(ids: readonly string[]): Promise<StoredMessage[]> {
    return ids.flatMap((id) => this.messages.get(id) ?? []);
  }

  async unfinished(): Promise<MessageSummary[]> {
    return [...this.messages.values()].filter((m) => m.state === 'queued').sort((a, b) => a.seq - b.seq).map(summary);
  }

  async settle(id: string, settlement: Settlement): Promise<void> {
    this.settlements.push({ id, settlement });
    const m = this.messages.get(id);
    if (m) this.messages.set(id, { ...m, ...settlement, updatedAt: Date.now() });
  }

  async deadLetters(options: { limit: number; after?: string }): Promise<StoredMessage[]> {
    const dead = [...this.messages.values()].filter((m) => m.state === 'dead').sort((a, b) => a.seq - b.seq);
    const start = options.after ? dead.findIndex((m) => m.id === options.after) + 1 : 0;
    return dead.slice(start, start + options.limit);
  }

  async replay(id: string, now: number): Promise<MessageSummary | undefined> {
    const m = this.messages.get(id);
    if (m?.state !== 'dead') return undefined;
    const replayed: StoredMessage = { ...m, state: 'queued', attempts: 0, nextAttemptAt: now, updatedAt: now, replayedAt: now };
    this.messages.set(id, replayed);
    return summary(replayed);
  }

  async replayAll(now: number): Promise<MessageSummary[]> {
    const out: MessageSummary[] = [];
    for (const m of await this.deadLetters({ limit: Infinity })) out.push((await this.replay(m.id, now))!);
    return out;
  }

  async deleteDead(id: string): Promise<boolean> {
    return this.messages.get(id)?.state === 'dead' && this.messages.delete(id);
  }

  async deleteAllDead(): Promise<number> {
    let n = 0;
    for (const m of [...this.messages.values()]) if (m.state === 'dead' && this.messages.delete(m.id)) n++;
    return n;
  }

  async counts(): Promise<StateCounts> {
    const counts: StateCounts = { queued: 0, delivered: 0, failed: 0, dead: 0 };
    for (const m of this.messages.values()) counts[m.state]++;
    return counts;
  }

  async purgeFinished(before: number): Promise<number> {
    let n = 0;
    for (const m of [...this.messages.values()]) if ((m.state === 'delivered' || m.state === 'failed') && m.updatedAt < before && this.messages.delete(m.id)) n++;
    return n;
  }

  async seen(key: string): Promise<SeenRecord | undefined> {
    return this.seenRecords.get(key);
  }

  async remember(record: SeenRecord): Promise<void> {
    this.seenRecords.set(record.key, record);
  }

  async forgetSeen(before: number): Promise<number> {
    let n = 0;
    for (const [key, r] of [...this.seenRecords]) if (r.at < before && this.seenRecords.delete(key)) n++;
    return n;
  }

  onFailure(listener: (err: StorageError) => void): void {
    this.failureListeners.push(listener);
  }

  async close(): Promise<void> {}
}

function summary(m: StoredMessage): MessageSummary {
  const { request: _request, response: _response, ...rest } = m;
  return rest;
}
