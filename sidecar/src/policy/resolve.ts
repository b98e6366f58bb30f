// From valid policy documents to the effective policy of every call, in three layers, each one
// overriding the one before field by field:
//
//   built-in defaults (schema `default`s, sidecar config timeouts) → service-wide policy → route policy
//
// Everything is worked out once, when a policy set is loaded (compilePolicies): the effective policy
// of every service and route, frozen, with the source of each value. Per call, resolve() only looks
// the service up and walks its routes, most specific first; the first that matches is the answer.
//
// Route precedence (docs/policies.md#matching), compared in this order:
//   1. path: exact, then prefix, then no path condition;
//   2. the longer path (prefixes compared after dropping a trailing "/");
//   3. a route with a methods condition, then one without;
//   4. more header conditions;
//   5. fewer methods listed.
// Two routes of one service that are equal on all five and can match the same request are a tie,
// which is a load-time error: a policy set never depends on file order.
import { toMs } from '../config/duration.ts';
import { deepFreeze } from '../config/load.ts';
import type { Position } from '../config/yaml-errors.ts';
import type { LoadedPolicy, PolicyProblem, PolicySet } from './load.ts';
import { PolicySpecSchema, type HashSourceSpec, type RouteMatch } from './schema.ts';
import type { AccessPolicy, EffectivePolicy, HashSource, HeaderRoutePolicy, SubscriptionPolicy, SubsetPolicy } from './types.ts';

/** What the sidecar config contributes: its namespace (for policies that name none) and timeouts. */
export interface PolicyDefaults {
  namespace: string;
  timeouts: { connectMs: number; requestMs: number; streamIdleMs: number };
}

/** Request headers, as the call pipeline holds them (names lower-case) or as Node parses them. */
export type RequestHeaders =
  | readonly { readonly name: string; readonly value: string }[]
  | Readonly<Record<string, string | readonly string[] | undefined>>;

/** What route matching looks at. `path` may carry a query string; it is ignored. */
export interface RequestInfo {
  method: string;
  path: string;
  headers: RequestHeaders;
}

/** Where an effective value came from: "default", "sidecar config", or file:line:col of the field. */
export type ValueSource = string;

// ---- the YAML fields and the effective fields they set ----

type Convert = (value: never) => unknown;

interface Field {
  /** Keys under `spec` in the YAML. */
  spec: readonly string[];
  /** Dotted path in EffectivePolicy. */
  effective: string;
  convert: Convert;
  /** Built-in default taken from the sidecar config rather than from the schema. */
  fromConfig?: keyof PolicyDefaults['timeouts'];
}

const same: Convert = (value) => value;
const ms: Convert = (value: string | number) => toMs(value);

/** [500, "4xx"] → 400…499 and 500, sorted, each once. */
export function expandStatuses(list: readonly (number | string)[]): number[] {
  const statuses = new Set<number>();
  for (const item of list) {
    if (typeof item === 'number') { statuses.add(item); continue; }
    const base = Number(item[0]) * 100;
    for (let status = base; status < base + 100; status++) statuses.add(status);
  }
  return [...statuses].sort((a, b) => a - b);
}
const statuses: Convert = (value: (number | string)[]) => expandStatuses(value);

const subsets: Convert = (value: SubsetPolicy[]) => value.map((s) => ({ name: s.name, labels: { ...s.labels }, weight: s.weight }));
const subscriptions: Convert = (value: SubscriptionPolicy[]) => value.map((s) => ({ topic: s.topic, path: s.path, delivery: s.delivery ?? 'competing' }));
const headerRoutes: Convert = (value: HeaderRoutePolicy[]) => value.map((r) => ({ headers: lowerCaseKeys(r.headers), subset: r.subset }));
/** Header names lower-case, as the pipeline holds request headers. */
const hashSources: Convert = (value: HashSourceSpec[]) => value.map((s): HashSource => ('header' in s ? { header: s.header.toLowerCase() } : { ...s }));

