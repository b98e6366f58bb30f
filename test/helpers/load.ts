// Bounded closed-loop load for integration tests: `concurrency` workers make at most `total` calls
// between them and stop at `timeLimitMs` whatever happens, so a broken feature fails the test's
// assertions instead of hanging the run.

export interface LoadOptions<T> {
  total: number;
  concurrency: number;
  /** Stop starting calls after this long. */
  timeLimitMs: number;
  /** Call number `i` (0-based, in the order calls start). */
  call(i: number): Promise<T>;
  /** Told each result as it comes (for tests that act mid-load). */
  onResult?(result: T, done: number): void;
}

export interface LoadResult<T> {
  /** Results in call order; shorter than `total` if the time limit stopped the load. */
  results: T[];
  elapsedMs: number;
}

export async function runLoad<T>(options: LoadOptions<T>): Promise<LoadResult<T>> {
  const results: T[] = [];
  const started = performance.now();
  const deadline = started + options.timeLimitMs;
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < options.total && performance.now() < deadline) {
      const i = next++;
      results[i] = await options.call(i);
      done++;
      options.onResult?.(results[i], done);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { results: results.slice(0, done), elapsedMs: performance.now() - started };
}

/** A promise that resolves the first time `check()` is true after `poke()` is called. */
export function condition(check: () => boolean): { poke(): void; met: Promise<void> } {
  let resolve!: () => void;
  const met = new Promise<void>((r) => { resolve = r; });
  const poke = () => { if (check()) resolve(); };
  return { poke, met };
}
