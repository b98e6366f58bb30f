// Waiting on events with a bound, so a broken feature fails the test with a message instead of
// hanging the run. The timer is a limit, never the synchronisation itself.

/** Resolve as `promise` does, or reject with `message` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${message} (waited ${ms} ms)`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Ask `check` until it says yes, at most `tries` times and for at most `ms`: for state that only a
 * query shows (an admin endpoint), never a fixed sleep. Each ask waits for the previous one.
 */
export async function until(check: () => Promise<boolean>, options: { tries?: number; ms?: number; message: string }): Promise<void> {
  const deadline = performance.now() + (options.ms ?? 5000);
  for (let i = 0; i < (options.tries ?? 1000) && performance.now() < deadline; i++) {
    if (await check()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`${options.message} (asked ${options.tries ?? 1000} times or for ${options.ms ?? 5000} ms)`);
}
