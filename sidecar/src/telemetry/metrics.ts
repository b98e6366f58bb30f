// Metrics with OpenTelemetry, read by Prometheus from the admin listener's /metrics. The exporter
// serves no port of its own (preventServerStart): the admin listener hands it the request.
// docs/metrics.md lists every metric; a test keeps that list and this file in step.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Counter, ObservableGauge } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

export class MeshMetrics {
  readonly #exporter: PrometheusExporter;
  readonly #provider: MeterProvider;
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
  /** Outbox messages by state (queued, delivered, failed, dead); fed by the outbox's last count. */
  readonly outboxMessages: ObservableGauge;

  constructor(identity: { service: string; namespace: string; instance: string }) {
    this.#exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
    this.#provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': identity.service, 'service.namespace': identity.namespace, 'service.instance.id': identity.instance }),
      readers: [this.#exporter],
    });
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
    this.asyncDuplicatesDropped = meter.createCounter('mcp_async_duplicates_dropped', {
      description: 'Redeliveries answered from the record of received messages instead of reaching the app again.',
    });
    this.outboxMessages = meter.createObservableGauge('mcp_outbox_messages', {
      description: 'Messages in the outbox by state; state="dead" is the dead-letter queue.',
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