const field = (spec: string, effective: string, convert: Convert = same, fromConfig?: Field['fromConfig']): Field =>
  ({ spec: spec.split('.'), effective, convert, ...(fromConfig ? { fromConfig } : {}) });

/** Every YAML setting and the EffectivePolicy field it sets; a test checks none is missing. */
export const FIELDS: readonly Field[] = [
  field('timeouts.connect', 'timeouts.connectMs', ms, 'connectMs'),
  field('timeouts.perTry', 'timeouts.perTryMs', ms),
  field('timeouts.request', 'timeouts.overallMs', ms, 'requestMs'),
  field('timeouts.streamIdle', 'timeouts.streamIdleMs', ms, 'streamIdleMs'),
  field('retries.attempts', 'retries.attempts'),
  field('retries.backoff.base', 'retries.backoffBaseMs', ms),
  field('retries.backoff.max', 'retries.backoffMaxMs', ms),
  field('retries.retryOn', 'retries.retryOn', (v: string[]) => [...v]),
  field('retries.statusCodes', 'retries.statusCodes', statuses),
  field('retries.nonIdempotent', 'retries.nonIdempotent'),
  field('retries.maxReplayBodyBytes', 'retries.maxReplayBodyBytes'),
  field('retries.honorRetryAfter', 'retries.honorRetryAfter'),
  field('retries.budget.ratio', 'retries.budget.ratio'),
  field('retries.budget.minPerSecond', 'retries.budget.minPerSecond'),
  field('retries.budget.window', 'retries.budget.windowMs', ms),
  field('circuitBreaker.enabled', 'circuitBreaker.enabled'),
  field('circuitBreaker.errorThresholdPercentage', 'circuitBreaker.errorThresholdPercentage'),
  field('circuitBreaker.volumeThreshold', 'circuitBreaker.volumeThreshold'),
  field('circuitBreaker.rollingWindow', 'circuitBreaker.rollingWindowMs', ms),
  field('circuitBreaker.resetTimeout', 'circuitBreaker.resetTimeoutMs', ms),
  field('circuitBreaker.failureStatuses', 'circuitBreaker.failureStatuses', statuses),
  field('outlierDetection.enabled', 'outlierDetection.enabled'),
  field('outlierDetection.consecutiveFailures', 'outlierDetection.consecutiveFailures'),
  field('outlierDetection.interval', 'outlierDetection.intervalMs', ms),
  field('outlierDetection.baseEjectionTime', 'outlierDetection.baseEjectionMs', ms),
  field('outlierDetection.maxEjectionTime', 'outlierDetection.maxEjectionMs', ms),
  field('outlierDetection.maxEjectionPercent', 'outlierDetection.maxEjectionPercent'),
  field('outlierDetection.successRate.enabled', 'outlierDetection.successRate.enabled'),
  field('outlierDetection.successRate.minRequests', 'outlierDetection.successRate.minRequests'),
  field('outlierDetection.successRate.stdevFactor', 'outlierDetection.successRate.stdevFactor'),
  field('loadBalancer.policy', 'loadBalancer.policy'),
  field('loadBalancer.ewma.decay', 'loadBalancer.ewmaDecayMs', ms),
  field('loadBalancer.ewma.defaultRtt', 'loadBalancer.ewmaDefaultRttMs', ms),
  field('loadBalancer.consistentHash.hashOn', 'loadBalancer.consistentHash.hashOn', hashSources),
  field('loadBalancer.consistentHash.virtualNodes', 'loadBalancer.consistentHash.virtualNodes'),
  field('loadBalancer.consistentHash.boundedLoadFactor', 'loadBalancer.consistentHash.boundedLoadFactor'),
  field('subsets', 'subsets', subsets),
  field('headerRoutes', 'headerRoutes', headerRoutes),
  field('concurrency.maxInFlight', 'concurrency.maxInFlight'),
  field('concurrency.maxQueue', 'concurrency.maxQueue'),
  field('concurrency.retryAfterSeconds', 'concurrency.retryAfterSeconds'),
  field('mcp.affinity', 'mcp.affinity'),
  field('priority', 'priority'),
  field('compression.algorithm', 'compression.algorithm'),
  field('compression.minBytes', 'compression.minBytes'),
  field('access.allow', 'access.allow', (v: string[]) => [...v]),
  field('access.defaultDeny', 'access.defaultDeny'),
  field('async.attempts', 'async.attempts'),
  field('async.backoff.base', 'async.backoffBaseMs', ms),
  field('async.backoff.max', 'async.backoffMaxMs', ms),
  field('async.maxAge', 'async.maxAgeMs', ms),
  field('async.attemptTimeout', 'async.attemptTimeoutMs', ms),
  field('subscriptions', 'subscriptions', subscriptions),
];

