// The resolved, effective policy for one call: what the policy engine (policy/) hands the call
// pipeline, and what the resilience layers (resilience/, balancer/) are built from. Durations are in
// milliseconds, every field is filled (defaults applied), and objects are frozen. The YAML form that
// users write lives in policy/schema.ts; this is the runtime form, with no logic.

export type RetryCondition =
  | 'connect-failure'        // the request never left: no link, peer unreachable (PEER_UNAVAILABLE, NO_HEALTHY_ENDPOINT from a broken link)
  | 'refused-stream'         // the peer refused it before running it (SHUTTING_DOWN, CIRCUIT_OPEN on a peer endpoint, OVERLOADED)
  | 'reset'                  // the link broke with the call in flight (LINK_BROKEN), or the app reset (APP_RESET)
  | 'unavailable'            // status 503 from the app
  | 'gateway-error'          // status 502, 503 or 504 from the app (or the mesh: APP_UNAVAILABLE, DEADLINE of one try)
  | '5xx'                    // any 5xx
  | 'retriable-status-codes' // a status listed in `statusCodes`
  | 'retriable-4xx';         // 409

export type LoadBalancerPolicy = 'round-robin' | 'least-request' | 'p2c-ewma' | 'consistent-hash';

/**
 * Where a request's affinity key comes from (affinity/hash-key.ts): a header (name lower-case), a
 * query parameter, a cookie, or the calling service / pod identity.
 */
export type HashSource =
  | { readonly header: string }
  | { readonly query: string }
  | { readonly cookie: string }
  | { readonly source: true };

export interface TimeoutPolicy {
  /** Longest wait for a link to a peer before the try fails with connect-failure. */
  connectMs: number;
  /** Limit on one try (0: none, only the overall deadline applies). */
  perTryMs: number;
  /** Overall deadline for the call, retries included, until the response head arrives (0: none). */
  overallMs: number;
  /** A streamed body is cut after this long with no data. */
  streamIdleMs: number;
}

export interface RetryBudgetPolicy {
  /** Retries allowed as a share of the calls made (Linkerd: 0.2 = 20% extra load). */
  ratio: number;
  /** Retries always allowed per second on top of the ratio (Linkerd: 10). */
  minPerSecond: number;
  /** Window over which calls and retries are counted (Linkerd: 10 s). */
  windowMs: number;
}

export interface RetryPolicy {
  /** Total tries including the first; 1 means no retries. */
  attempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  retryOn: readonly RetryCondition[];
  /** Statuses that count for 'retriable-status-codes'. */
  statusCodes: readonly number[];
  /** Retry non-idempotent methods (POST, PATCH…) too; off unless a route opts in. */
  nonIdempotent: boolean;
  /** A request body larger than this is never replayed (64 KiB). */
  maxReplayBodyBytes: number;
  /** Wait what a 503/429 answer's Retry-After says (capped by the deadline), instead of the back-off. */
  honorRetryAfter: boolean;
  budget: RetryBudgetPolicy;
}

export interface CircuitBreakerPolicy {
  enabled: boolean;
  /** Open when this percentage of calls in the rolling window failed… */
  errorThresholdPercentage: number;
  /** …and at least this many calls were made in the window. */
  volumeThreshold: number;
  rollingWindowMs: number;
  /** How long the breaker stays open before it lets one probe through (half-open). */
  resetTimeoutMs: number;
  /** Statuses from the app that count as failures (default: every 5xx). 4xx never count unless listed. */
  failureStatuses: readonly number[];
}

export interface OutlierDetectionPolicy {
  enabled: boolean;
  /** Eject an endpoint after this many failures in a row (Envoy: 5). */
  consecutiveFailures: number;
  /** How often success rates are evaluated (Envoy: 10 s). */
  intervalMs: number;
  /** Ejection time, multiplied by the number of times ejected (Envoy: 30 s)… */
  baseEjectionMs: number;
  /** …up to this (Envoy: 300 s). */
  maxEjectionMs: number;
  /** Most endpoints ejected at once, in percent (at least one may always be). */
  maxEjectionPercent: number;
  /** Success-rate ejection: below mean − factor·stdev, when enough calls were seen. */
  successRate: { enabled: boolean; minRequests: number; stdevFactor: number };
}

