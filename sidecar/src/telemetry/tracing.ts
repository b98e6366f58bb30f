// Tracing with OpenTelemetry: spans for every call through this sidecar (tracing-observer.ts says
// which), sampled parent-based (1 % of new traces by default), batched and exported over OTLP/HTTP.
// Configured by the standard OTEL_* environment variables (tracing-config.ts); off unless an OTLP
// endpoint is configured, and then the observer is NO_OBSERVER: the data path pays nothing, and the
// SDK and its exporters (tracing-sdk.ts) are not even imported.
// docs/tracing.md describes the spans, their attributes and the settings.
import type { Logger } from 'pino';
import { NO_OBSERVER, type CallObserver } from './observer.ts';
import { tracingConfig } from './tracing-config.ts';

export interface Tracing {
  observer: CallObserver;
  /** Whether spans are recorded and exported. */
  enabled: boolean;
  shutdown(): Promise<void>;
}

export async function createTracing(options: { service: string; namespace: string; instance: string; env: NodeJS.ProcessEnv; logger: Logger }): Promise<Tracing> {
  const { logger } = options;
  const config = tracingConfig(options.env);
  for (const warning of config.warnings) logger.warn({ component: 'tracing' }, warning);
  if (!config.enabled) {
    logger.debug({ reason: config.reason }, 'tracing off');
    return { observer: NO_OBSERVER, enabled: false, shutdown: async () => {} };
  }
  const { startTracing } = await import('./tracing-sdk.ts');
  return startTracing(options, config);
}