// ---- layers ----

type Source = { kind: 'default' } | { kind: 'sidecar config' } | { kind: 'file'; policy: LoadedPolicy; key: readonly string[] };

/** One layer's result: effective values and their sources, by dotted EffectivePolicy path. */
interface Layered {
  values: Map<string, unknown>;
  sources: Map<string, Source>;
}

/** The schema node of a YAML setting (keys under spec). */
export function specSchemaAt(key: readonly string[]): { default?: unknown } | undefined {
  let node: unknown = PolicySpecSchema;
  for (const segment of key) node = (node as { properties?: Record<string, unknown> }).properties?.[segment];
  return node as { default?: unknown } | undefined;
}

function builtIn(defaults: PolicyDefaults): Layered {
  const layered: Layered = { values: new Map(), sources: new Map() };
  for (const f of FIELDS) {
    if (f.fromConfig) {
      layered.values.set(f.effective, defaults.timeouts[f.fromConfig]);
      layered.sources.set(f.effective, { kind: 'sidecar config' });
    } else {
      layered.values.set(f.effective, f.convert(specSchemaAt(f.spec)?.default as never));
      layered.sources.set(f.effective, { kind: 'default' });
    }
  }
  return layered;
}

function valueAt(spec: unknown, key: readonly string[]): unknown {
  let node = spec;
  for (const segment of key) node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[segment] : undefined;
  return node;
}

/** `base` with every field that `policy` sets replaced. */
function overlay(base: Layered, policy: LoadedPolicy): Layered {
  const layered: Layered = { values: new Map(base.values), sources: new Map(base.sources) };
  for (const f of FIELDS) {
    const value = valueAt(policy.spec, f.spec);
    if (value === undefined) continue;
    layered.values.set(f.effective, f.convert(value as never));
    layered.sources.set(f.effective, { kind: 'file', policy, key: ['spec', ...f.spec] });
  }
  return layered;
}

function toEffective(layered: Layered, route: string): EffectivePolicy {
  const root: Record<string, unknown> = { route };
  for (const [dotted, value] of layered.values) {
    const keys = dotted.split('.');
    let node = root;
    for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
    node[keys.at(-1)!] = value;
  }
  return deepFreeze(root) as unknown as EffectivePolicy;
}

function sourceText(source: Source): ValueSource {
  if (source.kind !== 'file') return source.kind;
  const at = source.policy.at(source.key);
  return `${source.policy.file}:${at.line}:${at.col}`;
}

// ---- routes ----

interface CompiledRoute {
  name: string;
  policy: LoadedPolicy;
  match: RouteMatch;
  pathKind: 'exact' | 'prefix' | 'any';
  /** For prefixes, without a trailing "/" ("" for "/"). */
  path: string;
  /** `path` + "/", built once rather than per call. */
  under: string;
  methods: ReadonlySet<string> | undefined;
  headers: readonly (readonly [string, string])[];
  rank: readonly number[];
  effective: EffectivePolicy;
  layered: Layered;
}