export interface LoadBalancerSettings {
  policy: LoadBalancerPolicy;
  /** Peak-EWMA decay (Linkerd: 10 s) and the latency assumed for an endpoint with no data (30 ms). */
  ewmaDecayMs: number;
  ewmaDefaultRttMs: number;
  consistentHash: ConsistentHashSettings;
}

/** Policy consistent-hash (balancer/consistent-hash.ts). */
export interface ConsistentHashSettings {
  /** Key sources in order; the first that yields a non-empty value gives the key. */
  hashOn: readonly HashSource[];
  /** Ring points per endpoint of weight 1 (an endpoint of weight w gets w times as many). */
  virtualNodes: number;
  /** No endpoint takes a call that would put it above this factor × its fair share of the calls in flight (≥ 1). */
  boundedLoadFactor: number;
}

/** MCP (Model Context Protocol) awareness. */
export interface McpPolicy {
  /** Keep each MCP session on the replica that holds it, learnt from the traffic (on by default). */
  affinity: boolean;
}

export type PriorityName = 'high' | 'medium' | 'low';

/** Per-message compression on the link (mcp/compression.ts). */
export interface CompressionPolicy {
  algorithm: 'none' | 'gzip' | 'lz4';
  /** Only payloads at least this large are compressed. */
  minBytes: number;
}

/** Delivery of async messages and events (async/dispatcher.ts). */
export interface AsyncPolicy {
  /** Attempts in all before a message becomes a dead letter. */
  attempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Age after which an undelivered message becomes a dead letter (0: none). */
  maxAgeMs: number;
  /** Limit on one delivery attempt. */
  attemptTimeoutMs: number;
}

/** Who may call (checked by the called sidecar, inbound/access.ts). */
export interface AccessPolicy {
  /** Allowed callers: "name.namespace", "name" (the called service's namespace), "*.namespace", "*". */
  allow: readonly string[];
  /** Refuse callers not allowed even when `allow` is empty. */
  defaultDeny: boolean;
}

/** A topic the service subscribes to: events are POSTed to `path` on one replica (competing) or all (broadcast). */
export interface SubscriptionPolicy {
  topic: string;
  path: string;
  delivery: 'competing' | 'broadcast';
}

/** A named group of endpoints by labels, and its share of traffic. */
export interface SubsetPolicy {
  name: string;
  labels: Readonly<Record<string, string>>;
  weight: number;
}

/** Requests with all these headers go to `subset` (canary / request colouring). */
export interface HeaderRoutePolicy {
  headers: Readonly<Record<string, string>>;
  subset: string;
}

export interface ConcurrencyPolicy {
  /** Most calls in flight to the service from this sidecar; 0 = no limit. */
  maxInFlight: number;
  /** Calls waiting for a slot; beyond it, 503 OVERLOADED at once. */
  maxQueue: number;
  /** Retry-After (seconds) on OVERLOADED answers. */
  retryAfterSeconds: number;
}

/** Everything that governs one call to one service (and route). */
export interface EffectivePolicy {
  /** Route name for metrics and logs: the matching policy's route name, or "default". */
  route: string;
  timeouts: TimeoutPolicy;
  retries: RetryPolicy;
  circuitBreaker: CircuitBreakerPolicy;
  outlierDetection: OutlierDetectionPolicy;
  loadBalancer: LoadBalancerSettings;
  subsets: readonly SubsetPolicy[];
  headerRoutes: readonly HeaderRoutePolicy[];
  concurrency: ConcurrencyPolicy;
  mcp: McpPolicy;
  priority: PriorityName;
  compression: CompressionPolicy;
  access: AccessPolicy;
  async: AsyncPolicy;
  /** Topics this service subscribes to (service-wide policies only). */
  subscriptions: readonly SubscriptionPolicy[];
}
