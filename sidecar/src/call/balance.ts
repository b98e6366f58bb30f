// Balance: the endpoint (link) each try goes to — the MCP session's owner, a delivery's replica, or
// the balancer's pick among the ready, healthy endpoints of the request's subset, avoiding those the
// call already tried — and how the try went, told to the balancer and to outlier detection.
import type { Endpoint } from '../discovery/resolver.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { hashKey } from '../affinity/hash-key.ts';
import { selectSubset } from '../balancer/subsets.ts';
import type { LinkPool } from '../mcp/link-pool.ts';
import type { PeerLink } from '../mcp/link.ts';
import { CircuitOpenError, failureStatuses, isBreakerFailure, type BreakerRegistry } from '../resilience/breaker.ts';
import type { Call, Layer } from './call.ts';
import type { SessionAffinity } from './pipeline.ts';

export interface BalanceLayerOptions {
  links: LinkPool;
  breakers: BreakerRegistry;
  sessions: SessionAffinity;
  /** This replica: the key of `hashOn: [{ source: true }]`. */
  instance: string;
}

export function balanceLayer(options: BalanceLayerOptions): Layer {
  return (next) => async (call) => {
    // The try before this one went to call.link: a retry avoids it (the balancer's `exclude`).
    if (call.attempt > 1 && call.link) (call.tried ??= new Set()).add(call.link.address);
    const chosen = chooseLink(call, options);
    const link = call.link = chosen instanceof Promise ? await chosen : chosen;
    const address = link.address;
    call.request.delivery?.onSent?.(address);
    const state = call.state!;
    state.balancer.onStart(address);
    const started = performance.now();
    let ok = false;
    let counted = true;
    try {
      const result = await next(call);
      ok = !failureStatuses(call.policy.circuitBreaker)(result);
      return result;
    } catch (err) {
      // A refusal by this endpoint's own breaker, or a try cut short by the call's deadline or the app
      // leaving, says nothing about the endpoint's health.
      counted = !(err instanceof CircuitOpenError) && isBreakerFailure(err) && !call.signal.aborted;
      throw err;
    } finally {
      state.balancer.onEnd(address, performance.now() - started, ok);
      if (counted) state.outlier.record(address, ok);
    }
  };
}

/**
 * The link for this try: the subset for the request, among endpoints whose link is ready, not
 * ejected and whose breaker is closed. If health rules leave nothing while some links are ready,
 * they are ignored for this call (panic mode): a partly-up service is better served than refused.
 * Synchronous unless it has to wait for a link to come up.
 */
