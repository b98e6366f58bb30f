// GET /status.json on the admin listener: what the status page (GET /) draws, in one document.
// It joins the live numbers (live-stats.ts: rates, errors, latency percentiles, per service, per
// endpoint and per caller) with the sidecar's own view of each endpoint (endpoints-view.ts: link
// state, health, breaker, ejection, EWMA). A service appears when discovery lists it or when it
// was called recently; an endpoint when either side knows of it.
import type { EndpointsView, EndpointView, ServiceView } from './endpoints-view.ts';
import type { LiveSnapshot, OutboundServiceStats, WindowStats } from './live-stats.ts';

export interface Identity {
  service: string;
  namespace: string;
  instance: string;
}

export type Readiness = 'ready' | 'starting' | 'draining';

type Live = Omit<WindowStats, 'total'>;

export interface StatusEndpoint extends Omit<EndpointView, 'inFlight'> {
  /** Tries in flight to the endpoint for this service (from the live numbers, under any balancer). */
  inFlight: number;
  /** Its tries over the window; null when it had none since the sidecar started (or for a while). */
  live: Live | null;
}

export interface StatusService {
  /** "name.namespace". */
  service: string;
  balancers: ServiceView['balancers'];
  breaker: ServiceView['breaker'];
  /** Endpoints taking new calls / all endpoints. */
  healthyEndpoints: number;
  /** Calls of the app to the service over the window (retries inside a call are one call); null when none were made. */
  live: (Live & { retriesPerSecond: number; total: WindowStats['total'] }) | null;
  endpoints: StatusEndpoint[];
}

export interface StatusDocument {
  /** When this was made (ISO 8601). */
  at: string;
  /** This sidecar. */
  sidecar: Identity & { readiness: Readiness; uptimeSeconds: number; pid: number };
  windowSeconds: number;
  outbound: StatusService[];
  inbound: (Live & { source: string; total: WindowStats['total'] })[];
  links: EndpointsView['links'];
  /** Totals the page shows at the top. */
  summary: {
    outboundRequestsPerSecond: number;
    outboundErrorsPerSecond: number;
    inboundRequestsPerSecond: number;
    inboundErrorsPerSecond: number;
    endpoints: number;
    healthyEndpoints: number;
    ejectedEndpoints: number;
    openBreakers: number;
    links: number;
    readyLinks: number;
  };
}

function liveOf(stats: WindowStats): Live {
  const { total: _total, ...live } = stats;
  return live;
}

export function statusView(identity: Identity, readiness: Readiness, live: LiveSnapshot, endpoints: EndpointsView): StatusDocument {
  const liveByService = new Map<string, OutboundServiceStats>(live.outbound.map((s) => [s.service, s]));
  const names = new Set([...Object.keys(endpoints.services), ...liveByService.keys()]);
  const outbound: StatusService[] = [...names].sort().map((service) => {
    const view = endpoints.services[service];
    const stats = liveByService.get(service);
    const liveEndpoints = new Map((stats?.endpoints ?? []).map((e) => [e.address, e]));
    const known = new Map((view?.endpoints ?? []).map((e) => [e.address, e]));
    const addresses = [...new Set([...known.keys(), ...liveEndpoints.keys()])].sort();
    const list: StatusEndpoint[] = addresses.map((address) => {
      const e = known.get(address);
      const l = liveEndpoints.get(address);
      return {
        address,
        ...(e?.weight === undefined ? {} : { weight: e.weight }),
        ...(e?.labels === undefined ? {} : { labels: e.labels }),
        link: e?.link ?? 'none',
        healthy: e?.healthy ?? false,
        inFlight: l?.inFlight ?? e?.inFlight ?? 0,
        ewmaMs: e?.ewmaMs ?? null,
        breaker: e?.breaker ?? 'closed',
        ejection: e?.ejection ?? null,
        consecutiveFailures: e?.consecutiveFailures ?? 0,
        live: l ? liveOf(l) : null,
      };
    });
    let serviceLive: StatusService['live'] = null;
    if (stats) {
      const { service: _s, endpoints: _e, ...rest } = stats;
      serviceLive = rest;
    }
    return {
      service,
      balancers: view?.balancers ?? [],
      breaker: view?.breaker ?? 'closed',
      healthyEndpoints: list.filter((e) => e.healthy).length,
      live: serviceLive,
      endpoints: list,
    };
  });
  const inbound = live.inbound; // sorted by source already
  const all = outbound.flatMap((s) => s.endpoints);
  const sum = (values: number[]) => Math.round(values.reduce((a, b) => a + b, 0) * 100) / 100;
  return {
    at: new Date().toISOString(),
    sidecar: { ...identity, readiness, uptimeSeconds: Math.round(process.uptime()), pid: process.pid },
    windowSeconds: live.windowSeconds,
    outbound,
    inbound,
    links: endpoints.links,
    summary: {
      outboundRequestsPerSecond: sum(outbound.map((s) => s.live?.requestsPerSecond ?? 0)),
      outboundErrorsPerSecond: sum(outbound.map((s) => s.live?.errorsPerSecond ?? 0)),
      inboundRequestsPerSecond: sum(inbound.map((s) => s.requestsPerSecond)),
      inboundErrorsPerSecond: sum(inbound.map((s) => s.errorsPerSecond)),
      endpoints: all.length,
      healthyEndpoints: all.filter((e) => e.healthy).length,
      ejectedEndpoints: all.filter((e) => e.ejection !== null).length,
      openBreakers: outbound.filter((s) => s.breaker === 'open').length + all.filter((e) => e.breaker === 'open').length,
      links: endpoints.links.length,
      readyLinks: endpoints.links.filter((l) => l.state === 'ready').length,
    },
  };
}
