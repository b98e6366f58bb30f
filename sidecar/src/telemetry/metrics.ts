// Metrics with OpenTelemetry, read by Prometheus from the admin listener's /metrics. The exporter
// serves no port of its own (preventServerStart): the admin listener hands it the request.
// docs/metrics.md lists every metric; a test keeps that list and this file in step.
//
// Two kinds of instruments:
//   - OpenTelemetry's own (meter.create…): for events that are rare (reloads, breaker transitions,
//     sessions, async messages) and for gauges read when Prometheus scrapes (runtime-metrics.ts);
//   - direct series (direct.create…) for what happens on every call and every batch: requests,
//     tries, retries, latency, batch sizes. The SDK hashes the attributes of every measurement
//     (sort + JSON.stringify, about 0.6–0.9 µs each); a direct series is an object made once per
//     label set, kept by its user, and updated with plain arithmetic. They reach Prometheus through
//     the same exporter, as a MetricProducer (the SDK's hook for metrics aggregated elsewhere).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ValueType, type Attributes, type Counter, type HrTime, type ObservableGauge } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import {
  AggregationTemporality, DataPointType, MeterProvider,
  type CollectionResult, type DataPoint, type Histogram, type MetricData, type MetricProducer,
} from '@opentelemetry/sdk-metrics';

