// The Balancer seam and what every balancer shares. One balancer instance serves one service; the
// pipeline hands it the endpoints that may take the call now (subset chosen, ejected endpoints and
// open breakers removed, links ready), and reports each try's start and end so load-aware balancers
// can learn.
import type { Endpoint } from '../discovery/resolver.ts';

export interface PickOptions {
  /** Endpoints this call already tried: avoided while any other candidate is left. */
  exclude?: ReadonlySet<string>;
  /**
   * The request's affinity key (policy `loadBalancer.consistentHash.hashOn`, see affinity/hash-key.ts):
   * the consistent-hash balancer sends equal keys to the same endpoint. Other balancers ignore it.
   */
  hashKey?: string;
}

export interface Balancer {
  /** One of `candidates`, or undefined when there are none. */
  pick(candidates: readonly Endpoint[], options?: PickOptions): Endpoint | undefined;
  /** A try to `address` started. */
  onStart(address: string): void;
  /** That try ended after `latencyMs`; `ok` is false when it failed (error or failure status). */
  onEnd(address: string, latencyMs: number, ok: boolean): void;
  /** Forget endpoints not in `addresses` (they left discovery). */
  retain(addresses: ReadonlySet<string>): void;
}

export interface BalancerOptions {
  /** Uniform in [0, 1); injectable for deterministic tests. */
  random?: () => number;
  /** Milliseconds clock for latency decay. */
  now?: () => number;
}

/**
 * The endpoints a pick chooses from: those with a positive weight (weight 0 drains an endpoint),
 * minus those already tried; each rule is dropped when it would leave nothing, so a call can always
 * go somewhere if anything is there.
 */
export function eligible(candidates: readonly Endpoint[], exclude?: ReadonlySet<string>): readonly Endpoint[] {
  let list = candidates;
  if (list.some((e) => !(e.weight > 0))) {
    const weighted = list.filter((e) => e.weight > 0);
    if (weighted.length > 0) list = weighted;
  }
  if (exclude && exclude.size > 0) {
    const untried = list.filter((e) => !exclude.has(e.address));
    if (untried.length > 0) list = untried;
  }
  return list;
}

/** Weight as used by balancers: positive, or 1 when a whole list has no usable weights. */
export function weightOf(endpoint: Endpoint): number {
  return endpoint.weight > 0 ? endpoint.weight : 1;
}

/**
 * Power of two choices: draw two candidates and keep the cheaper (ties: the first drawn). `cost`
 * gets each endpoint's weight relative to the mean weight (1 when all are equal), so a balancer can
 * scale load by it. With equal weights the two are distinct and uniform (classic P2C). With unequal
 * weights they are two independent weight-proportional draws: when costs are equal the split is then
 * exactly proportional to weight (P(i) = pᵢ² + pᵢ(1 − pᵢ) = pᵢ), and cheaper endpoints gain from there.
 */
export function pickOfTwo(list: readonly Endpoint[], random: () => number, cost: (endpoint: Endpoint, relativeWeight: number) => number): Endpoint | undefined {
  if (list.length <= 1) return list[0];
  const first = list[0]!;
  const equal = list.every((e) => weightOf(e) === weightOf(first));
  let a: Endpoint;
  let b: Endpoint;
  if (equal) {
    const i = Math.floor(random() * list.length);
    let j = Math.floor(random() * (list.length - 1));
    if (j >= i) j++;
    a = list[i]!;
    b = list[j]!;
  } else {
    a = weightedChoice(list, weightOf, random);
    b = weightedChoice(list, weightOf, random);
    if (a === b) return a;
  }
  const mean = equal ? weightOf(first) : list.reduce((sum, e) => sum + weightOf(e), 0) / list.length;
  const costA = cost(a, weightOf(a) / mean);
  const costB = cost(b, weightOf(b) / mean);
  // Near-equal costs are a tie, won by the first drawn: otherwise a decaying latency estimate makes
  // whichever endpoint answered longest ago a hair cheaper, and equal endpoints would split by
  // recency instead of by weight.
  return costB < costA * (1 - TIE_TOLERANCE) ? b : a;
}

/** Costs closer than this share of each other are equal. */
const TIE_TOLERANCE = 0.01;

/** One item drawn with probability proportional to its weight; uniformly when all weights are 0. */
export function weightedChoice<T>(items: readonly T[], weight: (item: T) => number, random: () => number): T {
  let total = 0;
  for (const item of items) total += weight(item);
  if (total <= 0) return items[Math.floor(random() * items.length)]!;
  let point = random() * total;
  for (const item of items) {
    point -= weight(item);
    if (point < 0) return item;
  }
  return items.findLast((item) => weight(item) > 0)!; // rounding at the top end
}

/** Calls in flight per endpoint, from onStart/onEnd. */
export class InFlight {
  readonly #counts = new Map<string, number>();

  get(address: string): number {
    return this.#counts.get(address) ?? 0;
  }

  start(address: string): void {
    this.#counts.set(address, this.get(address) + 1);
  }

  end(address: string): void {
    const n = this.get(address) - 1;
    if (n > 0) this.#counts.set(address, n);
    else this.#counts.delete(address);
  }

  retain(addresses: ReadonlySet<string>): void {
    for (const address of this.#counts.keys()) if (!addresses.has(address)) this.#counts.delete(address);
  }
}