function chooseLink(call: Call, options: BalanceLayerOptions): PeerLink | Promise<PeerLink> {
  const { links, breakers } = options;
  const { service, policy, endpoints } = call;
  const state = call.state!;
  if (call.owner !== undefined) return ownerLink(call, call.owner, options);
  const delivery = call.request.delivery;
  const preferred = delivery?.endpoint;
  if (preferred !== undefined) {
    if (delivery!.pinned) return pinnedLink(call, preferred, links);
    const link = links.find(preferred);
    const healthy = !state.outlier.isEjected(preferred) && !breakers.isOpen(service, preferred, policy.circuitBreaker);
    if (link?.state === 'ready' && healthy && endpoints.some((e) => e.address === preferred)) return link;
  }
  if (endpoints.length === 0) throw new MeshError('NO_HEALTHY_ENDPOINT', `service ${service} has no endpoints`, { service });
  const candidates = readyAndHealthy(call, options);
  if (candidates.length === 0) return waitForAnyLink(call, links);
  const selection = policy.subsets.length === 0 ? { subset: undefined, endpoints: candidates } : selectSubset(candidates, policy, call.headers, () => call.splitDraw);
  // Under consistent hashing the key owns the endpoint: retries stay on it (no exclusion).
  const hashing = policy.loadBalancer.policy === 'consistent-hash';
  const endpoint = hashing
    ? state.balancer.pick(selection.endpoints, { hashKey: hashKey(policy.loadBalancer.consistentHash.hashOn, { headers: call.headers, path: call.path, source: options.instance }) })
    : state.balancer.pick(selection.endpoints, call.tried ? { exclude: call.tried } : undefined);
  if (!endpoint) throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} in subset ${selection.subset ?? '(all)'} is ready`, { service });
  const link = links.find(endpoint.address);
  if (!link) throw new MeshError('NO_HEALTHY_ENDPOINT', `endpoint ${endpoint.address} of ${service} left discovery`, { service });
  return link;
}

/**
 * The endpoints to choose from: the healthy ones among those whose link is ready, else (panic) all
 * ready ones. When every endpoint is ready and healthy (the usual case), the list itself, not a copy.
 */
function readyAndHealthy(call: Call, { links, breakers }: BalanceLayerOptions): readonly Endpoint[] {
  const { service, policy, endpoints } = call;
  const outlier = call.state!.outlier;
  let all = true;
  for (const e of endpoints) {
    if (links.find(e.address)?.state !== 'ready' || outlier.isEjected(e.address) || breakers.isOpen(service, e.address, policy.circuitBreaker)) {
      all = false;
      break;
    }
  }
  if (all) return endpoints;
  const ready: Endpoint[] = [];
  const healthy: Endpoint[] = [];
  for (const e of endpoints) {
    if (links.find(e.address)?.state !== 'ready') continue;
    ready.push(e);
    if (!outlier.isEjected(e.address) && !breakers.isOpen(service, e.address, policy.circuitBreaker)) healthy.push(e);
  }
  return healthy.length > 0 ? healthy : ready;
}

/**
 * The link to a session's owner. The session lives there and nowhere else: an owner that left
 * discovery, or whose link does not come up within the connect timeout, means the session is gone.
 */
async function ownerLink(call: Call, owner: string, { links, sessions }: BalanceLayerOptions): Promise<PeerLink> {
  const service = call.service;
  const gone = (why: string) => {
    sessions.onOwnerGone(service);
    return new MeshError('SESSION_OWNER_GONE', `the replica that owns this session (${owner}) ${why}`, { service });
  };
  if (!call.endpoints.some((e) => e.address === owner)) throw gone('is no longer an endpoint of the service');
  const link = links.find(owner);
  if (!link) throw gone('is no longer an endpoint of the service');
  if (link.state === 'ready') return link;
  try {
    await link.whenReady(call.policy.timeouts.connectMs, call.signal, service);
    return link;
  } catch {
    if (call.signal.aborted) throw call.signal.reason;
    throw gone(`is unreachable (link ${link.state})`);
  }
}

/** A broadcast delivery goes to its one replica, or fails (the outbox tries again later). */
async function pinnedLink(call: Call, address: string, links: LinkPool): Promise<PeerLink> {
  const service = call.service;
  const link = call.endpoints.some((e) => e.address === address) ? links.find(address) : undefined;
  if (!link) throw new MeshError('NO_HEALTHY_ENDPOINT', `replica ${address} is no longer an endpoint of ${service}`, { service });
  if (link.state !== 'ready') await link.whenReady(call.policy.timeouts.connectMs, call.signal, service);
  return link;
}

/** Nothing ready (e.g. at start-up): wait up to the connect timeout for the first link to come up. */
async function waitForAnyLink(call: Call, links: LinkPool): Promise<PeerLink> {
  const { service, endpoints, signal } = call;
  const connectMs = call.policy.timeouts.connectMs;
  const waiting = endpoints.flatMap((e) => links.find(e.address) ?? []).filter((l) => l.state === 'connecting' || l.state === 'broken');
  if (waiting.length === 0) throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} is ready (all draining)`, { service });
  // The waits end together: when one link comes up, or the call's signal aborts.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.any(waiting.map((link) => link.whenReady(connectMs, stop.signal).then(() => link)));
  } catch {
    if (signal.aborted) throw signal.reason;
    throw new MeshError('NO_HEALTHY_ENDPOINT', `no endpoint of ${service} became reachable within ${connectMs} ms`, { service });
  } finally {
    stop.abort();
    signal.removeEventListener('abort', onAbort);
  }
}
