// Counts of MCP session affinity per called service, for admin /sessions and the metrics. There is
// no session table to show: ownership travels in the tokens, so no sidecar stores sessions.
import type { Counter } from '@opentelemetry/api';
import type { SessionAffinity } from '../call/pipeline.ts';
import type { OwnerTokens } from './token.ts';

export interface SessionCounts {
  /** New sessions bound to the replica that created them. */
  bound: number;
  /** Requests routed to their session's owner. */
  routed: number;
  /** Requests whose owner was gone (answered 404 so the client starts anew). */
  ownerGone: number;
}

export interface SessionMetrics {
  sessionsBound: Counter;
  sessionRequestsRouted: Counter;
  sessionOwnerGone: Counter;
}

export function createSessionAffinity(tokens: OwnerTokens, metrics: SessionMetrics): SessionAffinity & { snapshot(): Record<string, SessionCounts> } {
  const counts = new Map<string, SessionCounts>();
  const of = (service: string) => {
    let entry = counts.get(service);
    if (!entry) counts.set(service, entry = { bound: 0, routed: 0, ownerGone: 0 });
    return entry;
  };
  return {
    tokens,
    onBound: (service) => { of(service).bound++; metrics.sessionsBound.add(1, { service }); },
    onRouted: (service) => { of(service).routed++; metrics.sessionRequestsRouted.add(1, { service }); },
    onOwnerGone: (service) => { of(service).ownerGone++; metrics.sessionOwnerGone.add(1, { service }); },
    snapshot: () => Object.fromEntries(counts),
  };
}
