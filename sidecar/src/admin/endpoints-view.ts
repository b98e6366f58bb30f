// GET /endpoints on the admin listener: per peer link and per called service, what the sidecar knows
// of each endpoint (link state, breakers, ejections, limiter, retry budget).
import type { ServiceStates } from '../call/service-state.ts';
import type { LinkPool } from '../mcp/link-pool.ts';
import type { BreakerRegistry } from '../resilience/breaker.ts';

/** Per peer link and per called service: link state, breakers, ejections, limiter (admin /endpoints). */
export function endpointsView(links: LinkPool, services: ServiceStates, breakers: BreakerRegistry): unknown {
  return {
    links: [...links.all()].map((link) => ({ address: link.address, state: link.state, inFlight: link.inFlight, ...link.stats })),
    services: Object.fromEntries([...services.entries()].map(([service, state]) => [service, {
      outlier: state.outliers.map((outlier) => outlier.snapshot()),
      concurrency: state.limiters.map((limiter) => ({ inFlight: limiter.inFlight, queued: limiter.queued })),
      retryBudgets: state.budgets.map((budget) => budget.snapshot()),
    }])),
    breakers: breakers.snapshot(),
  };
}
