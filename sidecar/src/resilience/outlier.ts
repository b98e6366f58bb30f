// Outlier ejection for one service's endpoints (Envoy's outlier detection, simplified):
//   - consecutive failures: the Nth failure in a row ejects the endpoint at once;
//   - success rate: every interval, endpoints with enough calls whose success rate is below
//     mean − factor·stdev (of those endpoints) are ejected;
//   - an ejection lasts base × times ejected (capped at max); each whole interval an endpoint spends
//     back in service takes one off its count, so a flap long ago does not keep it out for long;
//   - never more than maxEjectionPercent of the endpoints out at once, but at least one may be.
// Time is read from an injectable clock and everything happens lazily on the next call (returning
// endpoints, evaluating an interval that has ended): no timers to leak or to fake in tests.
import type { OutlierDetectionPolicy } from '../policy/types.ts';

export type EjectionReason = 'consecutive-failures' | 'success-rate';

export interface OutlierEndpointSnapshot {
  address: string;
  ejected: boolean;
  reason?: EjectionReason;
  /** Milliseconds until an ejected endpoint returns. */
  returnsInMs?: number;
  timesEjected: number;
  consecutiveFailures: number;
  /** Calls and failures in the current success-rate interval. */
  requests: number;
  failures: number;
}

export interface OutlierDetectorOptions {
  now?: () => number;
  onEject?: (address: string, reason: EjectionReason, durationMs: number) => void;
  onReturn?: (address: string) => void;
}

interface EndpointHealth {
  consecutiveFailures: number;
  requests: number;
  failures: number;
  timesEjected: number;
  /** Set while ejected: why, and until when. */
  reason: EjectionReason | undefined;
  ejectedUntil: number;
  /** When it last came (back) into service: whole intervals since then reduce timesEjected. */
  inServiceSince: number;
}

export class OutlierDetector {
  #policy: OutlierDetectionPolicy;
  readonly #now: () => number;
  readonly #options: OutlierDetectorOptions;
  readonly #endpoints = new Map<string, EndpointHealth>();
  #ejectedCount = 0;
  /** Earliest ejectedUntil among ejected endpoints (Infinity when none), so most calls skip the scan. */
  #nextReturn = Infinity;
  #intervalStart: number;

  constructor(policy: OutlierDetectionPolicy, options: OutlierDetectorOptions = {}) {
    this.#policy = policy;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#intervalStart = this.#now();
  }

  /** Swap the policy, keeping what is known about the endpoints. */
  setPolicy(policy: OutlierDetectionPolicy): void {
    this.#policy = policy;
  }

  /** The service's current endpoints (for the ejection cap); state of endpoints that left is dropped. */
  setEndpoints(addresses: Iterable<string>): void {
    const live = new Set(addresses);
    for (const [address, health] of this.#endpoints) {
      if (live.has(address)) continue;
      if (health.reason) this.#ejectedCount--;
      this.#endpoints.delete(address);
    }
    for (const address of live) this.#health(address);
  }

  /** Count the outcome of one call to `address` (ok: it answered, and not with a failure status). */
  record(address: string, ok: boolean): void {
    if (!this.#policy.enabled) return;
    const now = this.#tick();
    const health = this.#health(address);
    health.requests++;
    if (ok) {
      health.consecutiveFailures = 0;
      return;
    }
    health.failures++;
    if (health.reason) return; // calls that were in flight when it was ejected
    health.consecutiveFailures++;
    if (health.consecutiveFailures >= this.#policy.consecutiveFailures) this.#eject(address, health, 'consecutive-failures', now);
  }

  isEjected(address: string): boolean {
    if (!this.#policy.enabled) return false;
    this.#tick();
    return this.#endpoints.get(address)?.reason !== undefined;
  }

  snapshot(): OutlierEndpointSnapshot[] {
    const now = this.#tick();
    return [...this.#endpoints].map(([address, h]) => ({
      address,
      ejected: h.reason !== undefined,
      ...(h.reason ? { reason: h.reason, returnsInMs: h.ejectedUntil - now } : {}),
      timesEjected: h.timesEjected,
      consecutiveFailures: h.consecutiveFailures,
      requests: h.requests,
      failures: h.failures,
    }));
  }

