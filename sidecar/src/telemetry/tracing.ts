// Tracing with OpenTelemetry (to be built): a CallObserver that records spans.
import type { Logger } from 'pino';
import { NO_OBSERVER, type CallObserver } from './observer.ts';

export interface Tracing {
  observer: CallObserver;
  /** Whether spans are recorded and exported. */
  enabled: boolean;
  shutdown(): Promise<void>;
}

export function createTracing(_options: { service: string; namespace: string; instance: string; env: NodeJS.ProcessEnv; logger: Logger }): Tracing {
  return { observer: NO_OBSERVER, enabled: false, shutdown: async () => {} };
}
