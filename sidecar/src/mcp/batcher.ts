import { Priority, type Envelope } from './codec.ts';

export interface BatcherOptions {
  /** Most envelopes in one batch. */
  maxCount: number;
  /** Most payload bytes in one batch (an envelope larger than this still goes, alone). */
  maxBytes: number;
  /** Extra wait before a flush, in ms. 0 (the default) means: flush as soon as the link can take it. */
  lingerMs: number;
}

/** Where batches go. `write` returns false when the transport is full; then call `Batcher.drained()`. */
export type BatchSink = (envelopes: Envelope[]) => boolean;

/**
 * Coalesces envelopes into batches for one link, highest priority first.
 *
 * No fixed linger by default: the first envelope schedules a flush with setImmediate, which runs right
 * after the current I/O phase. Everything that arrived in that same event-loop turn (a burst of
 * requests on many connections) leaves in one batch; a lone call leaves at once. While the transport
 * is full (write returned false), envelopes accumulate and leave together on drain, so batches grow
 * exactly when load does.
 */
export class Batcher {
  readonly #sink: BatchSink;
  readonly #options: BatcherOptions;
  // One lane per priority; index = Priority value order below.
  readonly #lanes: Envelope[][] = [[], [], []];
  #queued = 0;
  #scheduled = false;
  #blocked = false;
  #closed = false;

  constructor(sink: BatchSink, options: BatcherOptions) {
    this.#sink = sink;
    this.#options = options;
  }

  get queued(): number {
    return this.#queued;
  }

  enqueue(envelope: Envelope): void {
    if (this.#closed) throw new Error('batcher is closed');
    this.#lanes[laneOf(envelope.priority)]!.push(envelope);
    this.#queued++;
    this.#schedule();
  }

  /** Take back an envelope not yet sent; false if it already left (or was never queued). */
  remove(envelope: Envelope): boolean {
    const lane = this.#lanes[laneOf(envelope.priority)]!;
    const index = lane.indexOf(envelope);
    if (index < 0) return false;
    lane.splice(index, 1);
    this.#queued--;
    return true;
  }

  /** The transport can take more again. */
  drained(): void {
    this.#blocked = false;
    if (this.#queued > 0) this.#schedule();
  }

  /** Stop batching; returns what was never sent so the caller can fail those calls. */
  close(): Envelope[] {
    this.#closed = true;
    const unsent = this.#lanes.flat();
    for (const lane of this.#lanes) lane.length = 0;
    this.#queued = 0;
    return unsent;
  }

  #schedule(): void {
    if (this.#scheduled || this.#blocked) return;
    this.#scheduled = true;
    if (this.#options.lingerMs > 0) setTimeout(() => this.#flush(), this.#options.lingerMs);
    else setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    while (!this.#closed && !this.#blocked && this.#queued > 0) {
      const batch = this.#take();
      this.#blocked = !this.#sink(batch);
    }
  }

  #take(): Envelope[] {
    const { maxCount, maxBytes } = this.#options;
    const batch: Envelope[] = [];
    let bytes = 0;
    let full = false;
    for (const lane of this.#lanes) {
      let taken = 0;
      while (taken < lane.length) {
        const size = sizeOf(lane[taken]!);
        if (batch.length >= maxCount || (batch.length > 0 && bytes + size > maxBytes)) {
          full = true; // never let a lower lane fill the room a higher one could not use
          break;
        }
        batch.push(lane[taken]!);
        bytes += size;
        taken++;
      }
      if (taken > 0) lane.splice(0, taken);
      if (full) break;
    }
    this.#queued -= batch.length;
    return batch;
  }
}

function laneOf(priority: Priority | undefined): number {
  if (priority === Priority.HIGH) return 0;
  if (priority === Priority.LOW) return 2;
  return 1;
}

function sizeOf(envelope: Envelope): number {
  return 64 + (envelope.payload?.byteLength ?? 0);
}