function compileRoute(policy: LoadedPolicy, serviceWide: Layered): CompiledRoute {
  const route = policy.spec.route!;
  const { match } = route;
  const pathKind = match.path?.exact !== undefined ? 'exact' : match.path?.prefix !== undefined ? 'prefix' : 'any';
  const path = match.path?.exact ?? match.path?.prefix?.replace(/\/+$/, '') ?? '';
  const methods = match.methods ? new Set(match.methods) : undefined;
  const headers = Object.entries(lowerCaseKeys(match.headers ?? {}));
  const rank = [
    { exact: 2, prefix: 1, any: 0 }[pathKind],
    path.length,
    methods ? 1 : 0,
    headers.length,
    methods ? -methods.size : 0,
  ];
  const layered = overlay(serviceWide, policy);
  return { name: route.name, policy, match, pathKind, path, under: `${path}/`, methods, headers, rank, effective: toEffective(layered, route.name), layered };
}

/** Most specific first (see the rules at the top of this file). */
function byPrecedence(a: CompiledRoute, b: CompiledRoute): number {
  for (let i = 0; i < a.rank.length; i++) if (a.rank[i] !== b.rank[i]) return b.rank[i]! - a.rank[i]!;
  return 0;
}

/** Can one request match both routes? (Only asked of routes of equal rank.) */
function overlap(a: CompiledRoute, b: CompiledRoute): boolean {
  if (a.path !== b.path) return false;
  if (a.methods && b.methods && ![...a.methods].some((m) => b.methods!.has(m))) return false;
  const other = new Map(b.headers);
  return a.headers.every(([name, value]) => !other.has(name) || other.get(name) === value);
}

function routeMatches(route: CompiledRoute, method: string, path: string, headers: RequestHeaders): boolean {
  if (route.methods && !route.methods.has(method) && !route.methods.has(method.toUpperCase())) return false;
  if (route.pathKind === 'exact' && path !== route.path) return false;
  if (route.pathKind === 'prefix' && route.path !== '' && path !== route.path && !path.startsWith(route.under)) return false;
  for (const [name, value] of route.headers) if (!hasHeader(headers, name, value)) return false;
  return true;
}

/** The request has header `name` (lower-case) with exactly `value`; for a repeated header, any of its values. */
function hasHeader(headers: RequestHeaders, name: string, value: string): boolean {
  if (Array.isArray(headers)) {
    for (const h of headers as readonly { name: string; value: string }[]) if (h.name === name && h.value === value) return true;
    return false;
  }
  const found = (headers as Readonly<Record<string, string | readonly string[] | undefined>>)[name];
  return typeof found === 'string' ? found === value : found?.includes(value) ?? false;
}

// ---- the compiled table ----

interface ServiceEntry {
  service: string;
  namespace: string;
  policy: LoadedPolicy | undefined;
  layered: Layered;
  effective: EffectivePolicy;
  routes: CompiledRoute[];
}

/** A JSON-able account of one effective policy: the values and where each came from. */
export interface ExplainedPolicy {
  policy: EffectivePolicy;
  sources: Record<string, ValueSource>;
}

export interface PolicyTableDump {
  defaults: ExplainedPolicy;
  services: {
    service: string;
    namespace: string;
    /** The service-wide policy document, if any. */
    serviceWide: { name: string; file: string } | null;
    effective: ExplainedPolicy;
    /** Most specific first: the order in which they are tried. */
    routes: { name: string; policy: string; file: string; match: RouteMatch; effective: ExplainedPolicy }[];
  }[];
}

/** A service subscribed to a topic (pub/sub), from its service-wide policy. */
export interface Subscriber {
  service: string;
  namespace: string;
  path: string;
  delivery: 'competing' | 'broadcast';
}

/** Whether access rules say anything at all: no allow list and no default deny let everyone in. */
export function restrictsCallers(access: AccessPolicy): boolean {
  return access.allow.length > 0 || access.defaultDeny;
}

