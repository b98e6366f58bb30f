// Metrics read from the sidecar's parts when Prometheus scrapes: breaker states, ejected endpoints,
// links by state and their calls in flight, limiter queues; and the size of every batch a link
// writes (counted as it happens, through LinkPool's onBatch hook). Nothing here is on a call's path.
//
// Cardinality: services and endpoints are those discovery lists (breakers and link entries of
// endpoints that leave are dropped), so every label set here is bounded by the mesh's size.
import type { LinkState } from '../mcp/link.ts';
import type { LinkPool } from '../mcp/link-pool.ts';
import type { ServiceStates } from '../call/service-state.ts';
import type { BreakerRegistry, BreakerState } from '../resilience/breaker.ts';
import type { MeshMetrics } from './metrics.ts';

export interface RuntimeParts {
  links: LinkPool;
  services: ServiceStates;
  breakers: BreakerRegistry;
}

/** mcp_circuit_breaker_state values. */
export const BREAKER_STATE_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, 'half-open': 1, open: 2 };

const LINK_STATES: readonly LinkState[] = ['connecting', 'ready', 'draining', 'broken', 'closed'];

export function registerRuntimeMetrics(metrics: MeshMetrics, parts: RuntimeParts): void {
  const { links, services, breakers } = parts;

  // Batch sizes: one unlabelled histogram for all links (a batch is a link's, not a service's).
  const batchSizes = metrics.linkBatchSize.series({});
  const previous = links.onBatch;
  links.onBatch = previous
    ? (address, size) => { previous(address, size); batchSizes.record(size); }
    : (_address, size) => batchSizes.record(size);

  metrics.breakerState.addCallback((result) => {
    // Breakers are kept per settings too (a route with breaker settings of its own has its own):
    // one value per service and endpoint, the worst of them.
    const worst = new Map<string, { service: string; endpoint: string; value: number }>();
    for (const breaker of breakers.snapshot()) {
      const endpoint = breaker.address ?? '';
      const key = `${breaker.service}\n${endpoint}`;
      const value = BREAKER_STATE_VALUE[breaker.state];
      const seen = worst.get(key);
      if (!seen) worst.set(key, { service: breaker.service, endpoint, value });
      else if (value > seen.value) seen.value = value;
    }
    for (const { service, endpoint, value } of worst.values()) {
      result.observe(value, { service, scope: endpoint === '' ? 'service' : 'endpoint', endpoint });
    }
  });

  metrics.outlierEjected.addCallback((result) => {
    for (const [service, state] of services.entries()) {
      // An endpoint ejected under two settings (two routes' detectors) is one endpoint out.
      const ejected = new Set<string>();
      for (const outlier of state.outliers) for (const endpoint of outlier.snapshot()) if (endpoint.ejected) ejected.add(endpoint.address);
      result.observe(ejected.size, { service });
    }
  });

  metrics.links.addCallback((result) => {
    const counts = new Map<LinkState, number>(LINK_STATES.map((s) => [s, 0]));
    for (const link of links.all()) counts.set(link.state, (counts.get(link.state) ?? 0) + 1);
    for (const [state, count] of counts) result.observe(count, { state });
  });

  metrics.linkInFlight.addCallback((result) => {
    for (const link of links.all()) result.observe(link.inFlight, { peer: link.address });
  });

  metrics.queueDepth.addCallback((result) => {
    for (const [service, state] of services.entries()) {
      let queued = 0;
      for (const limiter of state.limiters) queued += limiter.queued;
      result.observe(queued, { queue: 'limiter', service });
    }
    // Envelopes waiting in each link's batcher: non-zero only while the link is the bottleneck.
    for (const link of links.all()) result.observe(link.queued, { queue: 'link', peer: link.address });
  });
}
