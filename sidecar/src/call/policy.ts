// Policy: the settings a call runs under (its route's policy; a durable message's delivery: one try,
// under its own attempt timeout), the service's state under them, and MCP session affinity — a request
// with an owner token is pinned to its session's owner, and an answer that opens a session binds it to
// the replica that answered.
import { bindResponse, routeSession, SESSION_HEADER, type EndpointEventRewriter } from '../affinity/mcp-session.ts';
import { MeshError } from '../errors/mesh-error.ts';
import type { Header } from '../mcp/codec.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import type { Call, Layer } from './call.ts';
import type { CallResult, PolicySource, SessionAffinity } from './pipeline.ts';
import type { ServiceStates } from './service-state.ts';

export interface PolicyLayerOptions {
  policies: PolicySource;
  services: ServiceStates;
  sessions: SessionAffinity;
}

export function policyLayer(options: PolicyLayerOptions): Layer {
  const { policies, services, sessions } = options;
  // Not async: a call without affinity passes straight down; one with it waits only to bind.
  return (next) => (call) => {
    const { request } = call;
    try {
      const policy = policies.resolve(request.target.service, request.target.namespace, request);
      call.observed.route(policy.route);
      call.policy = request.delivery ? deliverySettings(policy) : policy;
      call.state = services.get(call.service, call.policy);
      if (!policy.mcp.affinity) return next(call); // `mcp: { affinity: false }`
      pinSession(call, sessions);
    } catch (err) {
      return Promise.reject(err);
    }
    return next(call).then((result) => bindSession(call, sessions, result));
  };
}

/**
 * A delivery of a durable message is tried once here (the outbox redelivers from disk, with its own
 * back-off), under its attempt timeout (the edge's deadlineMs) instead of the request deadline.
 * Made once per policy object; its budget, breakers and balancer are the route's (same settings).
 */
const deliveries = new WeakMap<EffectivePolicy, EffectivePolicy>();
function deliverySettings(policy: EffectivePolicy): EffectivePolicy {
  let settings = deliveries.get(policy);
  if (!settings) {
    settings = { ...policy, retries: { ...policy.retries, attempts: 1 }, timeouts: { ...policy.timeouts, overallMs: 0 } };
    deliveries.set(policy, settings);
  }
  return settings;
}

/** A request carrying an owner token is pinned to that owner, with the app's own session id restored. */
function pinSession(call: Call, sessions: SessionAffinity): void {
  const route = routeSession(sessions.tokens, call.request);
  if (route.kind === 'invalid') throw new MeshError('SESSION_TOKEN_INVALID', route.reason, { service: call.service });
  if (route.kind === 'none') return;
  sessions.onRouted(call.service);
  call.observed.affinity('pinned');
  call.owner = route.owner.address;
  call.headers = route.headers;
  call.path = route.path;
}

/** A response that hands out a session id binds that session to the replica that answered. */
function bindSession(call: Call, sessions: SessionAffinity, result: CallResult): CallResult {
  const service = call.service;
  const bound = bindResponse(sessions.tokens, result.endpoint, result, hasSession(call.request.headers));
  if (bound.bound) {
    sessions.onBound(service);
    call.observed.affinity('bound');
  }
  if (bound.headers === result.headers && bound.body === result.body) return result; // most answers: nothing to bind
  if (!Buffer.isBuffer(bound.body) && bound.body !== result.body) {
    // An SSE stream whose first event may bind the session (HTTP+SSE): counted when it does.
    (bound.body as EndpointEventRewriter).once('bound', () => sessions.onBound(service));
  }
  return { ...result, headers: bound.headers, body: bound.body };
}

function hasSession(headers: readonly Header[]): boolean {
  for (const h of headers) if (h.name === SESSION_HEADER) return true;
  return false;
}