  #health(address: string): EndpointHealth {
    let health = this.#endpoints.get(address);
    if (!health) {
      health = { consecutiveFailures: 0, requests: 0, failures: 0, timesEjected: 0, reason: undefined, ejectedUntil: 0, inServiceSince: this.#now() };
      this.#endpoints.set(address, health);
    }
    return health;
  }

  /** Bring the state up to now: return endpoints whose time is up, close an ended interval. */
  #tick(): number {
    const now = this.#now();
    if (now >= this.#nextReturn) this.#returnDue(now);
    const intervals = Math.floor((now - this.#intervalStart) / this.#policy.intervalMs);
    if (intervals > 0) {
      const from = this.#intervalStart;
      this.#intervalStart += intervals * this.#policy.intervalMs;
      this.#endInterval(from, now);
    }
    return now;
  }

  #returnDue(now: number): void {
    this.#nextReturn = Infinity;
    for (const [address, h] of this.#endpoints) {
      if (!h.reason) continue;
      if (h.ejectedUntil > now) {
        this.#nextReturn = Math.min(this.#nextReturn, h.ejectedUntil);
        continue;
      }
      h.reason = undefined;
      h.inServiceSince = h.ejectedUntil;
      h.consecutiveFailures = 0;
      this.#ejectedCount--;
      this.#options.onReturn?.(address);
    }
  }

  /** Close the intervals from `from` to #intervalStart (more than one when calls were sparse). */
  #endInterval(from: number, now: number): void {
    if (this.#policy.successRate.enabled) this.#ejectBySuccessRate(now);
    for (const h of this.#endpoints.values()) {
      if (!h.reason) {
        const inService = Math.floor((this.#intervalStart - Math.max(from, h.inServiceSince)) / this.#policy.intervalMs);
        h.timesEjected = Math.max(0, h.timesEjected - Math.max(0, inService));
      }
      h.requests = 0;
      h.failures = 0;
    }
  }

  #ejectBySuccessRate(now: number): void {
    const { minRequests, stdevFactor } = this.#policy.successRate;
    const rated: { address: string; health: EndpointHealth; rate: number }[] = [];
    for (const [address, health] of this.#endpoints) {
      if (health.reason || health.requests < minRequests || health.requests === 0) continue;
      rated.push({ address, health, rate: (health.requests - health.failures) / health.requests });
    }
    if (rated.length < 2) return; // one endpoint alone has nothing to be compared with
    const mean = rated.reduce((sum, r) => sum + r.rate, 0) / rated.length;
    const stdev = Math.sqrt(rated.reduce((sum, r) => sum + (r.rate - mean) ** 2, 0) / rated.length);
    const threshold = mean - stdevFactor * stdev;
    // Worst first, so the cap keeps the worst ones out.
    for (const r of rated.filter((r) => r.rate < threshold).sort((a, b) => a.rate - b.rate)) {
      this.#eject(r.address, r.health, 'success-rate', now);
    }
  }

  #eject(address: string, health: EndpointHealth, reason: EjectionReason, now: number): void {
    const cap = Math.max(1, Math.floor(this.#endpoints.size * this.#policy.maxEjectionPercent / 100));
    if (this.#ejectedCount >= cap) return;
    health.timesEjected++;
    const duration = Math.min(this.#policy.baseEjectionMs * health.timesEjected, this.#policy.maxEjectionMs);
    health.ejectedUntil = now + duration;
    health.reason = reason;
    health.consecutiveFailures = 0;
    this.#ejectedCount++;
    this.#nextReturn = Math.min(this.#nextReturn, health.ejectedUntil);
    this.#options.onEject?.(address, reason, duration);
  }
}
