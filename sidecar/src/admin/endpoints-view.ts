// GET /endpoints on the admin listener: per peer link and per called service, what the sidecar knows
// of each endpoint: link state, whether it takes new calls, calls in flight, the p2c-ewma latency
// estimate, breaker state, ejection (until when); and per service its ejections, limiter and retry
// budget as the resilience pieces report them. Read only: nothing here changes any state.
import type { Balancer } from '../balancer/balancer.ts';
import { ConsistentHash } from '../balancer/consistent-hash.ts';
import { LeastRequest } from '../balancer/least-request.ts';
import { PeakEwma } from '../balancer/p2c-ewma.ts';
import { RoundRobin } from '../balancer/round-robin.ts';
import type { ServiceStates } from '../call/service-state.ts';
import { splitServiceName, type Resolver } from '../discovery/resolver.ts';
import type { LinkState } from '../mcp/link.ts';
import type { BreakerState, BreakerStats } from '../resilience/breaker.ts';
import type { OutlierEndpointSnapshot } from '../resilience/outlier.ts';
import type { RetryBudget } from '../resilience/retry.ts';

/** What the view reads of a peer link (mcp/link.ts PeerLink). */
export interface LinkLike {
  readonly address: string;
  readonly state: LinkState;
  readonly inFlight: number;
  readonly stats: { batches: number; envelopes: number };
}

/** What the view reads of the link pool (mcp/link-pool.ts). */
export interface LinksLike {
  all(): Iterable<LinkLike>;
  find(address: string): LinkLike | undefined;
}

/** What the view reads of the breakers (resilience/breaker.ts BreakerRegistry). */
export interface BreakersLike {
  snapshot(): BreakerStats[];
}

/** What the view reads of discovery: every address, and the services listing each. */
export type ResolverLike = Pick<Resolver, 'allAddresses' | 'servicesOf' | 'endpoints'>;

export type BalancerKind = 'round-robin' | 'least-request' | 'p2c-ewma' | 'consistent-hash' | 'unknown';

export interface EndpointEjection {
  reason: string;
  /** When the endpoint returns to balancing (ISO 8601). */
  until: string;
  returnsInMs: number;
  timesEjected: number;
}

export interface EndpointView {
  address: string;
  /** Its discovery weight and labels, when discovery lists it. */
  weight?: number;
  labels?: Readonly<Record<string, string>>;
  /** The state of the link to the endpoint's sidecar; 'none' when there is no link (left discovery). */
  link: LinkState | 'none';
  /** Whether new calls may go to it: link ready, not ejected, breaker not open. */
  healthy: boolean;
  /** This service's tries in flight to it, as its balancer counts them; null for round-robin (which does not count). */
  inFlight: number | null;
  /** The p2c-ewma latency estimate (ms) as a pick now would see it; null under another policy or before any estimate. */
  ewmaMs: number | null;
  /** The endpoint breaker (the worst of them when routes have breakers of their own); closed before any call. */
  breaker: BreakerState;
  /** Set while outlier detection keeps it out of balancing. */
  ejection: EndpointEjection | null;
  /** Consecutive failures as outlier detection counts them. */
  consecutiveFailures: number;
}

export interface ServiceView {
  /** Balancing policy of the service's balancers (one per distinct settings group). */
  balancers: BalancerKind[];
  /** The service-wide breaker (the worst of them); closed before any call. */
  breaker: BreakerState;
  endpoints: EndpointView[];
  outlier: OutlierEndpointSnapshot[][];
  concurrency: { inFlight: number; queued: number }[];
  retryBudgets: ReturnType<RetryBudget['snapshot']>[];
}

export interface EndpointsView {
  links: ({ address: string; state: LinkState; inFlight: number } & LinkLike['stats'])[];
  services: Record<string, ServiceView>;
  breakers: BreakerStats[];
}

const SEVERITY: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

function worst(a: BreakerState | undefined, b: BreakerState): BreakerState {
  return a === undefined || SEVERITY[b] > SEVERITY[a] ? b : a;
}

export function balancerKind(balancer: Balancer): BalancerKind {
  if (balancer instanceof PeakEwma) return 'p2c-ewma';
  if (balancer instanceof ConsistentHash) return 'consistent-hash'; // before LeastRequest: it extends it
  if (balancer instanceof LeastRequest) return 'least-request';
  if (balancer instanceof RoundRobin) return 'round-robin';
  return 'unknown';
}

/**
 * Per peer link and per called service: link state, breakers, ejections, limiter (admin /endpoints).
 * With `resolver`, every service and endpoint discovery lists is shown, called or not; without it,
 * the services called so far and the endpoints they know of.
 */
