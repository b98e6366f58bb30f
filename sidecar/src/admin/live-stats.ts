// Live request rates, error rates and latency percentiles for the status page (GET / and
// /status.json on the admin listener). A CallObserver, combined in main.ts with tracing, metrics
// and request logs; it keeps, per series, the last 10 seconds in one-second slots:
//
//   outbound: per called service ("name.namespace"), and per endpoint of it (one series per try);
//   inbound:  per calling service (the envelope's `source`).
//
// Each slot holds counts (calls, errors, retries, status classes) and a log-scale latency histogram
// (bins 10 % wide, so a percentile is within ±5 %), in rolling counters (`resilience/window.ts`).
// A snapshot sums the slots of the last 10 s: the rates are sliding (the oldest slot counts for the share of it still inside the window), the
// percentiles come from the summed histogram. Memory is fixed per series (about 13 KB) and the number
// of series is capped (MAX_SERIES; keys past it share one "(other)" series; idle series are dropped),
// so names a client makes up cannot grow it. The hot path is a clock read, a map lookup and a few
// typed-array increments per call and per try: no allocation beyond the observation objects.
import type {
  AppCallObservation, AttemptObservation, CallObserver, InboundObservation, InboundStart, OutboundObservation, OutboundStart, Outcome,
} from '../telemetry/observer.ts';
import { RollingCounters } from '../resilience/window.ts';

/** Seconds the rates and percentiles cover. */
export const WINDOW_SECONDS = 10;
const SLOTS = WINDOW_SECONDS + 1; // the window, plus the slot filling now
const SLOT_MS = 1000;

/** Latency bins: bin 0 is below MIN_MS; bin i ≥ 1 covers [MIN_MS·R^(i−1), MIN_MS·R^i); the last is open-ended. */
const MIN_MS = 0.01;
const R = 1.1;
const LN_R = Math.log(R);
const BINS = 2 + Math.ceil(Math.log(600_000 / MIN_MS) / LN_R); // up to 10 minutes, then one open bin
const CLASSES = 5; // 1xx … 5xx

/** Most series kept at once (all kinds together): about 13 KB each. */
export const MAX_SERIES = 512;
/** A series with no call for this long is dropped at the next snapshot. */
export const IDLE_MS = 5 * 60_000;
/** The key of inbound calls whose envelope named no source. */
export const UNKNOWN_SOURCE = '(unknown)';
/** The key the series past MAX_SERIES share. */
export const OTHER = '(other)';

export interface LatencyPercentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface StatusClasses {
  '1xx': number;
  '2xx': number;
  '3xx': number;
  '4xx': number;
  '5xx': number;
}

/** One series over the last WINDOW_SECONDS. */
export interface WindowStats {
  /** Calls ended per second. */
  requestsPerSecond: number;
  /** Calls ended in error per second (a 5xx, or an answer the mesh made: mcp-mesh-error). */
  errorsPerSecond: number;
  /** errors ÷ calls in the window, 0…1; null when there were no calls. */
  errorRate: number | null;
  /** Of the calls that ended in the window; null when there were none. */
  latencyMs: LatencyPercentiles | null;
  /** Calls that ended in the window, by the class of their status. */
  statusClasses: StatusClasses;
  /** Calls ended in each of the last WINDOW_SECONDS whole seconds, oldest first (the second under way is not in it). */
  perSecond: number[];
  /** Started and not yet ended, now. */
  inFlight: number;
  /** Since the sidecar started (or since the series was made again after being idle). */
  total: { requests: number; errors: number };
}

export interface OutboundServiceStats extends WindowStats {
  service: string;
  /** Tries beyond the first, per second. */
  retriesPerSecond: number;
  /** Per endpoint of the service: its tries. */
  endpoints: (WindowStats & { address: string })[];
}

export interface InboundSourceStats extends WindowStats {
  /** The calling service, "name.namespace". */
  source: string;
}

export interface LiveSnapshot {
  windowSeconds: number;
  outbound: OutboundServiceStats[];
  inbound: InboundSourceStats[];
}

export interface LiveStats {
  observer: CallObserver;
  snapshot(): LiveSnapshot;
}

export interface LiveStatsOptions {
  /** Milliseconds, monotonic; performance.now by default (injectable for tests). */
  now?: () => number;
}

/** A call counts as an error when it ended in a 5xx, or the mesh made its answer (a mesh error code). */
export function isError(outcome: Outcome): boolean {
  return outcome.status >= 500 || outcome.code !== undefined;
}