/** Latency buckets (seconds): sub-millisecond hops on a sidecar up to the longest sensible call. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Envelopes per batch: powers of two up to well past link.batchMaxCount's default (128). */
export const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export class MeshMetrics {
  readonly #exporter: PrometheusExporter;
  readonly #provider: MeterProvider;
  readonly #direct: DirectMetrics;
  /** Policy reloads rejected because a file was invalid (the running policy stayed). */
  readonly policyReloadFailures: Counter;
  /** Circuit breaker state changes, by service, scope (service or endpoint) and new state. */
  readonly breakerTransitions: Counter;
  /** MCP sessions bound to the replica that created them, by service. */
  readonly sessionsBound: Counter;
  /** Requests routed to their MCP session's owner, by service. */
  readonly sessionRequestsRouted: Counter;
  /** Requests whose MCP session owner was gone (404 to the client), by service. */
  readonly sessionOwnerGone: Counter;
  /** Async messages and event copies written to the outbox, by destination service and kind (call or event). */
  readonly asyncAccepted: Counter;
  /** Ends of delivery attempts, by destination service and outcome (delivered, failed, retry, dead). */
  readonly asyncDeliveries: Counter;
  /** Redeliveries this sidecar answered from its record instead of handing them to the app, by calling service. */
  readonly asyncDuplicatesDropped: Counter;
  /** Calls refused by access rules, by route of this sidecar's service and calling service. */
  readonly accessDenied: Counter;
  /** Requests refused by a limit before they became calls, by limit. */
  readonly limitRejections: Counter;
  /** Calls refused for who is at the other end (secure naming, misdirected calls, pulls by another caller), by reason. */
  readonly peerRefusals: Counter;
  /** Outbox messages by state (queued, delivered, failed, dead); fed by the outbox's last count. */
  readonly outboxMessages: ObservableGauge;

  // ---- per call (call-metrics.ts): direct series ----
  /** Calls by service, route, direction (outbound/inbound), code (HTTP status) and error (mesh code or ""). */
  readonly requests: DirectCounter;
  /** Calls' latency in seconds by service, route, direction: to the answer's head, or the failure. */
  readonly latency: DirectHistogram;
  /** Tries beyond the first of outbound calls, by service and route. */
  readonly retries: DirectCounter;
  /** Tries sent to an endpoint, by service, route, code and error. */
  readonly attempts: DirectCounter;
  /** Envelopes per batch written on links to peers (runtime-metrics.ts). */
  readonly linkBatchSize: DirectHistogram;

  // ---- read at scrape time (runtime-metrics.ts) ----
  /** Breaker state (0 closed, 1 half-open, 2 open) by service, scope and endpoint. */
  readonly breakerState: ObservableGauge;
  /** Endpoints ejected by outlier detection, by service. */
  readonly outlierEjected: ObservableGauge;
  /** Links to peer sidecars by state. */
  readonly links: ObservableGauge;
  /** Calls open on the link to each peer (sent or queued). */
  readonly linkInFlight: ObservableGauge;
  /** Calls waiting, by queue (limiter) and service. */
  readonly queueDepth: ObservableGauge;
  /** 1 for the sidecar's TLS mode (mode="mutual" or "plaintext"), 0 for the other. */
  readonly tlsMode: ObservableGauge;
  /** MCP sessions the local app holds, as counted against limits.maxSessions. */
  readonly sessionsHeld: ObservableGauge;

  constructor(identity: { service: string; namespace: string; instance: string }) {
    const resource = resourceFromAttributes({ 'service.name': identity.service, 'service.namespace': identity.namespace, 'service.instance.id': identity.instance });
    this.#direct = new DirectMetrics(resource);
    this.#exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, metricProducers: [this.#direct] });
    this.#provider = new MeterProvider({ resource, readers: [this.#exporter] });
    const meter = this.#provider.getMeter('mcp-mesh');
    this.policyReloadFailures = meter.createCounter('mcp_policy_reload_failures', {
      description: 'Policy reloads rejected because a file was invalid; the running policy stayed.',
    });
    this.breakerTransitions = meter.createCounter('mcp_circuit_breaker_transitions', {
      description: 'Circuit breaker state changes, by service, scope and new state.',
    });
    this.sessionsBound = meter.createCounter('mcp_sessions_bound', {
      description: 'MCP sessions bound to the replica that created them.',
    });
    this.sessionRequestsRouted = meter.createCounter('mcp_session_requests_routed', {
      description: "Requests routed to their MCP session's owner.",
    });
    this.sessionOwnerGone = meter.createCounter('mcp_session_owner_gone', {
      description: 'Requests whose MCP session owner was gone; answered 404 so the client starts a new session.',
    });
    this.asyncAccepted = meter.createCounter('mcp_async_accepted', {
      description: 'Async messages and event copies written to the outbox (on disk) and answered 202.',
    });
    this.asyncDeliveries = meter.createCounter('mcp_async_deliveries', {
      description: 'Ends of delivery attempts of async messages and events, by outcome.',
    });
    this.limitRejections = meter.createCounter('mcp_limit_rejections', {
      description: 'Requests refused by a limit (head size, head timeout, malformed, body size, frame size, streams per peer, MCP sessions), and inbound connections refused or closed by one (per peer, in all, no call in time).',
    });
    this.peerRefusals = meter.createCounter('mcp_peer_refusals', {
      description: 'Calls refused for who is at the other end: a peer certificate that may not serve the called service, a call for a service this sidecar does not serve, a pull of a parked body by another caller.',
    });
    this.accessDenied = meter.createCounter('mcp_access_denied', {
      description: 'Calls refused by the access rules of this sidecar\'s service (403 ACCESS_DENIED).',
    });
    this.asyncDuplicatesDropped = meter.createCounter('mcp_async_duplicates_dropped', {
      description: 'Redeliveries answered from the record of received messages instead of reaching the app again.',
    });
    this.outboxMessages = meter.createObservableGauge('mcp_outbox_messages', {
      description: 'Messages in the outbox by state; state="dead" is the dead-letter queue.',
    });

    const direct = this.#direct;
    this.requests = direct.createCounter('mcp_requests', {
      description: 'Calls by service, route, direction (outbound: made for the app; inbound: received from peers), HTTP status (code) and mesh error code (error, empty when the app answered).',
    });
    this.latency = direct.createHistogram('mcp_latency_seconds', {
      description: 'Call latency in seconds: outbound from the call to its answer head (or failure), inbound from arrival to the app answer head.',
      boundaries: LATENCY_BUCKETS_SECONDS,
    });
    this.retries = direct.createCounter('mcp_retries', {
      description: 'Tries beyond the first made for outbound calls.',
    });
    this.attempts = direct.createCounter('mcp_attempts', {
      description: 'Tries of outbound calls sent to an endpoint, by how each ended.',
    });
    this.linkBatchSize = direct.createHistogram('mcp_link_batch_size', {
      description: 'Envelopes per batch written on the links to peer sidecars.',
      boundaries: BATCH_SIZE_BUCKETS,
    });

    this.breakerState = meter.createObservableGauge('mcp_circuit_breaker_state', {
      description: 'Circuit breaker state: 0 closed, 1 half-open, 2 open.',
    });
    this.outlierEjected = meter.createObservableGauge('mcp_outlier_ejected_endpoints', {
      description: 'Endpoints of a service ejected by outlier detection right now.',
    });
    this.links = meter.createObservableGauge('mcp_links', {
      description: 'Links to peer sidecars by state.',
    });
    this.linkInFlight = meter.createObservableGauge('mcp_link_in_flight', {
      description: 'Calls open on the link to a peer sidecar (queued or sent, not yet answered).',
    });
    this.queueDepth = meter.createObservableGauge('mcp_queue_depth', {
      description: 'Calls waiting in a queue: queue="limiter" is the concurrency limiter of a called service.',
    });
    this.tlsMode = meter.createObservableGauge('mcp_tls_mode', {
      description: 'Transport security of sidecar-to-sidecar traffic: 1 for the current mode (mutual or plaintext), 0 for the other.',
    });
    this.sessionsHeld = meter.createObservableGauge('mcp_sessions_held', {
      description: 'MCP sessions the local app holds (opened through this sidecar, not yet ended or idle past limits.sessionIdleTimeout).',
    });
  }

  /** Report the sessions held whenever metrics are read. */
  observeSessionsHeld(count: () => number): void {
    this.sessionsHeld.addCallback((result) => result.observe(count()));
  }

  /** Report the TLS mode whenever metrics are read. */
  observeTlsMode(mode: () => 'mutual' | 'plaintext'): void {
    this.tlsMode.addCallback((result) => {
      const current = mode();
      for (const m of ['mutual', 'plaintext'] as const) result.observe(m === current ? 1 : 0, { mode: m });
    });
  }

  /** Report the outbox's counts (by state) whenever metrics are read. */
  observeOutbox(counts: () => Record<string, number> | undefined): void {
    this.outboxMessages.addCallback((result) => {
      const current = counts();
      if (current) for (const [state, value] of Object.entries(current)) result.observe(value, { state });
    });
  }

  /** Serve the Prometheus text format on an admin request. */
  serve(request: IncomingMessage, response: ServerResponse): void {
    this.#exporter.getMetricsRequestHandler(request, response);
  }

  shutdown(): Promise<void> {
    return this.#provider.shutdown();
  }
}