export function endpointsView(links: LinksLike, services: ServiceStates, breakers: BreakersLike, resolver?: ResolverLike): EndpointsView {
  const now = Date.now();
  const breakerStats = breakers.snapshot();
  const serviceBreaker = new Map<string, BreakerState>();
  const endpointBreaker = new Map<string, Map<string, BreakerState>>();
  for (const b of breakerStats) {
    if (b.address === undefined) serviceBreaker.set(b.service, worst(serviceBreaker.get(b.service), b.state));
    else {
      let perService = endpointBreaker.get(b.service);
      if (!perService) endpointBreaker.set(b.service, perService = new Map());
      perService.set(b.address, worst(perService.get(b.address), b.state));
    }
  }

  // Which endpoints each service has: discovery's list first, then any the service's state knows of.
  const listed = new Map<string, Map<string, { weight?: number; labels?: Readonly<Record<string, string>> }>>();
  const listedOf = (service: string) => {
    let map = listed.get(service);
    if (!map) listed.set(service, map = new Map());
    return map;
  };
  if (resolver) {
    for (const address of resolver.allAddresses()) {
      for (const service of resolver.servicesOf(address)) {
        const [name, namespace] = splitServiceName(service);
        const endpoint = resolver.endpoints(name, namespace)?.find((e) => e.address === address);
        listedOf(service).set(address, endpoint ? { weight: endpoint.weight, labels: endpoint.labels } : {});
      }
    }
  }
  const states = new Map([...services.entries()]);
  for (const [service, state] of states) {
    const known = listedOf(service);
    for (const outlier of state.outliers) for (const e of outlier.snapshot()) if (!known.has(e.address)) known.set(e.address, {});
    for (const address of endpointBreaker.get(service)?.keys() ?? []) if (!known.has(address)) known.set(address, {});
  }

  const view: Record<string, ServiceView> = {};
  for (const service of [...listed.keys()].sort()) {
    const state = states.get(service);
    const outliers = state?.outliers.map((outlier) => outlier.snapshot()) ?? [];
    const balancers = state?.balancers ?? [];
    const endpoints: EndpointView[] = [...listed.get(service)!].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([address, listing]) => {
      const link = links.find(address);
      const breaker = endpointBreaker.get(service)?.get(address) ?? 'closed';
      let ejection: EndpointEjection | null = null;
      let consecutiveFailures = 0;
      for (const snapshot of outliers) {
        const e = snapshot.find((s) => s.address === address);
        if (!e) continue;
        consecutiveFailures = Math.max(consecutiveFailures, e.consecutiveFailures);
        if (e.ejected && (ejection === null || (e.returnsInMs ?? 0) > ejection.returnsInMs)) {
          const returnsInMs = Math.max(0, e.returnsInMs ?? 0);
          ejection = { reason: e.reason ?? 'unknown', until: new Date(now + returnsInMs).toISOString(), returnsInMs, timesEjected: e.timesEjected };
        }
      }
      const linkState = link?.state ?? 'none';
      return {
        address,
        ...listing,
        link: linkState,
        healthy: linkState === 'ready' && ejection === null && breaker !== 'open',
        inFlight: inFlightOf(balancers, address),
        ewmaMs: ewmaOf(balancers, address),
        breaker,
        ejection,
        consecutiveFailures,
      };
    });
    view[service] = {
      balancers: [...new Set(balancers.map(balancerKind))],
      breaker: serviceBreaker.get(service) ?? 'closed',
      endpoints,
      outlier: outliers,
      concurrency: state?.limiters.map((limiter) => ({ inFlight: limiter.inFlight, queued: limiter.queued })) ?? [],
      retryBudgets: state?.budgets.map((budget) => budget.snapshot()) ?? [],
    };
  }

  return {
    links: [...links.all()].map((link) => ({ address: link.address, state: link.state, inFlight: link.inFlight, ...link.stats })),
    services: view,
    breakers: breakerStats,
  };
}

/** Tries in flight to `address` summed over the balancers that count them; null when none does. */
function inFlightOf(balancers: readonly Balancer[], address: string): number | null {
  let total: number | null = null;
  for (const b of balancers) {
    if (b instanceof PeakEwma || b instanceof LeastRequest) total = (total ?? 0) + b.inFlight(address);
  }
  return total;
}

/** The p2c-ewma estimate (the highest, when routes have balancers of their own), rounded to µs. */
function ewmaOf(balancers: readonly Balancer[], address: string): number | null {
  let estimate: number | null = null;
  for (const b of balancers) {
    if (!(b instanceof PeakEwma)) continue;
    const ms = b.estimateMs(address);
    if (ms !== undefined && (estimate === null || ms > estimate)) estimate = ms;
  }
  return estimate === null ? null : Math.round(estimate * 1000) / 1000;
}
