// Tracing: the settings read from OTEL_* variables, the spans the observer makes (kinds, parents,
// attributes, the context handed on), sampling, export over OTLP with a flush on shutdown, and what
// the observer costs a call when tracing is off, on but not sampling, and sampling.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { pino, type Logger } from 'pino';
import { NO_OBSERVER, type CallObserver, type InboundStart, type OutboundStart } from '../../../sidecar/src/telemetry/observer.ts';
import { createTracing } from '../../../sidecar/src/telemetry/tracing.ts';
import { sampler } from '../../../sidecar/src/telemetry/tracing-sdk.ts';
import { tracingConfig, type SamplerConfig } from '../../../sidecar/src/telemetry/tracing-config.ts';
import { createTracingObserver, SPAN_NAMES } from '../../../sidecar/src/telemetry/tracing-observer.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../../helpers/otlp-receiver.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const APP_SPAN = '00f067aa0ba902b7';
const sampledParent = `00-${TRACE}-${APP_SPAN}-01`;
const unsampledParent = `00-${TRACE}-${APP_SPAN}-00`;

const quiet: Logger = pino({ level: 'silent' });

/** A logger whose lines (parsed) end up in `lines`. */
function memoryLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({ write(chunk: Buffer, _encoding, done) { lines.push(JSON.parse(chunk.toString())); done(); } });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

const call = (headers: OutboundStart['headers'] = [], kind: OutboundStart['kind'] = 'call'): OutboundStart => ({
  service: 'payments.default', method: 'POST', path: '/pay?card=secret', headers, kind,
});
const request = (over: Partial<InboundStart> = {}): InboundStart => ({
  service: 'payments.default', source: 'orders.default', method: 'POST', path: '/pay?card=secret', headers: [], trace: undefined, messageId: undefined, ...over,
});

/** An observer over an SDK provider that keeps finished spans in memory. */
function inMemory(samplerConfig: SamplerConfig = { name: 'parentbased_always_on', ratio: 1 }): { observer: CallObserver; spans: () => ReadableSpan[] } {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ sampler: sampler(samplerConfig), spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  return { observer: createTracingObserver(provider.getTracer('test')), spans: () => exporter.getFinishedSpans() };
}

const byName = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe('tracing settings (OTEL_* environment)', () => {
  it('is off without an OTLP endpoint, when disabled, or with exporter none', () => {
    assert.equal(tracingConfig({}).enabled, false);
    assert.equal(tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }).enabled, false, 'empty is unset');
    assert.equal(tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).enabled, false);
    assert.equal(tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).enabled, false);
    const grpc = tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    assert.equal(grpc.enabled, false);
    assert.match((grpc as { reason: string }).reason, /grpc/);
  });

  it('is on with an endpoint: the general one gets /v1/traces, the traces one is used as it is', () => {
    const general = tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' });
    assert.ok(general.enabled);
    assert.equal(general.url, 'http://collector:4318/v1/traces');
    assert.equal(general.protocol, 'http/protobuf');
    assert.deepEqual(general.sampler, { name: 'parentbased_traceidratio', ratio: 0.01 });
    assert.deepEqual(general.batch, { scheduledDelayMillis: 5000, exportTimeoutMillis: 30_000, maxQueueSize: 2048, maxExportBatchSize: 512 });
    const specific = tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:1', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/custom/path' });
    assert.ok(specific.enabled);
    assert.equal(specific.url, 'http://collector:4318/custom/path');
    const asked = tracingConfig({ OTEL_TRACES_EXPORTER: 'otlp' });
    assert.ok(asked.enabled);
    assert.equal(asked.url, 'http://localhost:4318/v1/traces', 'the OTLP default');
  });

  it('reads protocol, headers, sampler, batching and resource settings; bad values are warned about and ignored', () => {
    const config = tracingConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc,x-a=1',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-a=2',
      OTEL_EXPORTER_OTLP_TIMEOUT: '2500',
      OTEL_TRACES_SAMPLER: 'traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_BSP_MAX_QUEUE_SIZE: '10',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '50',
      OTEL_BSP_EXPORT_TIMEOUT: 'soon',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,team=pay%2Cments',
      OTEL_SERVICE_NAME: 'payments-mesh',
    });
    assert.ok(config.enabled);
    assert.equal(config.url, 'http://collector:4318/v1/traces');
    assert.equal(config.protocol, 'http/json');
    assert.deepEqual(config.headers, { authorization: 'Bearer abc', 'x-a': '2' });
    assert.equal(config.timeoutMillis, 2500);
    assert.deepEqual(config.sampler, { name: 'traceidratio', ratio: 0.25 });
    assert.deepEqual(config.batch, { scheduledDelayMillis: 100, exportTimeoutMillis: 30_000, maxQueueSize: 10, maxExportBatchSize: 10 });
    assert.deepEqual(config.resource, { 'deployment.environment.name': 'prod', team: 'pay,ments', 'service.name': 'payments-mesh' });
    assert.deepEqual(config.warnings, ['OTEL_BSP_EXPORT_TIMEOUT: "soon" is not a positive number; ignored']);

    const bad = tracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER: 'jaeger_remote', OTEL_TRACES_SAMPLER_ARG: '2', OTEL_RESOURCE_ATTRIBUTES: 'a=1,broken' });
    assert.ok(bad.enabled);
    assert.deepEqual(bad.sampler, { name: 'parentbased_traceidratio', ratio: 0.01 });
    assert.deepEqual(bad.resource, {}, 'an unreadable OTEL_RESOURCE_ATTRIBUTES is discarded whole');
    assert.equal(bad.warnings.length, 3, bad.warnings.join('; '));
  });

  it('createTracing without an endpoint is NO_OBSERVER: nothing on the data path', async () => {
    const tracing = await createTracing({ service: 'orders', namespace: 'default', instance: 'i-1', env: {}, logger: quiet });
    assert.equal(tracing.enabled, false);
    assert.equal(tracing.observer, NO_OBSERVER);
    await tracing.shutdown();
  });
});