// ---- direct series ----------------------------------------------------------------------------

/** Most series one direct metric keeps; further label sets share one `otel_metric_overflow` series (as the SDK does). */
export const DIRECT_SERIES_LIMIT = 2000;
const OVERFLOW: Attributes = Object.freeze({ otel_metric_overflow: 'true' });
const OVERFLOW_KEY = '#overflow';

/** One label set of a counter. Keep it and call add(): no lookup, no allocation. */
export class CounterSeries {
  readonly attributes: Attributes;
  readonly startTime: HrTime;
  value = 0;

  constructor(attributes: Attributes) {
    this.attributes = attributes;
    this.startTime = hrNow();
  }

  add(n: number): void {
    this.value += n;
  }
}

/** One label set of a histogram with fixed buckets (upper bounds inclusive, as Prometheus `le`). */
export class HistogramSeries {
  readonly attributes: Attributes;
  readonly startTime: HrTime;
  readonly #boundaries: readonly number[];
  /** One per boundary, and one more for values above the last (+Inf). */
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(attributes: Attributes, boundaries: readonly number[]) {
    this.attributes = attributes;
    this.startTime = hrNow();
    this.#boundaries = boundaries;
    this.#counts = new Float64Array(boundaries.length + 1);
  }

  record(value: number): void {
    const boundaries = this.#boundaries;
    const n = boundaries.length;
    let i = 0;
    while (i < n && value > boundaries[i]!) i++; // short lists, small values first: a scan beats a search
    this.#counts[i] = this.#counts[i]! + 1;
    this.#sum += value;
    this.#count++;
  }

