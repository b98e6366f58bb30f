// What the pipeline keeps per called service across calls: its balancer, outlier detector,
// concurrency limiter and retry budget. Built from the effective policy and rebuilt (or re-tuned)
// when a policy reload changes the settings they were built from; their learned state survives a
// reload that changes nothing for them.
import type { Balancer } from '../balancer/balancer.ts';
import { createBalancer } from '../balancer/create.ts';
import type { EffectivePolicy, LoadBalancerSettings, RetryBudgetPolicy } from '../policy/types.ts';
import { ConcurrencyLimiter } from '../resilience/concurrency.ts';
import { OutlierDetector } from '../resilience/outlier.ts';
import { RetryBudget } from '../resilience/retry.ts';

export interface ServiceState {
  balancer: Balancer;
  outlier: OutlierDetector;
  limiter: ConcurrencyLimiter;
  budget: RetryBudget;
}

interface Entry extends ServiceState {
  balancerSettings: LoadBalancerSettings;
  budgetPolicy: RetryBudgetPolicy;
}

export class ServiceStates {
  readonly #entries = new Map<string, Entry>();

  /** The state of `service` (as "name.namespace"), brought in line with `policy`. */
  get(service: string, policy: EffectivePolicy): ServiceState {
    let entry = this.#entries.get(service);
    if (!entry) {
      entry = {
        balancer: createBalancer(policy.loadBalancer),
        balancerSettings: policy.loadBalancer,
        outlier: new OutlierDetector(policy.outlierDetection),
        limiter: new ConcurrencyLimiter(policy.concurrency, service),
        budget: new RetryBudget(policy.retries.budget),
        budgetPolicy: policy.retries.budget,
      };
      this.#entries.set(service, entry);
      return entry;
    }
    // Policies are frozen and resolved once per reload, so identity tells "unchanged" cheaply.
    if (entry.balancerSettings !== policy.loadBalancer && !sameValues(entry.balancerSettings, policy.loadBalancer)) {
      entry.balancer = createBalancer(policy.loadBalancer);
    }
    entry.balancerSettings = policy.loadBalancer;
    if (entry.budgetPolicy !== policy.retries.budget && !sameValues(entry.budgetPolicy, policy.retries.budget)) {
      entry.budget = new RetryBudget(policy.retries.budget);
    }
    entry.budgetPolicy = policy.retries.budget;
    entry.outlier.setPolicy(policy.outlierDetection);
    entry.limiter.setPolicy(policy.concurrency);
    return entry;
  }

  /** Per service, for the admin API. */
  entries(): IterableIterator<[string, ServiceState]> {
    return this.#entries.entries();
  }

  /** Forget what is known about endpoints that left discovery. */
  retain(service: string, addresses: ReadonlySet<string>): void {
    const entry = this.#entries.get(service);
    if (!entry) return;
    entry.balancer.retain(addresses);
    entry.outlier.setEndpoints(addresses);
  }
}

function sameValues(a: object, b: object): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