describe('the spans of a call', () => {
  it('calling side: the call (INTERNAL, parent: the app\'s traceparent) and one CLIENT span per try, each try handing on its own context', () => {
    const { observer, spans } = inMemory();
    const observed = observer.outbound(call([{ name: 'traceparent', value: sampledParent }, { name: 'tracestate', value: 'vendor=x' }]));
    observed.route('payments-pay');
    observed.affinity('pinned');
    const first = observed.attempt(1, '10.0.0.7:15001', 'closed');
    first.end({ status: 502, code: 'APP_RESET' });
    const second = observed.attempt(2, '[fd00::8]:15001', 'half-open');
    second.end({ status: 200 });
    observed.end({ status: 200 }, 2);

    const [callSpan] = byName(spans(), SPAN_NAMES.call('payments.default'));
    const tries = byName(spans(), SPAN_NAMES.attempt('payments.default'));
    assert.ok(callSpan);
    assert.equal(tries.length, 2);
    assert.equal(callSpan.kind, SpanKind.INTERNAL);
    assert.equal(callSpan.spanContext().traceId, TRACE);
    assert.equal(parentOf(callSpan), APP_SPAN, 'the app\'s span is the parent');
    assert.deepEqual(observed.ids, { traceId: TRACE, spanId: callSpan.spanContext().spanId });
    assert.deepEqual(callSpan.attributes, {
      'http.request.method': 'POST', 'url.path': '/pay', 'mcp_mesh.service': 'payments.default', 'mcp_mesh.call_kind': 'call',
      'mcp_mesh.route': 'payments-pay', 'mcp_mesh.affinity': 'pinned', 'mcp_mesh.attempts': 2, 'http.response.status_code': 200,
    });
    assert.equal(callSpan.status.code, SpanStatusCode.UNSET);

    const [one, two] = tries as [ReadableSpan, ReadableSpan];
    for (const t of tries) {
      assert.equal(t.kind, SpanKind.CLIENT);
      assert.equal(parentOf(t), callSpan.spanContext().spanId);
    }
    assert.deepEqual(one.attributes, {
      'http.request.method': 'POST', 'url.path': '/pay', 'server.address': '10.0.0.7', 'server.port': 15001, 'mcp_mesh.service': 'payments.default',
      'mcp_mesh.endpoint': '10.0.0.7:15001', 'mcp_mesh.attempt': 1, 'mcp_mesh.breaker_state': 'closed', 'mcp_mesh.route': 'payments-pay',
      'http.response.status_code': 502, 'error.type': 'APP_RESET', 'mcp_mesh.error_code': 'APP_RESET',
    });
    assert.deepEqual(one.status, { code: SpanStatusCode.ERROR, message: 'APP_RESET' });
    assert.equal(two.attributes['server.address'], 'fd00::8');
    assert.equal(two.attributes['mcp_mesh.attempt'], 2);
    assert.equal(two.attributes['http.request.resend_count'], 1);
    assert.equal(two.attributes['mcp_mesh.breaker_state'], 'half-open');
    assert.deepEqual(first.trace, { traceparent: `00-${TRACE}-${one.spanContext().spanId}-01`, tracestate: 'vendor=x' });
    assert.deepEqual(second.trace, { traceparent: `00-${TRACE}-${two.spanContext().spanId}-01`, tracestate: 'vendor=x' });
  });

  it('called side: SERVER span under the envelope\'s trace (else the forwarded traceparent), CLIENT span for the app call whose context the app gets', () => {
    const { observer, spans } = inMemory();
    const caller = `00-${TRACE}-${'a'.repeat(16)}-01`;
    const observed = observer.inbound(request({ trace: { traceparent: caller, tracestate: 'v=1' }, headers: [{ name: 'traceparent', value: sampledParent }], messageId: '01JMSG' }));
    const app = observed.appCall();
    app.end({ status: 503 });
    observed.end({ status: 503 });
    const [server] = byName(spans(), SPAN_NAMES.inbound('payments.default'));
    const [client] = byName(spans(), SPAN_NAMES.appCall('payments.default'));
    assert.ok(server && client);
    assert.equal(server.kind, SpanKind.SERVER);
    assert.equal(parentOf(server), 'a'.repeat(16), 'the envelope wins over the headers');
    assert.equal(client.kind, SpanKind.CLIENT);
    assert.equal(parentOf(client), server.spanContext().spanId);
    assert.deepEqual(app.headers, [{ name: 'traceparent', value: `00-${TRACE}-${client.spanContext().spanId}-01` }, { name: 'tracestate', value: 'v=1' }]);
    assert.equal(server.attributes['mcp_mesh.source'], 'orders.default');
    assert.equal(server.attributes['mcp_mesh.message_id'], '01JMSG');
    assert.equal(server.attributes['mcp_mesh.call_kind'], 'delivery');
    assert.equal(server.attributes['error.type'], '503');
    assert.equal(server.status.code, SpanStatusCode.ERROR, 'a 5xx is an error');
    assert.deepEqual(observed.ids, { traceId: TRACE, spanId: server.spanContext().spanId });

    const fallback = observer.inbound(request({ headers: [{ name: 'traceparent', value: sampledParent }] }));
    fallback.appCall().end({ status: 404 });
    fallback.end({ status: 404 });
    const second = byName(spans(), SPAN_NAMES.inbound('payments.default'))[1]!;
    assert.equal(parentOf(second), APP_SPAN, 'without an envelope trace, the forwarded traceparent');
    assert.equal(second.status.code, SpanStatusCode.UNSET, 'a 4xx is the app\'s answer, not a failure');
  });

  it('a caller that did not sample is followed: nothing recorded, its decision (flags 00) handed on with the same trace id', () => {
    const { observer, spans } = inMemory({ name: 'parentbased_always_on', ratio: 1 });
    const observed = observer.outbound(call([{ name: 'traceparent', value: unsampledParent }]));
    const attempt = observed.attempt(1, '10.0.0.7:15001', 'closed');
    attempt.end({ status: 200 });
    observed.end({ status: 200 }, 1);
    assert.equal(spans().length, 0);
    assert.match(attempt.trace!.traceparent!, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`));
    assert.equal(observed.ids?.traceId, TRACE);
    const inbound = observer.inbound(request({ trace: attempt.trace }));
    const app = inbound.appCall();
    app.end({ status: 200 });
    inbound.end({ status: 200 });
    assert.equal(spans().length, 0);
    assert.match(app.headers[0]!.value, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`));
  });

  it('no traceparent: a new trace, sampled by ratio (0: never, 1: always); an invalid or repeated traceparent counts as none', () => {
    const never = inMemory({ name: 'parentbased_traceidratio', ratio: 0 });
    const o = never.observer.outbound(call());
    const t = o.attempt(1, 'a:1', 'closed');
    t.end({ status: 200 });
    o.end({ status: 200 }, 1);
    assert.equal(never.spans().length, 0);
    assert.match(t.trace!.traceparent!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    assert.notEqual(t.trace!.traceparent!.slice(3, 35), TRACE);

    const always = inMemory({ name: 'parentbased_traceidratio', ratio: 1 });
    for (const headers of [[], [{ name: 'traceparent', value: 'garbage' }], [{ name: 'traceparent', value: sampledParent }, { name: 'traceparent', value: sampledParent }]]) {
      const observed = always.observer.outbound(call(headers));
      observed.end({ status: 404, code: 'UNKNOWN_SERVICE' }, 0);
    }
    const roots = always.spans();
    assert.equal(roots.length, 3);
    for (const root of roots) {
      assert.equal(root.parentSpanContext, undefined);
      assert.notEqual(root.spanContext().traceId, TRACE);
      assert.equal(root.attributes['error.type'], 'UNKNOWN_SERVICE');
      assert.equal(root.status.code, SpanStatusCode.ERROR);
    }
  });

  it('marks batch entries and deliveries, and maps unknown methods to _OTHER', () => {
    const { observer, spans } = inMemory();
    observer.outbound(call([], 'batch')).end({ status: 200 }, 1);
    observer.outbound({ ...call([], 'delivery'), method: 'PURGE' }).end({ status: 200 }, 1);
    const [batch, delivery] = spans() as [ReadableSpan, ReadableSpan];
    assert.equal(batch.attributes['mcp_mesh.call_kind'], 'batch');
    assert.equal(delivery.attributes['mcp_mesh.call_kind'], 'delivery');
    assert.equal(delivery.attributes['http.request.method'], '_OTHER');
    assert.equal(delivery.attributes['http.request.method_original'], 'PURGE');
  });
});

