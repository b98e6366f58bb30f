// Waiting on events with a bound, so a broken feature fails the test with a message instead of
// hanging the run. The timer is a limit, never the synchronisation itself.

const TIMED_OUT: unique symbol = Symbol('timed out');

/** What `promise` settles with, or TIMED_OUT once `ms` have passed first. */
function settleWithin<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => { timer = setTimeout(resolve, ms, TIMED_OUT); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolve as `promise` does, or reject with `message` after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  const result = await settleWithin(promise, ms);
  if (result === TIMED_OUT) throw new Error(`${message} (waited ${ms} ms)`);
  return result;
}

/**
 * Ask `check` until it says yes, for at most `ms` (default 5 s): for state that only a query shows (an
 * admin endpoint), never a fixed sleep. Each ask waits for the previous one, and is raced against the
 * time left, so a check that hangs or answers slowly cannot carry the wait past `ms`.
 */
export async function until(check: () => Promise<boolean> | boolean, options: { ms?: number; message: string }): Promise<void> {
  const ms = options.ms ?? 5000;
  const deadline = performance.now() + ms;
  let asks = 0;
  for (let left = ms; left > 0; left = deadline - performance.now()) {
    asks++;
    const answer = await settleWithin(Promise.resolve().then(check), left);
    if (answer === true) return;
    if (answer === TIMED_OUT) break;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`${options.message} (not so after ${ms} ms, ${asks} asks)`);
}