/** The latency bin of `ms`. */
export function binOf(ms: number): number {
  if (!(ms >= MIN_MS)) return 0; // NaN and negatives too
  const bin = 1 + Math.floor(Math.log(ms / MIN_MS) / LN_R);
  return bin < BINS ? bin : BINS - 1;
}

/** The value a bin stands for: the geometric middle of its bounds. */
function valueOf(bin: number): number {
  return bin === 0 ? MIN_MS / 2 : MIN_MS * R ** (bin - 0.5);
}

// Lanes of a slot's counts: calls, errors, retries, one per status class, then the latency histogram.
const CALLS = 0;
const ERRORS = 1;
const RETRIES = 2;
const CLASS_0 = 3;
const BIN_0 = CLASS_0 + CLASSES;
// Lanes of a slot's latency extremes.
const MAX = 0;
const MIN = 1;

/** Counts of one series, in one-second slots (counted from time 0, so every series shares them). */
class Series {
  readonly #counts = new RollingCounters({ buckets: SLOTS, bucketMs: SLOT_MS, origin: 0, lanes: BIN_0 + BINS, counts: Uint32Array });
  readonly #extremes = new RollingCounters({ buckets: SLOTS, bucketMs: SLOT_MS, origin: 0, lanes: 2, fresh: [0, Infinity] });
  readonly createdAt: number;
  lastAt: number;
  inFlight = 0;
  requests = 0;
  errors = 0;
  /** Per endpoint (outbound services only). */
  readonly endpoints: Map<string, Series> | undefined;

  constructor(now: number, withEndpoints: boolean) {
    this.createdAt = now;
    this.lastAt = now;
    this.endpoints = withEndpoints ? new Map() : undefined;
  }

  start(now: number): void {
    this.inFlight++;
    this.lastAt = now;
  }

  end(now: number, latencyMs: number, outcome: Outcome, retries: number): void {
    this.inFlight--;
    this.lastAt = now;
    const counts = this.#counts.current(now);
    counts[CALLS]!++;
    this.requests++;
    if (isError(outcome)) {
      counts[ERRORS]!++;
      this.errors++;
    }
    if (retries > 0) counts[RETRIES]! += retries;
    const statusClass = Math.floor(outcome.status / 100);
    counts[CLASS_0 + (statusClass >= 1 && statusClass <= 5 ? statusClass - 1 : 4)]!++;
    counts[BIN_0 + binOf(latencyMs)]!++;
    const extremes = this.#extremes.current(now);
    if (latencyMs > extremes[MAX]!) extremes[MAX] = latencyMs;
    if (latencyMs < extremes[MIN]!) extremes[MIN] = latencyMs;
  }

  stats(now: number): WindowStats & { retriesPerSecond: number } {
    const second = Math.floor(now / SLOT_MS);
    // The oldest slot is partly outside the window: it counts for the share still inside.
    const oldestShare = 1 - (now - second * SLOT_MS) / SLOT_MS;
    let calls = 0;
    let errors = 0;
    let retries = 0;
    let inWindow = 0; // calls whose latency is in the histogram
    let max = 0;
    let min = Infinity;
    const classes = [0, 0, 0, 0, 0];
    const perSecond: number[] = new Array(WINDOW_SECONDS).fill(0);
    const histogram = new Uint32Array(BINS);
    for (let back = 0; back < SLOTS; back++) {
      const counts = this.#counts.bucket(back, now);
      if (!counts) continue;
      const slotCalls = counts[CALLS]!;
      if (back > 0) perSecond[WINDOW_SECONDS - back] = slotCalls;
      const share = back === SLOTS - 1 ? oldestShare : 1;
      calls += slotCalls * share;
      errors += counts[ERRORS]! * share;
      retries += counts[RETRIES]! * share;
      for (let c = 0; c < CLASSES; c++) classes[c]! += counts[CLASS_0 + c]! * share;
      if (slotCalls > 0) {
        inWindow += slotCalls;
        for (let b = 0; b < BINS; b++) histogram[b]! += counts[BIN_0 + b]!;
        const extremes = this.#extremes.bucket(back, now)!;
        if (extremes[MAX]! > max) max = extremes[MAX]!;
        if (extremes[MIN]! < min) min = extremes[MIN]!;
      }
    }
    // A series younger than the window is rated over its own age (at least a second).
    const seconds = Math.min(WINDOW_SECONDS, Math.max(1, (now - this.createdAt) / 1000));
    return {
      requestsPerSecond: round(calls / seconds, 2),
      errorsPerSecond: round(errors / seconds, 2),
      errorRate: calls > 0 ? round(errors / calls, 4) : null,
      latencyMs: inWindow > 0 ? percentiles(histogram, inWindow, min, max) : null,
      statusClasses: { '1xx': Math.round(classes[0]!), '2xx': Math.round(classes[1]!), '3xx': Math.round(classes[2]!), '4xx': Math.round(classes[3]!), '5xx': Math.round(classes[4]!) },
      perSecond,
      inFlight: this.inFlight,
      total: { requests: this.requests, errors: this.errors },
      retriesPerSecond: round(retries / seconds, 2),
    };
  }
}

