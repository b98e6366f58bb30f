// One call on its way down the stack (stack.ts): what the edge asked for, and the few things the
// layers work out for it and hand down. Each field says which layer sets it; a layer reads only what
// a layer above it set. The call is also what the transport reads (mcp/transport.ts LinkCall), so a
// try builds no second description of the request.
import type { Endpoint } from '../discovery/resolver.ts';
import type { Header, TraceContext } from '../mcp/codec.ts';
import type { CompressionSetting } from '../mcp/compression.ts';
import type { PeerLink } from '../mcp/link.ts';
import type { LaneName, LinkCall, RequestBody } from '../mcp/transport.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import type { Release } from '../resilience/concurrency.ts';
import type { Deadline } from '../resilience/deadline-timers.ts';
import type { RetryBudget } from '../resilience/retry.ts';
import { NO_OBSERVER, QUIET_ATTEMPT, type AttemptObservation, type OutboundObservation } from '../telemetry/observer.ts';
import type { CallResult, OutboundCall } from './pipeline.ts';
import type { ServiceState } from './service-state.ts';

/** A layer's view of everything below it. */
export type Handler = (call: Call) => Promise<CallResult>;

/** A layer: takes the handler below and returns its own. Options are checked when it is built, not per call. */
export type Layer = (next: Handler) => Handler;

/** Layers listed top to bottom, over `bottom` (the transport). */
export function compose(layers: readonly Layer[], bottom: Handler): Handler {
  let handler = bottom;
  for (let i = layers.length - 1; i >= 0; i--) handler = layers[i]!(handler);
  return handler;
}

const NO_ENDPOINTS: readonly Endpoint[] = [];
const QUIET = NO_OBSERVER.outbound({ service: '', method: '', path: '', headers: [], kind: 'call' });

export class Call implements LinkCall {
  /** What the edge asked for (outbound/server.ts, batch.ts, async/dispatcher.ts, outbound/egress.ts). */
  readonly request: OutboundCall;

  // ---- route (route.ts; egressRoute in outbound/egress.ts for hosts outside the mesh) ----
  /** "name.namespace" (a host for egress): what errors name, the envelope's destination. */
  service = '';
  /** The service's endpoints from discovery. */
  endpoints: readonly Endpoint[] = NO_ENDPOINTS;
  /** Telemetry of the call; each try opens its own attempt on it. */
  observed: OutboundObservation = QUIET;

  // ---- policy (policy.ts) ----
  /** The settings the call runs under: the route's policy, or a delivery's (one try, its own deadline). */
  policy!: EffectivePolicy;
  /** The service's balancer, outlier detector, limiter and retry budget under that policy. */
  state: ServiceState | undefined;
  /** The MCP session owner every try must go to (pinned session); the headers and path it restores. */
  owner: string | undefined;
  headers: readonly Header[];
  path: string;

  // ---- deadline (deadline.ts) ----
  /** performance.now() time of the overall deadline; Infinity for none. */
  deadlineAt = Infinity;
  /** Its timer, cancelled when the call ends (end()). */
  deadline: Deadline | undefined;

  // ---- concurrency (concurrency.ts) ----
  /** The slot of the service's limiter, released when the call ends (end()). */
  slot: Release | undefined;

  // ---- retry (retry.ts) ----
  /** Tries made so far (the current one included). */
  attempt = 0;
  /** Endpoints this call already tried (made on the first retry); the balancer avoids them. */
  tried: Set<string> | undefined;
  /** One draw per call for weighted subsets: every try lands in the same subset. */
  readonly splitDraw = Math.random();

  // ---- egress route (outbound/egress.ts) ----
  /** The checked address and port an egress call connects to. */
  dialled: string | undefined;

  // ---- balance (balance.ts) ----
  /** The link the current try goes on. */
  link: PeerLink | undefined;

  // ---- endpoint breaker (endpoint-breaker.ts) ----
  /** Telemetry of the current try (opened with the endpoint breaker's state). */
  tryObserved: AttemptObservation = QUIET_ATTEMPT;

  // ---- transport (link-transport.ts) ----
  /** The current try's signal: the call's, or one that also ends at the per-try timeout. */
  trySignal: AbortSignal;
  /** The time the peer is told the current try has (ms; 0 for none). */
  budgetMs = 0;

  constructor(request: OutboundCall) {
    this.request = request;
    this.headers = request.headers;
    this.path = request.path;
    this.trySignal = request.cancel.signal;
  }

  /**
   * The call is over (its answer is in, or it failed): cancel its deadline and release its slot. Run
   * once by the route layer (observeToEnd), so that the layers which take them need no frame that
   * waits for the answer.
   */
  end(): void {
    this.slot?.();
    this.deadline?.cancel();
    this.slot = this.deadline = undefined;
  }

  /** The one signal of the call: made at the edge; aborted by the app leaving or by the deadline layer. */
  get signal(): AbortSignal {
    return this.request.cancel.signal;
  }

  /** The retry budget the call's retries draw on; none for calls without service state (egress). */
  get budget(): RetryBudget | undefined {
    return this.state?.budget;
  }

  // ---- LinkCall (what the transport reads) ----
  get method(): string { return this.request.method; }
  get authority(): string { return this.request.authority; }
  get body(): RequestBody { return this.request.body; }
  get expectStream(): boolean { return this.request.expectStream; }
  get lane(): LaneName { return this.request.priority ?? this.policy.priority; }
  get delivery(): OutboundCall['delivery'] { return this.request.delivery; }
  get compression(): CompressionSetting | undefined {
    const compression = this.policy.compression;
    return compression.algorithm === 'none' ? undefined : compression;
  }
  get streamIdleMs(): number { return this.policy.timeouts.streamIdleMs; }
  get trace(): TraceContext | undefined { return this.tryObserved.trace; }
  batched(size: number): void { this.tryObserved.batched?.(size); }
}
