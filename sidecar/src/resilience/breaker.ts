// Circuit breakers on opossum, one per service and one per endpoint of a service, built from the
// service's CircuitBreakerPolicy. What counts as a failure is ours to decide, not opossum's:
//   - an answer the caller marks as a failure (a listed 5xx) is counted, yet handed back unchanged;
//   - mesh errors meaning "the service did not answer" count (connection, reset, timeout);
//   - everything else (4xx, the caller going away, local faults) is not a failure: opossum records it
//     as a success (so it lowers the failure share a little), except on the half-open probe, where
//     any outcome but an answer is taken as the probe failing.
// Opossum's own timeout is off (deadlines are the pipeline's job) and its rolling window is rotated
// by us from the clock instead of by two intervals per breaker.
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { ErrorCode } from '../errors/codes.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { settingsKey } from '../policy/settings-key.ts';
import type { CircuitBreakerPolicy } from '../policy/types.ts';
import { BucketClock } from './window.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';
export type BreakerScope = 'service' | 'endpoint';

/** A call refused at once because its breaker is open (503 CIRCUIT_OPEN). */
export class CircuitOpenError extends MeshError {
  /** 'endpoint': only one endpoint's breaker refused, so another endpoint may take the call. */
  readonly scope: BreakerScope;
  readonly address: string | undefined;

  constructor(service: string, address?: string) {
    super('CIRCUIT_OPEN', address === undefined
      ? `the circuit breaker of ${service} is open`
      : `the circuit breaker of ${service} endpoint ${address} is open`, { service });
    this.scope = address === undefined ? 'service' : 'endpoint';
    this.address = address;
  }
}

/** Mesh errors that say the service (or endpoint) failed to answer: they count against the breaker. */
const FAILURE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'PEER_UNAVAILABLE', 'NO_HEALTHY_ENDPOINT', 'LINK_BROKEN', 'APP_UNAVAILABLE', 'APP_RESET',
  'DEADLINE_EXCEEDED', 'PROTOCOL_ERROR',
  // An endpoint that is not (or no longer) a sidecar of the service: failing for it, as Linkerd treats it.
  'PEER_IDENTITY_MISMATCH', 'MISDIRECTED',
]);

export function isBreakerFailure(err: unknown): boolean {
  return err instanceof MeshError && FAILURE_CODES.has(err.code);
}

/**
 * An `isFailure` for answers with a status: counts exactly the statuses the policy lists (the policy
 * engine fills in every 5xx by default), so a 404 or 401 never opens a breaker unless listed.
 */
export function failureStatuses(policy: CircuitBreakerPolicy): (result: { status: number }) => boolean {
  // Built once per (frozen) policy object: the pipeline asks for it on every try.
  let isFailure = failureTests.get(policy);
  if (!isFailure) {
    const listed = new Set(policy.failureStatuses);
    isFailure = (result) => listed.has(result.status);
    failureTests.set(policy, isFailure);
  }
  return isFailure;
}

const failureTests = new WeakMap<CircuitBreakerPolicy, (result: { status: number }) => boolean>();

/** Carries an answer the caller called a failure through opossum's rejection path, and back out. */
class FailedAnswer {
  readonly result: unknown;
  constructor(result: unknown) {
    this.result = result;
  }
}

const BUCKETS = 10;

/**
 * How a breaker judges a try's outcome beyond its own rules. Built once (per policy) and handed to
 * every try, so that a try through a breaker makes no functions of its own.
 */
export interface TryCounting<A, T> {
  /** A resolved result that counts as a failure, yet is handed back unchanged (a listed 5xx). */
  isFailure(result: T): boolean;
  /** A rejection that says nothing about the service, given the try's argument (the caller cut it short). */
  notCounted(err: unknown, arg: A): boolean;
}

/** The one action of every circuit: run the try on its argument. */
type Action = (attempt: (arg: unknown) => Promise<unknown>, arg: unknown, counting: TryCounting<unknown, unknown>) => Promise<unknown>;

/** The settle callbacks of one counting on one breaker (they slide its window and spot failed answers). */
interface Settlers {
  onResult: (result: unknown) => unknown;
  onError: (err: unknown) => never;
}

const NOTHING_FAILS: (result: unknown) => boolean = () => false;
const NEVER_EXEMPT = (): boolean => false;
/** The countings of `run`'s plain `isFailure` tests, made once per test function. */
const plainCountings = new WeakMap<(result: never) => boolean, TryCounting<unknown, unknown>>();
const callThunk = (attempt: (arg: unknown) => Promise<unknown>): Promise<unknown> => (attempt as () => Promise<unknown>)();

export interface BreakerStats {
  service: string;
  /** Set for an endpoint's breaker. */
  address?: string;
  state: BreakerState;
  /** In the rolling window (cleared when the breaker closes again). */
  calls: number;
  failures: number;
  rejected: number;
}