/** The effective policies of a valid policy set; immutable. Build it with compilePolicies. */
export class PolicyTable {
  readonly #defaults: Layered;
  readonly #defaultPolicy: EffectivePolicy;
  readonly #services: Map<string, Map<string, ServiceEntry>>;
  readonly #subscribers = new Map<string, Subscriber[]>();
  /** The services one of whose policies (service-wide or route) restricts access. */
  readonly #guarded = new WeakSet<ServiceEntry>();

  constructor(defaults: Layered, services: Map<string, Map<string, ServiceEntry>>) {
    this.#defaults = defaults;
    this.#defaultPolicy = toEffective(defaults, 'default');
    this.#services = services;
    for (const byService of services.values()) {
      for (const entry of byService.values()) {
        const access = [entry.effective.access, ...entry.routes.map((r) => r.effective.access)];
        if (access.some(restrictsCallers)) this.#guarded.add(entry);
        for (const { topic, path, delivery } of entry.effective.subscriptions) {
          const list = this.#subscribers.get(topic) ?? [];
          list.push({ service: entry.service, namespace: entry.namespace, path, delivery });
          this.#subscribers.set(topic, list);
        }
      }
    }
  }

  /** Whether any policy of the service says who may call it (so calls to it need an access check). */
  restrictsAccess(service: string, namespace: string): boolean {
    const entry = this.#services.get(namespace)?.get(service);
    return entry !== undefined && this.#guarded.has(entry);
  }

  /** The services subscribed to `topic` (empty when none). */
  subscribers(topic: string): readonly Subscriber[] {
    return this.#subscribers.get(topic) ?? [];
  }

  /** The effective policy of a call: the most specific matching route's, else the service's, else the defaults. */
  resolve(service: string, namespace: string, request: RequestInfo): EffectivePolicy {
    const entry = this.#services.get(namespace)?.get(service);
    if (!entry) return this.#defaultPolicy;
    if (entry.routes.length === 0) return entry.effective;
    const query = request.path.indexOf('?');
    const path = query >= 0 ? request.path.slice(0, query) : request.path;
    for (const route of entry.routes) if (routeMatches(route, request.method, path, request.headers)) return route.effective;
    return entry.effective;
  }

  /** The built-in policy (no policy file involved). */
  get defaults(): EffectivePolicy {
    return this.#defaultPolicy;
  }

