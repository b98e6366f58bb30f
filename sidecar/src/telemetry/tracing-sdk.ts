// The OpenTelemetry SDK side of tracing, loaded by tracing.ts only when tracing is on: the tracer
// provider, its sampler, the batch processor and the OTLP exporter (http/protobuf or http/json).
import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
// A type only (the exporters' own dependency): its enum's values are the strings 'gzip' and 'none'.
import type { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type Sampler,
} from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import { describeSampler, type SamplerConfig, type TracingOn } from './tracing-config.ts';
import { createTracingObserver } from './tracing-observer.ts';
import type { Tracing } from './tracing.ts';

/** The instrumentation scope of the sidecar's spans. */
export const TRACER_NAME = 'mcp-mesh';

/** How long shutdown waits for the last spans to reach the collector before it gives up on them. */
const SHUTDOWN_FLUSH_MS = 5000;

export function startTracing(options: { service: string; namespace: string; instance: string; logger: Logger }, config: TracingOn): Tracing {
  const { logger } = options;
  // The SDK reports export failures through the OpenTelemetry diagnostics logger: into this log, at warn.
  diag.setLogger(diagnostics(logger), { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  const exporterOptions = {
    url: config.url, headers: config.headers, timeoutMillis: config.timeoutMillis, compression: config.compression as CompressionAlgorithm | undefined,
    // A flush (at shutdown) sends the whole queue at once, one request per batch: allow that many.
    concurrencyLimit: Math.ceil(config.batch.maxQueueSize / config.batch.maxExportBatchSize) + 1,
  };
  const exporter = config.protocol === 'http/json' ? new OtlpJsonExporter(exporterOptions) : new OtlpProtoExporter(exporterOptions);
  const provider = new TracerProvider({
    resource: resource(options, config),
    sampler: sampler(config.sampler),
    spanProcessors: [new BatchSpanProcessor({ exporter, ...config.batch })],
  });
  logger.info({ endpoint: withoutCredentials(config.url), protocol: config.protocol, sampler: describeSampler(config.sampler) }, 'tracing on');

  let stopping: Promise<void> | undefined;
  return {
    observer: createTracingObserver(provider.getTracer(TRACER_NAME)),
    enabled: true,
    // Flushes the spans still queued, then stops the exporter; bounded, so a collector that is down
    // cannot hold the sidecar's shutdown.
    shutdown: () => stopping ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), SHUTDOWN_FLUSH_MS); });
      try {
        const result = await Promise.race([provider.shutdown().then(() => 'done' as const), gaveUp]);
        if (result === 'timeout') logger.warn({ waitedMs: SHUTDOWN_FLUSH_MS }, 'tracing: the last spans were not exported before shutdown');
      } catch (err) {
        logger.warn({ err: String(err) }, 'tracing: exporting the last spans failed');
      } finally {
        clearTimeout(timer);
      }
    })(),
  };
}

/**
 * The sidecar's identity (service.name = its service, service.namespace, service.instance.id) over the
 * SDK's defaults (telemetry.sdk.*); OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over both.
 */
function resource(identity: { service: string; namespace: string; instance: string }, config: TracingOn) {
  return defaultResource()
    .merge(resourceFromAttributes({ 'service.name': identity.service, 'service.namespace': identity.namespace, 'service.instance.id': identity.instance }))
    .merge(resourceFromAttributes(config.resource));
}

export function sampler(config: SamplerConfig): Sampler {
  switch (config.name) {
    case 'always_on': return new AlwaysOnSampler();
    case 'always_off': return new AlwaysOffSampler();
    case 'traceidratio': return new TraceIdRatioBasedSampler(config.ratio);
    case 'parentbased_always_on': return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off': return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio': return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.ratio) });
  }
}

/**
 * The SDK's diagnostics into the sidecar's log, at warn at most (a collector that is down is not the
 * sidecar's failure). Export failures arrive as a JSON-encoded error (the
 * SDK's global error handler): logged as its message and its code (`exportCode`: the exporter's, not
 * one of the mesh's `code`s), without the stack.
 */
function diagnostics(logger: Logger): DiagLogger {
  const write = (level: 'error' | 'warn' | 'info' | 'debug') => (message: string, ...args: unknown[]) => {
    let text = message;
    let code: unknown;
    if (message.startsWith('{')) {
      try {
        const error = JSON.parse(message) as { message?: unknown; code?: unknown };
        if (typeof error.message === 'string') {
          text = error.message;
          code = error.code;
        }
      } catch { /* not JSON after all: log it as it is */ }
    }
    logger[level]({ component: 'opentelemetry', ...(code !== undefined ? { exportCode: code } : {}), ...(args.length > 0 ? { details: args.map(String) } : {}) }, `tracing: ${text}`);
  };
  return { error: write('warn'), warn: write('warn'), info: write('info'), debug: write('debug'), verbose: write('debug') };
}

/** The endpoint for the log, without a user:password it may carry. */
function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  if (parsed.username === '' && parsed.password === '') return url;
  parsed.username = '';
  parsed.password = '';
  return parsed.toString();
}
