// What the pipeline keeps per called service across calls: its balancer, outlier detector,
// concurrency limiter and retry budget. Each is kept per distinct group of settings (settingsKey):
// routes with the same settings share one, a route with settings of its own gets its own, and calls
// alternating between them never reset or re-tune each other's. A reload that changes nothing keeps
// them all.
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
  outliers: Map<string, OutlierDetector>;
  limiters: Map<string, ConcurrencyLimiter>;
  balancers: Map<string, Balancer>;
  budgets: Map<string, RetryBudget>;
}

export class ServiceStates {
  readonly #entries = new Map<string, Entry>();
  // The state of a (service, policy object) pair, found once: policies are frozen and swapped whole
  // on reload, so a new policy object finds its state again through the settings keys below.
  readonly #byPolicy = new WeakMap<EffectivePolicy, Map<string, ServiceState>>();

  /** The state of `service` (as "name.namespace") for a call under `policy`. */
  get(service: string, policy: EffectivePolicy): ServiceState {
    let states = this.#byPolicy.get(policy);
    if (!states) this.#byPolicy.set(policy, states = new Map());
    let state = states.get(service);
    if (!state) states.set(service, state = this.#make(service, policy));
    return state;
  }

  #make(service: string, policy: EffectivePolicy): ServiceState {
    let entry = this.#entries.get(service);
    if (!entry) this.#entries.set(service, entry = { outliers: new Map(), limiters: new Map(), balancers: new Map(), budgets: new Map() });
    return {
      balancer: forSettings(entry.balancers, policy.loadBalancer, (s) => createBalancer(s)),
      outlier: forSettings(entry.outliers, policy.outlierDetection, (s) => new OutlierDetector(s)),
      limiter: forSettings(entry.limiters, policy.concurrency, (s) => new ConcurrencyLimiter(s, service)),
      budget: forSettings(entry.budgets, policy.retries.budget, (s) => new RetryBudget(s)),
    };
  }

  /** Per service, for the admin API. */
  *entries(): IterableIterator<[string, { outliers: OutlierDetector[]; limiters: ConcurrencyLimiter[]; budgets: RetryBudget[]; balancers: Balancer[] }]> {
    for (const [service, entry] of this.#entries) {
      yield [service, { outliers: [...entry.outliers.values()], limiters: [...entry.limiters.values()], budgets: [...entry.budgets.values()], balancers: [...entry.balancers.values()] }];
    }
  }

  /** Forget what is known about endpoints that left discovery. */
  retain(service: string, addresses: ReadonlySet<string>): void {
    const entry = this.#entries.get(service);
    if (!entry) return;
    for (const balancer of entry.balancers.values()) balancer.retain(addresses);
    for (const outlier of entry.outliers.values()) outlier.setEndpoints(addresses);
  }
}

/** The object built for these settings, made on first use. */
function forSettings<S extends object, T>(map: Map<string, T>, settings: S, make: (settings: S) => T): T {
  const key = settingsKey(settings);
  let value = map.get(key);
  if (value === undefined) map.set(key, value = make(settings));
  return value;
}
