// Waiting on events with a bound, so a broken feature fails the test with a message instead of
// hanging the run. The timer is a limit, never the synchronisation itself.

/** Resolve as `promise` does, or reject with `message` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${message} (waited ${ms} ms)`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
