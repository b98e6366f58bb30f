import type { Endpoint } from '../discovery/resolver.ts';
import { eligible, InFlight, pickOfTwo, type Balancer, type BalancerOptions, type PickOptions } from './balancer.ts';

/**
 * Least request by power of two choices (Envoy's default): of two random candidates, the one with
 * fewer calls in flight per unit of weight. No +1 on the count, so idle endpoints tie and the split
 * follows the weights; under load, in-flight counts settle in proportion to the weights.
 */
export class LeastRequest implements Balancer {
  readonly #inFlight = new InFlight();
  readonly #random: () => number;

  constructor(options: BalancerOptions = {}) {
    this.#random = options.random ?? Math.random;
  }

  pick(candidates: readonly Endpoint[], options?: PickOptions): Endpoint | undefined {
    return pickOfTwo(eligible(candidates, options?.exclude), this.#random, (e, weight) => this.#inFlight.get(e.address) / weight);
  }

  onStart(address: string): void {
    this.#inFlight.start(address);
  }

  onEnd(address: string): void {
    this.#inFlight.end(address);
  }

  retain(addresses: ReadonlySet<string>): void {
    this.#inFlight.retain(addresses);
  }

  /** Calls in flight to `address` (tries started and not yet ended). */
  inFlight(address: string): number {
    return this.#inFlight.get(address);
  }
}
