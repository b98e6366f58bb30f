// Concurrency limit for calls from this sidecar to one service: at most maxInFlight calls at once,
// up to maxQueue more waiting — high priority first, then medium, then low, each lane in FIFO order,
// so a flood of low-priority calls never holds a high one back — and anything beyond refused at once with OVERLOADED
// (shedding early beats queueing into the deadline). A call holds its slot across its retries: the
// limit is on calls, the retry budget is what bounds the extra tries.
import { MeshError } from '../errors/mesh-error.ts';
import type { ConcurrencyPolicy, PriorityName } from '../policy/types.ts';

/** 503 OVERLOADED with the Retry-After (seconds) the answer should carry. */
export class OverloadedError extends MeshError {
  constructor(service: string | undefined, message: string, retryAfterSeconds: number) {
    super('OVERLOADED', message, { service, retryAfterSeconds });
  }
}

/** Gives the slot back; calling it more than once does nothing. */
export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
}

export class ConcurrencyLimiter {
  readonly #service: string | undefined;
  #policy: ConcurrencyPolicy;
  #inFlight = 0;
  // One lane per priority, highest first. A Set keeps insertion order (FIFO) and removes an aborted
  // waiter in O(1).
  readonly #lanes: Record<PriorityName, Set<Waiter>> = { high: new Set(), medium: new Set(), low: new Set() };

  constructor(policy: ConcurrencyPolicy, service?: string) {
    this.#policy = policy;
    this.#service = service;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get queued(): number {
    return this.#lanes.high.size + this.#lanes.medium.size + this.#lanes.low.size;
  }

  /** Swap the policy; a higher limit lets waiters in at once. */
  setPolicy(policy: ConcurrencyPolicy): void {
    this.#policy = policy;
    this.#drain();
  }

  /**
   * Wait for a slot. Resolves with its release function; rejects with OverloadedError when the queue
   * is full, or with the signal's reason when the signal aborts first (the waiter leaves the queue).
   */
  acquire(signal?: AbortSignal, priority: PriorityName = 'medium'): Promise<Release> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const free = this.tryAcquire();
    if (free) return Promise.resolve(free);
    if (this.queued >= this.#policy.maxQueue) {
      return Promise.reject(new OverloadedError(this.#service,
        `${this.#inFlight} calls in flight and ${this.queued} waiting${this.#service ? ` for ${this.#service}` : ''}: limit reached`,
        this.#policy.retryAfterSeconds));
    }
    const lane = this.#lanes[priority];
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        lane.delete(waiter);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      lane.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** A slot now, if one is free (no wait, no promise); undefined when the caller must queue (acquire). */
  tryAcquire(): Release | undefined {
    return this.#hasRoom() ? this.#take() : undefined;
  }

  #hasRoom(): boolean {
    return this.#policy.maxInFlight === 0 || this.#inFlight < this.#policy.maxInFlight;
  }

  #take(): Release {
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      this.#drain();
    };
  }

  #drain(): void {
    if (this.queued === 0) return; // nearly always: no lanes to walk
    for (const lane of [this.#lanes.high, this.#lanes.medium, this.#lanes.low]) {
      for (const waiter of lane) {
        if (!this.#hasRoom()) return;
        lane.delete(waiter);
        waiter.grant(this.#take());
      }
    }
  }
}