describe('export over OTLP/HTTP', () => {
  let receiver: OtlpReceiver;
  before(async () => { receiver = await startOtlpReceiver(); });
  after(() => receiver?.close());

  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`${protocol}: spans carry the sidecar's resource and are flushed by shutdown()`, async () => {
      const { logger, lines } = memoryLogger();
      const tracing = await createTracing({
        service: 'orders', namespace: 'shop', instance: `orders-${protocol}`, logger,
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol, OTEL_TRACES_SAMPLER: 'always_on',
          OTEL_BSP_SCHEDULE_DELAY: '600000', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
        },
      });
      assert.equal(tracing.enabled, true);
      assert.ok(lines.some((l) => l.msg === 'tracing on' && l.endpoint === `${receiver.url}/v1/traces` && l.sampler === 'always_on'));
      const observed = tracing.observer.outbound(call([{ name: 'traceparent', value: sampledParent }]));
      observed.attempt(1, '127.0.0.1:1', 'closed').end({ status: 200 });
      observed.end({ status: 200 }, 1);
      const before = receiver.requests.length;
      await tracing.shutdown(); // the schedule is 10 minutes away: only the flush on shutdown sends them
      assert.equal(receiver.requests.length, before + 1);
      const last = receiver.requests.at(-1)!;
      assert.equal(last.contentType, protocol === 'http/json' ? 'application/json' : 'application/x-protobuf');
      const exported = receiver.spans.filter((s) => s.resource['service.instance.id'] === `orders-${protocol}`);
      assert.deepEqual(exported.map((s) => s.name).sort(), ['attempt payments.default', 'egress payments.default']);
      const span = exported.find((s) => s.kind === 'INTERNAL')!;
      assert.equal(span.traceId, TRACE);
      assert.equal(span.parentSpanId, APP_SPAN);
      assert.equal(span.scope, 'mcp-mesh');
      assert.equal(span.attributes['mcp_mesh.attempts'], 1);
      assert.equal(span.resource['service.name'], 'orders');
      assert.equal(span.resource['service.namespace'], 'shop');
      assert.equal(span.resource['deployment.environment.name'], 'test');
      assert.equal(span.resource['telemetry.sdk.language'], 'nodejs');
    });
  }
});