function percentiles(histogram: Uint32Array, count: number, min: number, max: number): LatencyPercentiles {
  const at = (q: number): number => {
    const rank = Math.max(1, Math.ceil(q * count));
    let seen = 0;
    for (let b = 0; b < BINS; b++) {
      seen += histogram[b]!;
      if (seen >= rank) return round(Math.min(max, Math.max(min, valueOf(b))), 3);
    }
    return round(max, 3);
  };
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: round(max, 3) };
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

const NO_HEADERS: readonly [] = [];

export function createLiveStats(options: LiveStatsOptions = {}): LiveStats {
  const now = options.now ?? performance.now.bind(performance);
  const outbound = new Map<string, Series>();
  const inbound = new Map<string, Series>();
  let count = 0;

  /** The series of `key` in `map`, made if there is room (else the shared OTHER one). */
  const seriesOf = (map: Map<string, Series>, key: string, at: number, withEndpoints: boolean): Series => {
    let series = map.get(key);
    if (series) return series;
    if (count >= MAX_SERIES) {
      series = map.get(OTHER);
      if (series) return series;
      key = OTHER; // one more series past the cap per map, at most
    }
    series = new Series(at, withEndpoints);
    map.set(key, series);
    count++;
    return series;
  };

  class Attempt implements AttemptObservation {
    readonly trace = undefined;
    readonly #series: Series;
    readonly #started: number;
    constructor(series: Series, started: number) {
      this.#series = series;
      this.#started = started;
    }
    end(outcome: Outcome): void {
      const at = now();
      this.#series.end(at, at - this.#started, outcome, 0);
    }
  }

  class Outbound implements OutboundObservation {
    readonly #series: Series;
    readonly #started: number;
    constructor(start: OutboundStart) {
      this.#started = now();
      this.#series = seriesOf(outbound, start.service, this.#started, true);
      this.#series.start(this.#started);
    }
    route(): void {}
    affinity(): void {}
    attempt(_attempt: number, endpoint: string): AttemptObservation {
      const at = now();
      const series = seriesOf(this.#series.endpoints!, endpoint, at, false);
      series.start(at);
      return new Attempt(series, at);
    }
    end(outcome: Outcome, attempts: number): void {
      const at = now();
      this.#series.end(at, at - this.#started, outcome, attempts > 1 ? attempts - 1 : 0);
    }
  }

  const appCall: AppCallObservation = { headers: NO_HEADERS, end() {} };

  class Inbound implements InboundObservation {
    readonly #series: Series;
    readonly #started: number;
    constructor(start: InboundStart) {
      this.#started = now();
      this.#series = seriesOf(inbound, start.source || UNKNOWN_SOURCE, this.#started, false);
      this.#series.start(this.#started);
    }
    appCall(): AppCallObservation {
      return appCall;
    }
    end(outcome: Outcome): void {
      const at = now();
      this.#series.end(at, at - this.#started, outcome, 0);
    }
  }

  /** Drop series idle for IDLE_MS with nothing in flight. */
  const sweep = (map: Map<string, Series>, at: number): void => {
    for (const [key, series] of map) {
      if (series.endpoints) sweep(series.endpoints, at);
      if (series.inFlight > 0 || at - series.lastAt < IDLE_MS || (series.endpoints && series.endpoints.size > 0)) continue;
      map.delete(key);
      count--;
    }
  };

  const byName = (a: [string, Series], b: [string, Series]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

  return {
    observer: {
      outbound: (start) => new Outbound(start),
      inbound: (start) => new Inbound(start),
    },
    snapshot(): LiveSnapshot {
      const at = now();
      sweep(outbound, at);
      sweep(inbound, at);
      return {
        windowSeconds: WINDOW_SECONDS,
        outbound: [...outbound].sort(byName).map(([service, series]) => ({
          service,
          ...series.stats(at),
          endpoints: [...series.endpoints!].sort(byName).map(([address, s]) => {
            const { retriesPerSecond: _, ...stats } = s.stats(at);
            return { address, ...stats };
          }),
        })),
        inbound: [...inbound].sort(byName).map(([source, series]) => {
          const { retriesPerSecond: _, ...stats } = series.stats(at);
          return { source, ...stats };
        }),
      };
    },
  };
}
