// What the pipeline keeps per called service across calls: its balancer, outlier detector,
// concurrency limiter and retry budget. Balancers and budgets are kept per distinct group of
// settings (settingsKey): routes with the same settings share one, a route with settings of its own
// gets its own, and calls alternating between them never reset each other's learned state. A reload
// that changes nothing keeps them all.
import type { Balancer } from '../balancer/balancer.ts';
import { createBalancer } from '../balancer/create.ts';
import { settingsKey } from '../policy/settings-key.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import { ConcurrencyLimiter } from '../resilience/concurrency.ts';
import { OutlierDetector } from '../resilience/outlier.ts';
import { RetryBudget } from '../resilience/retry.ts';

export interface ServiceState {
  balancer: Balancer;
  outlier: OutlierDetector;
  limiter: ConcurrencyLimiter;
  budget: RetryBudget;
}

interface Entry {
  outlier: OutlierDetector;
  limiter: ConcurrencyLimiter;
  balancers: Map<string, Balancer>;
  budgets: Map<string, RetryBudget>;
}

export class ServiceStates {
  readonly #entries = new Map<string, Entry>();

  /** The state of `service` (as "name.namespace") for a call under `policy`. */
  get(service: string, policy: EffectivePolicy): ServiceState {
    let entry = this.#entries.get(service);
    if (!entry) {
      entry = {
        outlier: new OutlierDetector(policy.outlierDetection),
        limiter: new ConcurrencyLimiter(policy.concurrency, service),
        balancers: new Map(),
        budgets: new Map(),
      };
      this.#entries.set(service, entry);
    } else {
      // These two keep no per-settings history worth splitting: they are re-tuned in place.
      entry.outlier.setPolicy(policy.outlierDetection);
      entry.limiter.setPolicy(policy.concurrency);
    }
    const balancerKey = settingsKey(policy.loadBalancer);
    let balancer = entry.balancers.get(balancerKey);
    if (!balancer) entry.balancers.set(balancerKey, balancer = createBalancer(policy.loadBalancer));
    const budgetKey = settingsKey(policy.retries.budget);
    let budget = entry.budgets.get(budgetKey);
    if (!budget) entry.budgets.set(budgetKey, budget = new RetryBudget(policy.retries.budget));
    return { balancer, outlier: entry.outlier, limiter: entry.limiter, budget };
  }

  /** Per service, for the admin API. */
  *entries(): IterableIterator<[string, { outlier: OutlierDetector; limiter: ConcurrencyLimiter; budgets: RetryBudget[] }]> {
    for (const [service, entry] of this.#entries) {
      yield [service, { outlier: entry.outlier, limiter: entry.limiter, budgets: [...entry.budgets.values()] }];
    }
  }

  /** Forget what is known about endpoints that left discovery. */
  retain(service: string, addresses: ReadonlySet<string>): void {
    const entry = this.#entries.get(service);
    if (!entry) return;
    for (const balancer of entry.balancers.values()) balancer.retain(addresses);
    entry.outlier.setEndpoints(addresses);
  }
}