/** One breaker. A disabled policy makes it a pass-through that is always closed. */
export class Breaker {
  readonly service: string;
  readonly address: string | undefined;
  readonly policy: CircuitBreakerPolicy;
  readonly #circuit: CircuitBreaker<Parameters<Action>, unknown> | undefined;
  readonly #settlers = new WeakMap<TryCounting<unknown, unknown>, Settlers>();
  readonly #rotator = new EventEmitter();
  readonly #now: () => number;
  readonly #buckets: BucketClock;

  constructor(service: string, address: string | undefined, policy: CircuitBreakerPolicy, options: BreakerOptions = {}) {
    this.service = service;
    this.address = address;
    this.policy = policy;
    this.#now = options.now ?? Date.now;
    this.#buckets = new BucketClock(policy.rollingWindowMs / BUCKETS, this.#now());
    if (!policy.enabled) return;

    const run: Action = (attempt, arg, counting) => {
      const settle = this.#settlersOf(counting);
      return attempt(arg).then(settle.onResult, settle.onError);
    };
    const circuit: CircuitBreaker<Parameters<Action>, unknown> = new CircuitBreaker(run, {
      name: address === undefined ? service : `${service}@${address}`,
      timeout: false,
      errorThresholdPercentage: policy.errorThresholdPercentage,
      volumeThreshold: policy.volumeThreshold,
      rollingCountTimeout: policy.rollingWindowMs,
      rollingCountBuckets: BUCKETS,
      resetTimeout: policy.resetTimeoutMs,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      rotateBucketController: this.#rotator,
      // true = "not a failure". Opossum then records a success, which on the half-open probe would
      // close the breaker; so on the probe only a real answer (resolved, or a 4xx) counts as success.
      // (Opossum hands the filter the action's arguments after the error.)
      errorFilter: ((err: unknown, _attempt: unknown, arg: unknown, counting: TryCounting<unknown, unknown>): boolean =>
        !(err instanceof FailedAnswer) && (counting.notCounted(err, arg) || !isBreakerFailure(err)) && !circuit.halfOpen) as (err: unknown) => boolean,
    });
    // A breaker that closes again starts from a clean window: the failures that opened it, and the
    // calls refused while open (opossum counts them as fires), say nothing about the recovered service.
    circuit.on('close', () => this.#rotate(BUCKETS));
    const notify = options.onStateChange;
    if (notify) {
      circuit.on('open', () => notify(this, 'open'));
      circuit.on('halfOpen', () => notify(this, 'half-open'));
      circuit.on('close', () => notify(this, 'closed'));
    }
    this.#circuit = circuit;
  }

  get state(): BreakerState {
    const circuit = this.#circuit;
    if (!circuit || circuit.closed) return 'closed';
    return circuit.halfOpen ? 'half-open' : 'open';
  }

  /** Close the breaker now (its window starts clean), e.g. when the peer is known to be back. */
  reset(): void {
    if (this.#circuit && !this.#circuit.closed) this.#circuit.close();
  }

  /** A call now would be refused at once: open, or half-open with its one probe already out. */
  get refusing(): boolean {
    const circuit = this.#circuit;
    return circuit !== undefined && !circuit.closed && !circuit.pendingClose;
  }

  /**
   * Run one attempt under the breaker. Rejects with CircuitOpenError at once while open. A resolved
   * result for which `isFailure` is true counts as a failure but is still returned.
   */
  run<T>(attempt: () => Promise<T>, isFailure: (result: T) => boolean = NOTHING_FAILS): Promise<T> {
    let counting = plainCountings.get(isFailure);
    if (!counting) plainCountings.set(isFailure, counting = { isFailure: isFailure as (result: unknown) => boolean, notCounted: NEVER_EXEMPT });
    return this.runWith(callThunk, attempt, counting) as Promise<T>;
  }

  /**
   * `run` for the call path: `attempt(arg)` under the breaker, judged by `counting` (made once per
   * policy), so that the try itself makes no closures beyond opossum's own.
   */
  runWith<A, T>(attempt: (arg: A) => Promise<T>, arg: A, counting: TryCounting<A, T>): Promise<T> {
    const circuit = this.#circuit;
    if (!circuit || circuit.isShutdown) return attempt(arg);
    this.#slide();
    return circuit.fire(attempt as (arg: unknown) => Promise<unknown>, arg, counting as TryCounting<unknown, unknown>).catch(this.#unwrap) as Promise<T>;
  }

  /** What a try's rejection becomes: a failed answer is the answer again; opossum's refusal is ours. */
  readonly #unwrap = (err: unknown): unknown => {
    if (err instanceof FailedAnswer) return err.result;
    if (err instanceof Error && CircuitBreaker.isOurError(err)) throw new CircuitOpenError(this.service, this.address);
    throw err;
  };

  #settlersOf(counting: TryCounting<unknown, unknown>): Settlers {
    let settle = this.#settlers.get(counting);
    if (!settle) {
      settle = {
        onResult: (result) => {
          this.#slide(); // a long call may end in a later bucket than it started
          if (counting.isFailure(result)) throw new FailedAnswer(result);
          return result;
        },
        onError: (err) => {
          this.#slide();
          throw err;
        },
      };
      this.#settlers.set(counting, settle);
    }
    return settle;
  }

  stats(): BreakerStats {
    const s = this.#circuit?.stats;
    return { service: this.service, ...(this.address === undefined ? {} : { address: this.address }), state: this.state, calls: s?.fires ?? 0, failures: s?.failures ?? 0, rejected: s?.rejects ?? 0 };
  }

  shutdown(): void {
    this.#circuit?.shutdown();
  }

  /** Rotate the rolling window by however many buckets the clock has moved past. */
  #slide(): void {
    this.#rotate(Math.min(this.#buckets.advance(this.#now()), BUCKETS));
  }

