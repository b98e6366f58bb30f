// Request metrics: a CallObserver that counts calls, their tries and retries, and their latency
// (docs/metrics.md: mcp_requests_total, mcp_latency_seconds, mcp_retries_total, mcp_attempts_total).
//
// It is on the path of every call, so it does as little as it can: the series of a (service, route,
// direction) are found once per call through two Map lookups, the series of an outcome through one
// more (by status, and by mesh code when the mesh answered); each is an object made the first time
// its label set is seen and then updated with plain arithmetic (metrics.ts: direct series). Per call
// that is one small object (the call's own observation), two performance.now() and no strings.
//
// Labels stay bounded: services are those discovery knows (a call that failed before its policy
// applied, because its service is unknown, is counted under service="unknown"), routes are policy
// route names, codes are HTTP statuses, errors are the mesh's own codes (errors/codes.ts).
import type { CounterSeries, DirectCounter, HistogramSeries, MeshMetrics } from './metrics.ts';
import type {
  AppCallObservation, AttemptObservation, CallObserver, InboundObservation, InboundStart, Outcome, OutboundObservation, OutboundStart,
} from './observer.ts';
import { QUIET_APP_CALL } from './observer.ts';

export interface CallMetricsOptions {
  /**
   * The route of an inbound call, from this sidecar's own policies for its own service (route names
   * only). Without it inbound calls have route="": the route is the calling sidecar's choice.
   */
  inboundRoute?: (start: InboundStart) => string;
}

/** The service label of calls that failed before their policy applied: the service is unknown to discovery. */
export const UNKNOWN_SERVICE = 'unknown';
/** The route label when no policy route applies here (unknown service; inbound without `inboundRoute`). */
export const NO_ROUTE = '';

export function createCallMetrics(metrics: MeshMetrics, options: CallMetricsOptions = {}): CallObserver {
  const series = new CallSeries(metrics);
  const inboundRoute = options.inboundRoute;
  return {
    outbound: (start: OutboundStart) => new OutboundCall(series, start.service),
    inbound: (start: InboundStart) => new InboundCall(series.inbound(start.service, inboundRoute ? inboundRoute(start) : NO_ROUTE)),
  };
}

// ---- observations (one per call) ----

class OutboundCall implements OutboundObservation {
  readonly #all: CallSeries;
  readonly #service: string;
  readonly #started = performance.now();
  #route: RouteSeries | undefined;

  constructor(all: CallSeries, service: string) {
    this.#all = all;
    this.#service = service;
  }

  route(route: string): void {
    this.#route = this.#all.outbound(this.#service, route);
  }

  affinity(): void {}

  attempt(): AttemptObservation {
    return (this.#route ?? this.#all.unknownService()).attempt;
  }

  end(outcome: Outcome, attempts: number): void {
    const route = this.#route ?? this.#all.unknownService();
    route.requests.of(outcome).add(1);
    route.latency.record((performance.now() - this.#started) / 1000);
    if (attempts > 1) route.retries?.add(attempts - 1);
  }
}


class InboundCall implements InboundObservation {
  readonly #route: RouteSeries;
  readonly #started = performance.now();

  constructor(route: RouteSeries) {
    this.#route = route;
  }

  /** The inbound call's own end covers the app call: from arrival to the app's answer head. */
  appCall(): AppCallObservation {
    return QUIET_APP_CALL;
  }

  end(outcome: Outcome): void {
    this.#route.requests.of(outcome).add(1);
    this.#route.latency.record((performance.now() - this.#started) / 1000);
  }
}

// ---- series, made once per label set ----

type Direction = 'outbound' | 'inbound';

/** The series of one outcome counter under fixed labels, by HTTP status and mesh error code. */
class OutcomeSeries {
  readonly #counter: DirectCounter;
  readonly #labels: Readonly<Record<string, string>>;
  /** The app answered (error=""), by status. */
  readonly #answers = new Map<number, CounterSeries>();
  /** The mesh answered, by code, then status. */
  readonly #errors = new Map<string, Map<number, CounterSeries>>();

  constructor(counter: DirectCounter, labels: Readonly<Record<string, string>>) {
    this.#counter = counter;
    this.#labels = labels;
  }

  of(outcome: Outcome): CounterSeries {
    const code = outcome.code;
    let byStatus = this.#answers;
    if (code !== undefined && code !== '') {
      const found = this.#errors.get(code);
      if (found) byStatus = found;
      else this.#errors.set(code, byStatus = new Map());
    }
    let series = byStatus.get(outcome.status);
    if (!series) byStatus.set(outcome.status, series = this.#counter.series({ ...this.#labels, code: String(outcome.status), error: code ?? '' }));
    return series;
  }
}

/** Everything recorded for calls on one (service, route, direction). */
class RouteSeries {
  readonly requests: OutcomeSeries;
  readonly latency: HistogramSeries;
  /** Outbound only: tries beyond the first. */
  readonly retries: CounterSeries | undefined;
  /** Outbound only: handed to every try of every call on this route (tries keep no state of their own). */
  readonly attempt: AttemptObservation;

  constructor(metrics: MeshMetrics, service: string, route: string, direction: Direction) {
    this.requests = new OutcomeSeries(metrics.requests, { service, route, direction });
    this.latency = metrics.latency.series({ service, route, direction });
    if (direction === 'outbound') {
      this.retries = metrics.retries.series({ service, route }); // shown from the first call, 0 until a retry
      const attempts = new OutcomeSeries(metrics.attempts, { service, route });
      this.attempt = { trace: undefined, end: (outcome) => attempts.of(outcome).add(1) };
    } else {
      this.attempt = { trace: undefined, end() {} };
    }
  }
}

class CallSeries {
  readonly #metrics: MeshMetrics;
  readonly #outbound = new Map<string, Map<string, RouteSeries>>();
  readonly #inbound = new Map<string, Map<string, RouteSeries>>();
  #unknown: RouteSeries | undefined;

  constructor(metrics: MeshMetrics) {
    this.#metrics = metrics;
  }

  outbound(service: string, route: string): RouteSeries {
    return this.#find(this.#outbound, service, route, 'outbound');
  }

  inbound(service: string, route: string): RouteSeries {
    return this.#find(this.#inbound, service, route, 'inbound');
  }

  unknownService(): RouteSeries {
    return this.#unknown ??= new RouteSeries(this.#metrics, UNKNOWN_SERVICE, NO_ROUTE, 'outbound');
  }

  #find(all: Map<string, Map<string, RouteSeries>>, service: string, route: string, direction: Direction): RouteSeries {
    let routes = all.get(service);
    if (!routes) all.set(service, routes = new Map());
    let series = routes.get(route);
    if (!series) routes.set(route, series = new RouteSeries(this.#metrics, service, route, direction));
    return series;
  }
}