  /** A copy: the serializer runs after an await, while calls go on recording. */
  snapshot(): Histogram {
    return { buckets: { boundaries: [...this.#boundaries], counts: Array.from(this.#counts) }, count: this.#count, sum: this.#sum };
  }
}

abstract class DirectMetric<S extends { readonly attributes: Attributes }> {
  readonly name: string;
  readonly description: string;
  readonly #series = new Map<string, S>();

  constructor(name: string, description: string) {
    this.name = name;
    this.description = description;
  }

  /**
   * The series of `attributes`, made on first use. Made for each distinct label set once, so the
   * cost here (a key built from the labels) is paid once; callers keep what they get.
   */
  series(attributes: Attributes): S {
    const key = attributeKey(attributes);
    let series = this.#series.get(key);
    if (series) return series;
    if (this.#series.size >= DIRECT_SERIES_LIMIT) {
      series = this.#series.get(OVERFLOW_KEY);
      if (series) return series;
      series = this.make(OVERFLOW);
      this.#series.set(OVERFLOW_KEY, series);
      return series;
    }
    series = this.make(Object.freeze({ ...attributes }));
    this.#series.set(key, series);
    return series;
  }

  all(): IterableIterator<S> {
    return this.#series.values();
  }

  get size(): number {
    return this.#series.size;
  }

  protected abstract make(attributes: Attributes): S;
  abstract data(endTime: HrTime): MetricData;
}

export class DirectCounter extends DirectMetric<CounterSeries> {
  /** Shorthand for series(attributes).add(n), for callers off the hot path. */
  add(n: number, attributes: Attributes): void {
    this.series(attributes).add(n);
  }

  protected make(attributes: Attributes): CounterSeries {
    return new CounterSeries(attributes);
  }

  data(endTime: HrTime): MetricData {
    const dataPoints: DataPoint<number>[] = [];
    for (const s of this.all()) dataPoints.push({ attributes: s.attributes, startTime: s.startTime, endTime, value: s.value });
    return {
      descriptor: { name: this.name, description: this.description, unit: '', valueType: ValueType.DOUBLE },
      aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints,
    };
  }
}

export class DirectHistogram extends DirectMetric<HistogramSeries> {
  readonly boundaries: readonly number[];

  constructor(name: string, description: string, boundaries: readonly number[]) {
    super(name, description);
    this.boundaries = boundaries;
  }

  protected make(attributes: Attributes): HistogramSeries {
    return new HistogramSeries(attributes, this.boundaries);
  }

  data(endTime: HrTime): MetricData {
    const dataPoints: DataPoint<Histogram>[] = [];
    for (const s of this.all()) dataPoints.push({ attributes: s.attributes, startTime: s.startTime, endTime, value: s.snapshot() });
    return {
      descriptor: { name: this.name, description: this.description, unit: '', valueType: ValueType.DOUBLE },
      aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.HISTOGRAM, dataPoints,
    };
  }
}

/** The direct metrics, handed to the Prometheus exporter as a MetricProducer. */
class DirectMetrics implements MetricProducer {
  readonly #resource: Resource;
  readonly #metrics: (DirectCounter | DirectHistogram)[] = [];

  constructor(resource: Resource) {
    this.#resource = resource;
  }

  createCounter(name: string, options: { description: string }): DirectCounter {
    const counter = new DirectCounter(name, options.description);
    this.#metrics.push(counter);
    return counter;
  }

  createHistogram(name: string, options: { description: string; boundaries: readonly number[] }): DirectHistogram {
    const histogram = new DirectHistogram(name, options.description, options.boundaries);
    this.#metrics.push(histogram);
    return histogram;
  }

  async collect(): Promise<CollectionResult> {
    const now = hrNow();
    // Like the SDK's: a metric appears once something was recorded in it.
    const metrics = this.#metrics.filter((m) => m.size > 0).map((m) => m.data(now));
    return { resourceMetrics: { resource: this.#resource, scopeMetrics: [{ scope: { name: 'mcp-mesh' }, metrics }] }, errors: [] };
  }
}

function attributeKey(attributes: Attributes): string {
  return JSON.stringify(Object.keys(attributes).sort().map((k) => [k, attributes[k]]));
}

function hrNow(): HrTime {
  const ms = performance.timeOrigin + performance.now();
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6))];
}
