// Metrics read from the sidecar's parts when Prometheus scrapes (to be built): breakers, ejections,
// link batches, queue depths.
import type { LinkPool } from '../mcp/link-pool.ts';
import type { ServiceStates } from '../call/service-state.ts';
import type { BreakerRegistry } from '../resilience/breaker.ts';
import type { MeshMetrics } from './metrics.ts';

export interface RuntimeParts {
  links: LinkPool;
  services: ServiceStates;
  breakers: BreakerRegistry;
}

export function registerRuntimeMetrics(_metrics: MeshMetrics, _parts: RuntimeParts): void {}