  dump(): PolicyTableDump {
    const explain = (layered: Layered, effective: EffectivePolicy): ExplainedPolicy => ({
      policy: effective,
      sources: Object.fromEntries([...layered.sources].map(([key, source]) => [key, sourceText(source)])),
    });
    const services: PolicyTableDump['services'] = [];
    for (const byService of this.#services.values()) {
      for (const entry of byService.values()) {
        services.push({
          service: entry.service,
          namespace: entry.namespace,
          serviceWide: entry.policy ? { name: entry.policy.name, file: entry.policy.file } : null,
          effective: explain(entry.layered, entry.effective),
          routes: entry.routes.map((r) => ({ name: r.name, policy: r.policy.name, file: r.policy.file, match: r.match, effective: explain(r.layered, r.effective) })),
        });
      }
    }
    services.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.service.localeCompare(b.service));
    return { defaults: explain(this.#defaults, this.#defaultPolicy), services };
  }
}

/**
 * Combine the valid documents of a set into a table, with the checks that need more than one
 * document: duplicates, ties between routes, and rules on the values a route ends up with
 * (subsets named by headerRoutes, back-off ordering…), wherever those values were set.
 */
export function compilePolicies(set: Pick<PolicySet, 'policies'>, defaults: PolicyDefaults): { table: PolicyTable; problems: PolicyProblem[] } {
  const problems: PolicyProblem[] = [];
  const base = builtIn(defaults);
  const named = new Map<string, LoadedPolicy>();
  for (const policy of set.policies) {
    const first = named.get(policy.name);
    if (first) problems.push(policy.problem(['metadata', 'name'], `policy ${policy.name} is already defined in ${where(first, ['metadata', 'name'])}`));
    else named.set(policy.name, policy);
  }

  // Group by service, service-wide policies first so routes can inherit from them.
  const groups = new Map<string, { service: string; namespace: string; policies: LoadedPolicy[] }>();
  for (const policy of set.policies) {
    const namespace = policy.spec.namespace ?? defaults.namespace;
    const key = `${policy.spec.service}.${namespace}`;
    if (!groups.has(key)) groups.set(key, { service: policy.spec.service, namespace, policies: [] });
    groups.get(key)!.policies.push(policy);
  }

  const services = new Map<string, Map<string, ServiceEntry>>();
  for (const { service, namespace, policies } of groups.values()) {
    const wide = policies.filter((p) => !p.spec.route);
    for (const extra of wide.slice(1)) {
      problems.push(extra.problem(['spec', 'service'], `service ${service} (namespace ${namespace}) already has a service-wide policy in ${where(wide[0]!, ['spec', 'service'])}; `
        + 'merge them, or narrow one with spec.route'));
    }
    const serviceWide = wide[0];
    const layered = serviceWide ? overlay(base, serviceWide) : base;
    if (serviceWide) problems.push(...valueRules(layered, serviceWide));
    // In load order, so a duplicate is reported at the later document; the sort is stable, so a tie is too.
    const inLoadOrder = policies.filter((p) => p.spec.route).map((p) => compileRoute(p, layered));
    for (const [i, route] of inLoadOrder.entries()) {
      problems.push(...valueRules(route.layered, route.policy));
      const earlier = inLoadOrder.slice(0, i).find((r) => r.name === route.name);
      if (earlier) {
        problems.push(route.policy.problem(['spec', 'route', 'name'], `service ${service} already has a route ${route.name} in ${where(earlier.policy, ['spec', 'route', 'name'])}`));
      }
    }
    const routes = [...inLoadOrder].sort(byPrecedence);
    for (const [i, route] of routes.entries()) {
      for (const earlier of routes.slice(0, i)) {
        if (byPrecedence(earlier, route) === 0 && overlap(earlier, route)) {
          problems.push(route.policy.problem(['spec', 'route', 'match'], `matches the same requests as route ${earlier.name} in ${where(earlier.policy, ['spec', 'route', 'match'])}, `
            + 'and neither is more specific; make one more specific (see docs/policies.md#matching)', true));
        }
      }
    }
    if (!services.has(namespace)) services.set(namespace, new Map());
    services.get(namespace)!.set(service, {
      service, namespace, policy: serviceWide, layered, effective: toEffective(layered, 'default'), routes,
    });
  }
  return { table: new PolicyTable(base, services), problems };
}

function where(policy: LoadedPolicy, key: readonly string[]): string {
  const at: Position = policy.at(key);
  return `${policy.file}:${at.line}:${at.col}`;
}

/**
 * Rules on the effective values of one service-wide or route policy. A rule is reported only when
 * this policy set one of the values involved (an inherited problem is reported where it was made),
 * and at the value this policy set.
 */
function valueRules(layered: Layered, policy: LoadedPolicy): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const value = <T>(path: string) => layered.values.get(path) as T;
  const own = (path: string): readonly string[] | undefined => {
    const source = layered.sources.get(path);
    return source?.kind === 'file' && source.policy === policy ? source.key : undefined;
  };
  const origin = (path: string): string => {
    const source = layered.sources.get(path)!;
    if (source.kind === 'file') return source.policy === policy ? 'this policy' : where(source.policy, source.key);
    return source.kind === 'default' ? 'the built-in default' : 'the sidecar config';
  };
  /** When `broken`, report at the first of `paths` that this policy set, if any. */
  const rule = (broken: boolean, paths: string[], message: () => string) => {
    if (!broken) return;
    const key = paths.map(own).find((k) => k !== undefined);
    if (key) problems.push(policy.problem(key, message()));
  };
  const durationText = (path: string) => `${formatMs(value<number>(path))}, from ${origin(path)}`;

