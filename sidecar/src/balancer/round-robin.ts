import type { Endpoint } from '../discovery/resolver.ts';
import { eligible, weightOf, type Balancer, type PickOptions } from './balancer.ts';

/**
 * Smooth weighted round robin (as in nginx): each pick adds every candidate's weight to its score,
 * takes the highest and subtracts the total from it. Weights 1, 1, 1 give a b c a b c; weights 5, 1, 1
 * give a a b a c a a, spread out rather than five a's in a row. Scores are kept per address, so a
 * candidate list that changes between picks (exclusions, ejections) does not reset the rotation.
 */
export class RoundRobin implements Balancer {
  readonly #scores = new Map<string, number>();

  pick(candidates: readonly Endpoint[], options?: PickOptions): Endpoint | undefined {
    const list = eligible(candidates, options?.exclude);
    let best: Endpoint | undefined;
    let bestScore = -Infinity;
    let total = 0;
    for (const endpoint of list) {
      const weight = weightOf(endpoint);
      const score = (this.#scores.get(endpoint.address) ?? 0) + weight;
      this.#scores.set(endpoint.address, score);
      total += weight;
      if (score > bestScore) {
        best = endpoint;
        bestScore = score;
      }
    }
    if (best) this.#scores.set(best.address, bestScore - total);
    return best;
  }

  onStart(): void {}

  onEnd(): void {}

  retain(addresses: ReadonlySet<string>): void {
    for (const address of this.#scores.keys()) if (!addresses.has(address)) this.#scores.delete(address);
  }
}
