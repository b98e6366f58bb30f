// Back-off between tries of something that failed: the one exponential schedule of the sidecar,
// used by call retries, egress retries, link reconnects, durable message redelivery and discovery
// (DNS re-resolves, Kubernetes list/watch restarts). Pure functions of the try number; the caller
// owns the timer.

export interface BackoffSettings {
  /** The ceiling after the first failure. */
  baseMs: number;
  /** The ceiling never grows past this. */
  maxMs: number;
}

// base·2^52 is past any cap a setting can hold; a bounded exponent also keeps 0·2^n from being NaN.
const MAX_EXPONENT = 52;

/**
 * The exponential ceiling after `failures` failures (1 for the first): min(max, base·2^(failures−1)).
 * Used as it is where one waiter backs off alone (a resolver's next lookup, a watch restart).
 */
export function backoffCeiling(settings: BackoffSettings, failures: number): number {
  const exponent = Math.min(Math.max(failures - 1, 0), MAX_EXPONENT);
  return Math.min(settings.maxMs, settings.baseMs * 2 ** exponent);
}

/**
 * Full jitter: uniform in [0, ceiling] for `failures` failures, so a crowd of callers failing
 * together spreads out instead of trying again in step. `floorMs` (a Retry-After the other side
 * asked for) raises the wait, itself capped by `maxMs` so the other side cannot park us for good.
 */
export function jitteredBackoff(settings: BackoffSettings, failures: number, random: () => number = Math.random, floorMs = 0): number {
  const jittered = random() * backoffCeiling(settings, failures);
  return floorMs > 0 ? Math.max(jittered, Math.min(floorMs, settings.maxMs)) : jittered;
}
