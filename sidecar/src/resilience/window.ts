// Counting over a sliding window of time: a ring of fixed-width buckets that slides with an
// injectable clock, so nothing runs on a timer and tests move time by hand. Used by the retry
// budget, the circuit breakers (whose counts opossum keeps: they only need the bucket clock) and
// the admin listener's live stats.

/**
 * Time → bucket number, counted from `origin` in `bucketMs` steps. Never goes back: a clock that
 * steps backwards stays in the newest bucket seen.
 */
export class BucketClock {
  readonly bucketMs: number;
  readonly #origin: number;
  #latest = 0;

  constructor(bucketMs: number, origin: number) {
    this.bucketMs = Math.max(1, bucketMs);
    this.#origin = origin;
  }

  /** The bucket `at` falls in (the newest seen, if `at` is earlier). Changes nothing. */
  bucketAt(at: number): number {
    return Math.max(this.#latest, Math.floor((at - this.#origin) / this.bucketMs));
  }

  /** When `bucket` begins: the first time bucketAt() puts in it. */
  startOf(bucket: number): number {
    return this.#origin + bucket * this.bucketMs;
  }

  /** The newest bucket moved to. */
  get latest(): number {
    return this.#latest;
  }

  /** Move to the bucket of `at`; returns how many buckets began since the last move (0 for none). */
  advance(at: number): number {
    const bucket = this.bucketAt(at);
    const steps = bucket - this.#latest;
    this.#latest = bucket;
    return steps;
  }
}

export type Counts = Float64Array | Uint32Array;

export interface RollingCountersOptions {
  /** Buckets in the ring: the window is this many buckets, the one filling now included. */
  buckets: number;
  bucketMs: number;
  /** Counters per bucket. */
  lanes?: number;
  /** The clock, for calls that do not pass a time (Date.now by default). */
  now?: () => number;
  /** When bucket 0 began (by default the clock's time at construction). */
  origin?: number;
  /** Float64Array (the default) or Uint32Array, for many small counts. */
  counts?: Float64ArrayConstructor | Uint32ArrayConstructor;
  /** The value each lane restarts from in a new bucket (0 by default; e.g. Infinity for a minimum). */
  fresh?: readonly number[];
}

/**
 * `lanes` counters per bucket over the last `buckets` buckets. Write into `current()` (the bucket
 * of now, cleared first if the ring has come round to it); read the window with `sum()` or bucket
 * by bucket with `bucket(back)`. Reads never change the ring.
 */
export class RollingCounters {
  readonly buckets: number;
  readonly lanes: number;
  readonly #clock: BucketClock;
  readonly #now: () => number;
  /** The bucket number each slot holds; NaN for none yet. */
  readonly #held: Float64Array;
  /** One view per slot over `#counts`, made once so the hot path allocates nothing. */
  readonly #views: Counts[];
  readonly #fresh: readonly number[] | undefined;
  /** The view current() last returned, and the time its bucket ends: until then, current() returns it. */
  #currentView: Counts | undefined;
  #currentEnds = -Infinity;

  constructor(options: RollingCountersOptions) {
    this.buckets = options.buckets;
    this.lanes = options.lanes ?? 1;
    this.#now = options.now ?? Date.now;
    this.#clock = new BucketClock(options.bucketMs, options.origin ?? this.#now());
    this.#held = new Float64Array(this.buckets).fill(Number.NaN);
    const counts = new (options.counts ?? Float64Array)(this.buckets * this.lanes);
    this.#views = Array.from({ length: this.buckets }, (_, slot) => counts.subarray(slot * this.lanes, (slot + 1) * this.lanes));
    this.#fresh = options.fresh;
    for (const view of this.#views) this.#clear(view);
  }

  get bucketMs(): number {
    return this.#clock.bucketMs;
  }

  /** The counters of the bucket `at` falls in, to add to. */
  current(at: number = this.#now()): Counts {
    // Most writes fall in the bucket of the write before (and an earlier time stays in it: the
    // clock never goes back), so they skip the bucket arithmetic.
    if (at < this.#currentEnds) return this.#currentView!;
    this.#clock.advance(at);
    const bucket = this.#clock.latest;
    const slot = this.#slotOf(bucket);
    const view = this.#views[slot]!;
    if (this.#held[slot] !== bucket) {
      this.#held[slot] = bucket;
      this.#clear(view);
    }
    this.#currentView = view;
    this.#currentEnds = this.#clock.startOf(bucket + 1);
    return view;
  }

  /** Add `amount` to one lane of the current bucket. */
  add(lane = 0, amount = 1, at: number = this.#now()): void {
    this.current(at)[lane]! += amount;
  }

  /**
   * The counters of the bucket `back` buckets before the one `at` falls in (0: that one itself);
   * undefined when nothing was counted in it or it has left the ring.
   */
  bucket(back: number, at: number = this.#now()): Counts | undefined {
    if (back < 0 || back >= this.buckets) return undefined;
    const wanted = this.#clock.bucketAt(at) - back;
    const slot = this.#slotOf(wanted);
    return this.#held[slot] === wanted ? this.#views[slot] : undefined;
  }

  /** One lane summed over the window that ends in the bucket of `at`. */
  sum(lane = 0, at: number = this.#now()): number {
    let total = 0;
    for (let back = 0; back < this.buckets; back++) total += this.bucket(back, at)?.[lane] ?? 0;
    return total;
  }

  #slotOf(bucket: number): number {
    const slot = bucket % this.buckets;
    return slot < 0 ? slot + this.buckets : slot;
  }

  #clear(view: Counts): void {
    if (this.#fresh) view.set(this.#fresh);
    else view.fill(0);
  }
}