  rule(value<number>('retries.backoffBaseMs') > value<number>('retries.backoffMaxMs'), ['retries.backoffBaseMs', 'retries.backoffMaxMs'],
    () => `the back-off base (${durationText('retries.backoffBaseMs')}) is longer than its max (${durationText('retries.backoffMaxMs')})`);
  rule(value<number>('outlierDetection.baseEjectionMs') > value<number>('outlierDetection.maxEjectionMs'),
    ['outlierDetection.baseEjectionMs', 'outlierDetection.maxEjectionMs'],
    () => `baseEjectionTime (${durationText('outlierDetection.baseEjectionMs')}) is longer than maxEjectionTime (${durationText('outlierDetection.maxEjectionMs')})`);
  const perTry = value<number>('timeouts.perTryMs');
  const overall = value<number>('timeouts.overallMs');
  rule(perTry > 0 && overall > 0 && perTry > overall, ['timeouts.perTryMs', 'timeouts.overallMs'],
    () => `the per-try timeout (${durationText('timeouts.perTryMs')}) is longer than the overall deadline timeouts.request (${durationText('timeouts.overallMs')}), so it would never apply`);
  const listsCodes = value<string[]>('retries.retryOn').includes('retriable-status-codes');
  const codes = value<number[]>('retries.statusCodes');
  rule(listsCodes && codes.length === 0, ['retries.retryOn', 'retries.statusCodes'],
    () => 'retryOn lists retriable-status-codes but statusCodes is empty; list the statuses to retry');
  rule(!listsCodes && codes.length > 0, ['retries.statusCodes', 'retries.retryOn'],
    () => 'statusCodes has no effect unless retryOn lists retriable-status-codes');
  rule(value<number>('async.backoffBaseMs') > value<number>('async.backoffMaxMs'), ['async.backoffBaseMs', 'async.backoffMaxMs'],
    () => `the async back-off base (${durationText('async.backoffBaseMs')}) is longer than its max (${durationText('async.backoffMaxMs')})`);
  rule(policy.spec.route !== undefined && own('subscriptions') !== undefined, ['subscriptions'],
    () => 'subscriptions belong to a service, not a route: move them to the service-wide policy (the one without spec.route)');
  const topics = value<SubscriptionPolicy[]>('subscriptions').map((s) => s.topic);
  const repeated = topics.find((topic, i) => topics.indexOf(topic) !== i);
  rule(repeated !== undefined, ['subscriptions'], () => `topic ${repeated} is subscribed twice; one subscription per topic and service`);
  rule(value<number>('concurrency.maxQueue') > 0 && value<number>('concurrency.maxInFlight') === 0, ['concurrency.maxQueue', 'concurrency.maxInFlight'],
    () => 'a queue needs a limit: set concurrency.maxInFlight above 0, or maxQueue to 0');

  // headerRoutes may name subsets inherited from the service-wide policy, and a route may replace
  // the subsets that inherited headerRoutes name: blame whichever of the two lists this policy wrote.
  const subsetNames = new Set(value<SubsetPolicy[]>('subsets').map((s) => s.name));
  const known = subsetNames.size > 0 ? `the subsets are ${[...subsetNames].join(', ')}` : 'no subsets are defined';
  const routesKey = own('headerRoutes');
  const subsetsKey = own('subsets');
  for (const [i, headerRoute] of value<HeaderRoutePolicy[]>('headerRoutes').entries()) {
    if (subsetNames.has(headerRoute.subset)) continue;
    if (routesKey) {
      problems.push(policy.problem([...routesKey, String(i), 'subset'], `names subset ${headerRoute.subset}, which is not defined; ${known}`));
    } else if (subsetsKey) {
      problems.push(policy.problem(subsetsKey, `lacks subset ${headerRoute.subset}, which headerRoutes from ${origin('headerRoutes')} send requests to`, true));
    }
  }
  return problems;
}

/** 1500 → "1500ms", 2000 → "2s", 600000 → "10m": as a user would write it. */
function formatMs(ms: number): string {
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms > 0 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function lowerCaseKeys(record: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k.toLowerCase(), v]));
}
