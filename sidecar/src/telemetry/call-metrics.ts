// Request metrics (to be built): a CallObserver that counts calls and their latency.
import type { MeshMetrics } from './metrics.ts';
import { NO_OBSERVER, type CallObserver } from './observer.ts';

export function createCallMetrics(_metrics: MeshMetrics): CallObserver {
  return NO_OBSERVER;
}
