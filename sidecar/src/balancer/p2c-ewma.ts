import type { Endpoint } from '../discovery/resolver.ts';
import type { LoadBalancerSettings } from '../policy/types.ts';
import { eligible, InFlight, pickOfTwo, type Balancer, type BalancerOptions, type PickOptions } from './balancer.ts';

interface Estimate {
  /** Latency estimate (ms) as of `at`. */
  readonly rtt: number;
  readonly at: number;
}

/** Share of the way a faster answer moves the estimate towards itself. */
const PULL_DOWN = 0.5;

/**
 * Power of two choices over peak-EWMA latency (after Linkerd's balancer). Each endpoint's estimate:
 *   - starts at `ewmaDefaultRttMs` for an endpoint that has not answered yet;
 *   - jumps to any slower answer at once (the "peak"), so a replica turning slow is avoided at once;
 *   - moves halfway towards each faster answer;
 *   - decays exponentially towards 0 with time constant `ewmaDecayMs` while no answers come, so a
 *     replica avoided for being slow is tried again later rather than starved for ever.
 * Cost = estimate × (in flight ÷ relative weight + 1): latency decides when idle, load when busy.
 *
 * Unlike Linkerd, a faster answer moves the estimate by a share per answer, not by a share of the
 * time since the last one. With Linkerd's time-weighted blend the estimate holds the running peak of
 * all recent answers, and an endpoint that answers more often (a heavier weight) shows a higher peak
 * from sampling alone, which skews weighted splits; a per-answer blend does not depend on the rate.
 */
export class PeakEwma implements Balancer {
  readonly #estimates = new Map<string, Estimate>();
  readonly #inFlight = new InFlight();
  readonly #decayMs: number;
  readonly #defaultRttMs: number;
  readonly #random: () => number;
  readonly #now: () => number;

  constructor(settings: Pick<LoadBalancerSettings, 'ewmaDecayMs' | 'ewmaDefaultRttMs'>, options: BalancerOptions = {}) {
    this.#decayMs = settings.ewmaDecayMs;
    this.#defaultRttMs = settings.ewmaDefaultRttMs;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? performance.now.bind(performance);
  }

  pick(candidates: readonly Endpoint[], options?: PickOptions): Endpoint | undefined {
    const now = this.#now();
    return pickOfTwo(eligible(candidates, options?.exclude), this.#random,
      (e, weight) => this.#current(e.address, now) * (this.#inFlight.get(e.address) / weight + 1));
  }

  onStart(address: string): void {
    this.#inFlight.start(address);
  }

  onEnd(address: string, latencyMs: number, ok: boolean): void {
    this.#inFlight.end(address);
    const now = this.#now();
    const estimate = this.#estimates.get(address);
    const current = estimate ? this.#current(address, now) : latencyMs; // the first answer replaces the default
    // Peak: a slower answer is taken at once; a faster one pulls the estimate halfway down, unless
    // it failed: a fast refusal must not make an endpoint look fast and draw more calls.
    let rtt = current;
    if (latencyMs >= current) rtt = latencyMs;
    else if (ok) rtt = current + (latencyMs - current) * PULL_DOWN;
    this.#estimates.set(address, { rtt, at: now });
  }

  retain(addresses: ReadonlySet<string>): void {
    this.#inFlight.retain(addresses);
    for (const address of this.#estimates.keys()) if (!addresses.has(address)) this.#estimates.delete(address);
  }

  /** Calls in flight to `address` (tries started and not yet ended); read only, for the admin API. */
  inFlight(address: string): number {
    return this.#inFlight.get(address);
  }

  /**
   * The latency estimate (ms) of `address` as a pick now would see it, or undefined before the
   * balancer has any for it; read only (unlike a pick, it stores no default), for the admin API.
   */
  estimateMs(address: string): number | undefined {
    const estimate = this.#estimates.get(address);
    return estimate && this.#decayed(estimate, this.#now());
  }

  /** The estimate now, decayed towards 0 for the time without answers. */
  #current(address: string, now: number): number {
    return this.#decayed(this.#estimate(address, now), now);
  }

  #decayed(estimate: Estimate, now: number): number {
    return estimate.rtt * Math.exp(-(now - estimate.at) / this.#decayMs);
  }

  #estimate(address: string, now: number): Estimate {
    let estimate = this.#estimates.get(address);
    if (!estimate) {
      estimate = { rtt: this.#defaultRttMs, at: now };
      this.#estimates.set(address, estimate);
    }
    return estimate;
  }
}