  #rotate(buckets: number): void {
    for (let i = 0; i < buckets; i++) this.#rotator.emit('rotate');
  }
}

export interface BreakerOptions {
  /** Clock for the rolling window (opossum's reset timer uses the global setTimeout). */
  now?: () => number;
  /** Told every transition, for logs and metrics. */
  onStateChange?: (breaker: Breaker, state: BreakerState) => void;
}

/**
 * Every breaker of the sidecar: one per service and one per endpoint of a service, created on first
 * use and rebuilt when the policy they were built from changes (a policy object with equal values
 * keeps the breaker, so a reload that changes nothing here keeps its state).
 */
export class BreakerRegistry {
  // settings key → service → the service's breakers. Nested maps, so that finding a call's breakers
  // (two or three times per try) hashes strings that already exist instead of building a key per call.
  readonly #breakers = new Map<string, Map<string, ServiceBreakers>>();
  readonly #options: BreakerOptions;

  constructor(options: BreakerOptions = {}) {
    this.#options = options;
  }

  /** The service-wide breaker: trips when the service as a whole fails. */
  service(service: string, policy: CircuitBreakerPolicy): Breaker {
    const group = this.#group(service, policy);
    return group.service ??= new Breaker(service, undefined, policy, this.#options);
  }

  /** One endpoint's breaker: trips on that replica alone, so the balancer can route around it. */
  endpoint(service: string, address: string, policy: CircuitBreakerPolicy): Breaker {
    const group = this.#group(service, policy);
    let breaker = group.endpoints.get(address);
    if (!breaker) group.endpoints.set(address, breaker = new Breaker(service, address, policy, this.#options));
    return breaker;
  }

  /** True when a call under `policy` would be refused now (open, or half-open with its probe out). */
  isOpen(service: string, address: string | undefined, policy: CircuitBreakerPolicy): boolean {
    return this.#find(service, address, policy)?.refusing ?? false;
  }

  state(service: string, address: string | undefined, policy: CircuitBreakerPolicy): BreakerState | undefined {
    return this.#find(service, address, policy)?.state;
  }

  snapshot(): BreakerStats[] {
    return [...this.#all()].map((b) => b.stats());
  }

  /**
   * The link to `address` came back (a fresh HELLO proves the peer is up): its endpoint breakers, and
   * the service breakers of `services` it serves, close instead of waiting out their reset timeout.
   * Failures that opened them were the outage itself; if the app is still failing they trip again.
   */
  peerRecovered(address: string, services: Iterable<string>): void {
    const recovered = new Set(services);
    for (const breaker of this.#all()) {
      if (breaker.address === address || (breaker.address === undefined && recovered.has(breaker.service))) breaker.reset();
    }
  }

  /** Drop the endpoint breakers of addresses no longer in discovery. */
  retain(liveAddresses: ReadonlySet<string>): void {
    for (const services of this.#breakers.values()) {
      for (const group of services.values()) {
        for (const [address, breaker] of group.endpoints) {
          if (liveAddresses.has(address)) continue;
          breaker.shutdown();
          group.endpoints.delete(address);
        }
      }
    }
  }

  close(): void {
    for (const breaker of this.#all()) breaker.shutdown();
    this.#breakers.clear();
  }

  // Keyed by the settings too: a route with breaker settings of its own gets breakers of its own,
  // instead of rebuilding (and so resetting) the service's shared ones each time calls alternate.
  #group(service: string, policy: CircuitBreakerPolicy): ServiceBreakers {
    const key = settingsKey(policy);
    let services = this.#breakers.get(key);
    if (!services) this.#breakers.set(key, services = new Map());
    let group = services.get(service);
    if (!group) services.set(service, group = { service: undefined, endpoints: new Map() });
    return group;
  }

  #find(service: string, address: string | undefined, policy: CircuitBreakerPolicy): Breaker | undefined {
    const group = this.#breakers.get(settingsKey(policy))?.get(service);
    return address === undefined ? group?.service : group?.endpoints.get(address);
  }

  *#all(): IterableIterator<Breaker> {
    for (const services of this.#breakers.values()) {
      for (const group of services.values()) {
        if (group.service) yield group.service;
        yield* group.endpoints.values();
      }
    }
  }
}

/** The breakers of one service under one group of settings. */
interface ServiceBreakers {
  service: Breaker | undefined;
  endpoints: Map<string, Breaker>;
}
