// Deadlines of calls, on one timer. Every call has a deadline and nearly every call ends long before
// it: a Node timer per call (made, linked into Node's timer lists, unlinked, often with a call into
// libuv to re-arm its timer) was a visible share of a sidecar's time for a timer that never fires.
// Here a deadline is one small list entry. The list is kept in order of expiry (inserted from the
// end, where a new deadline nearly always belongs, since most calls share a few durations), and one
// Node timer is armed for the earliest; a cancelled deadline is only unlinked. When the timer fires
// it runs what is due and re-arms for the next.
//
// Deadlines fire within a millisecond of their time, as Node's own timers do (whole milliseconds).
// The clock is injectable so tests drive it with node:test's mock timers instead of sleeping.

export interface Deadline {
  /** The call ended first: the deadline will not fire. */
  cancel(): void;
}

class Entry implements Deadline {
  readonly at: number;
  readonly fire: () => void;
  readonly owner: DeadlineTimers;
  prev: Entry | undefined;
  next: Entry | undefined;
  linked = true;

  constructor(owner: DeadlineTimers, at: number, fire: () => void) {
    this.owner = owner;
    this.at = at;
    this.fire = fire;
  }

  cancel(): void {
    if (this.linked) this.owner.unlink(this);
  }
}

/** Milliseconds from any fixed start; the timer that wakes the list is the global setTimeout. */
export interface DeadlineClock {
  now(): number;
}

export class DeadlineTimers {
  #head: Entry | undefined;
  #tail: Entry | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When the timer is due to fire (clock time); Infinity when none is armed. */
  #armedAt = Infinity;
  readonly #clock: DeadlineClock;

  constructor(clock: DeadlineClock = performance) {
    this.#clock = clock;
  }

  /** Call `fire` once `ms` milliseconds have passed, unless cancelled first. */
  start(ms: number, fire: () => void): Deadline {
    const now = this.#clock.now();
    const entry = new Entry(this, now + ms, fire);
    let before = this.#tail;
    while (before !== undefined && before.at > entry.at) before = before.prev;
    entry.prev = before;
    entry.next = before === undefined ? this.#head : before.next;
    if (entry.next) entry.next.prev = entry; else this.#tail = entry;
    if (before) before.next = entry; else this.#head = entry;
    if (entry.at < this.#armedAt) this.#arm(now, entry.at);
    else this.#timer!.ref(); // armed earlier: it fires, finds nothing due and re-arms for this one
    return entry;
  }

  /** @internal Entry.cancel */
  unlink(entry: Entry): void {
    entry.linked = false;
    if (entry.prev) entry.prev.next = entry.next; else this.#head = entry.next;
    if (entry.next) entry.next.prev = entry.prev; else this.#tail = entry.prev;
    entry.prev = entry.next = undefined;
    // Nothing left to wait for: the armed timer stays (re-arming costs more) but keeps no process alive.
    if (this.#head === undefined) this.#timer?.unref();
  }

  #arm(now: number, at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(this.#due, Math.max(1, Math.ceil(at - now)));
  }

  readonly #due = (): void => {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const now = this.#clock.now();
    // Node's timers count whole milliseconds: what is due within the next one fires now.
    while (this.#head !== undefined && this.#head.at <= now + 1) {
      const entry = this.#head;
      this.unlink(entry);
      entry.fire();
    }
    if (this.#head !== undefined) this.#arm(now, this.#head.at);
  };
}

/** The process's deadlines (calls out through the pipeline, calls in to the app). */
export const deadlines = new DeadlineTimers();