// What the observer costs a call is measured by the bench (bench/micro.ts, group "observer"), not here.
describe('the flush at shutdown', () => {
  let receiver: OtlpReceiver;
  before(async () => { receiver = await startOtlpReceiver(); });
  after(() => receiver?.close());

  it('sends every sampled span still queued, tens of thousands of them', async () => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '600000', OTEL_BSP_MAX_QUEUE_SIZE: '100000', OTEL_TRACES_SAMPLER: 'always_on' };
    const sampled = await createTracing({ service: 'orders', namespace: 'default', instance: 'flush', logger: quiet, env });
    const calls = 10_000;
    for (let i = 0; i < calls; i++) {
      // One call as the pipeline reports it (calling side), and one as the app forwarder does (called side).
      const outbound = sampled.observer.outbound(call([{ name: 'traceparent', value: sampledParent }]));
      outbound.route('default');
      const attempt = outbound.attempt(1, '127.0.0.1:15001', 'closed');
      attempt.end({ status: 200 });
      outbound.end({ status: 200 }, 1);
      const inbound = sampled.observer.inbound(request({ trace: attempt.trace }));
      inbound.appCall().end({ status: 200 });
      inbound.end({ status: 200 });
    }
    await sampled.shutdown(); // the schedule is 10 minutes away: only the flush on shutdown sends them
    const exportedSpans = receiver.spans.filter((s) => s.resource['service.instance.id'] === 'flush').length;
    assert.ok(exportedSpans >= 4 * calls, `every sampled span was sent by the flush at shutdown (${exportedSpans})`);
  });
});
