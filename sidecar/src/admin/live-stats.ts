// Live request rates and latency percentiles per service for the status page (to be built).
import { NO_OBSERVER, type CallObserver } from '../telemetry/observer.ts';

export interface LiveStats {
  observer: CallObserver;
  snapshot(): unknown;
}

export function createLiveStats(): LiveStats {
  return { observer: NO_OBSERVER, snapshot: () => ({}) };
}
