// The policy file schema: the YAML form users write, and the single source of the TypeScript type
// (PolicyDocument), of the validation done by the loader, of the JSON Schema checked in under
// policies/schema/ and of the field tables in docs/policies.md (npm run policy:schema writes both).
//
// Rules of the house:
// - every object rejects unknown keys, so a typo is an error;
// - every field has a description (it becomes the reference) and, where it has a fixed built-in
//   default, a `default` (policy/resolve.ts builds the built-in policy from these very values; the
//   three timeouts without one default to the sidecar config's, see FIELDS in resolve.ts);
// - nothing is filled in by validation: a field a file leaves out is inherited (service-wide policy,
//   then built-in default), so the loader must see what the user actually wrote;
// - `x-expect` says in words what a valid value looks like, for error messages ("must be …") where
//   the JSON Schema keyword alone (a pattern) would not tell a user anything.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Duration } from '../config/schema.ts';

export const API_VERSION = 'mcp-mesh.io/v1';
export const KIND = 'Policy';

const section = <T extends Parameters<typeof Type.Object>[0]>(properties: T, description: string) =>
  Type.Object(properties, { additionalProperties: false, description });

const duration = (description: string, defaultValue?: string | number) => Type.Union([...Duration.anyOf], {
  description, 'x-expect': Duration.description, ...(defaultValue === undefined ? {} : { default: defaultValue }),
});

const integer = (minimum: number, maximum: number, description: string, defaultValue?: number) =>
  Type.Integer({ minimum, maximum, description, ...(defaultValue === undefined ? {} : { default: defaultValue }) });

const number = (minimum: number, maximum: number, description: string, defaultValue: number) =>
  Type.Number({ minimum, maximum, description, default: defaultValue });

const boolean = (description: string, defaultValue: boolean) => Type.Boolean({ description, default: defaultValue });

const text = (pattern: string, expect: string, description: string) =>
  Type.String({ pattern, description, 'x-expect': expect });

const oneOf = <const T extends readonly string[]>(values: T, description: string, defaultValue?: T[number]) =>
  Type.Union(values.map((v) => Type.Literal(v as T[number])), {
    description, 'x-expect': `one of ${values.join(', ')}`, ...(defaultValue === undefined ? {} : { default: defaultValue }),
  });

const DNS_LABEL = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const DNS_LABEL_WORDS = 'a DNS label: lower-case letters, digits and "-", at most 63 characters';
/** Route and subset names: they end up in metric labels. */
const NAME = '^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$';
const NAME_WORDS = 'lower-case letters, digits, "-" and "_", at most 63 characters';
/** RFC 9110 token: what a header name or a method may be made of. */
const TOKEN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";

/** A status code, or a whole class written 5xx (which expands to 500–599). */
export const StatusCode = Type.Union([
  Type.Integer({ minimum: 100, maximum: 599 }),
  Type.String({ pattern: '^[1-5]xx$' }),
], { 'x-expect': 'a status code from 100 to 599, or a class such as 5xx', description: 'a status code or a class such as 5xx' });

const statusList = (description: string, defaultValue?: (number | string)[]) => Type.Array(StatusCode, {
  description, uniqueItems: true, ...(defaultValue === undefined ? {} : { default: defaultValue }),
});

const headerValues = (description: string) => Type.Record(Type.String(), Type.String({ description: 'the exact value' }), {
  propertyNames: { pattern: TOKEN, 'x-expect': 'a header name (letters, digits and !#$%&\'*+-.^_`|~)' },
  minProperties: 1,
  description,
  'x-expect': 'a mapping of header name to exact value, such as { x-canary: "true" }',
});

const RETRY_CONDITIONS = [
  'connect-failure', 'refused-stream', 'reset', 'unavailable', 'gateway-error', '5xx', 'retriable-status-codes', 'retriable-4xx',
] as const;

export const RouteMatchSchema = section({
  path: Type.Optional(Type.Object({
    exact: Type.Optional(text('^/[^\\s?#]*$', 'a path starting with "/" (no query string)', 'the whole path, query string excluded, is this')),
    prefix: Type.Optional(text('^/[^\\s?#]*$', 'a path starting with "/" (no query string)',
      'the path starts with these segments: /api matches /api and /api/x, not /apix')),
  }, { additionalProperties: false, minProperties: 1, maxProperties: 1, description: 'exactly one of exact or prefix' })),
  methods: Type.Optional(Type.Array(text('^[A-Z]+$', 'an HTTP method in capitals, such as GET', 'a method'), {
    minItems: 1, uniqueItems: true, description: 'the request method is one of these (any method when left out)',
  })),
  headers: Type.Optional(headerValues('every one of these headers is present with exactly this value (names are case-insensitive)')),
}, 'which requests the route covers; every condition given must hold');

export const RouteSchema = section({
  name: text(NAME, NAME_WORDS,
    'the route\'s name in metrics, logs and /config_dump ("default" is reserved for the service-wide policy)'),
  match: RouteMatchSchema,
}, 'narrows the policy to some requests; without it, the policy covers every request to the service');

export const TimeoutsSchema = section({
  connect: Type.Optional(duration('longest wait for a link to a peer sidecar; the try then fails as connect-failure')),
  perTry: Type.Optional(duration('limit on one try; 0 for none (only the overall deadline applies)', 0)),
  request: Type.Optional(duration('overall deadline of a call, every try and back-off included, until the response head arrives; 0 for none')),
  streamIdle: Type.Optional(duration('a streamed response (SSE, large body) is cut after this long without data; the request deadline does not cut streams')),
}, 'timeouts');

export const RetriesSchema = section({
  attempts: Type.Optional(integer(1, 10, 'tries in all, the first one included; 1 turns retries off', 3)),
  backoff: Type.Optional(section({
    base: Type.Optional(duration('retry n waits a random time up to base × 2^(n−1) (full jitter), never more than max', '25ms')),
    max: Type.Optional(duration('the longest back-off', '250ms')),
  }, 'exponential back-off with full jitter between tries')),
  retryOn: Type.Optional(Type.Array(oneOf(RETRY_CONDITIONS, 'a retryable outcome'), {
    uniqueItems: true,
    default: ['connect-failure', 'refused-stream', 'reset'],
    description: 'which outcomes are retried: connect-failure (the call never left), refused-stream (the peer refused it unrun), '
      + 'reset (the link or the app broke mid-call), unavailable (503), gateway-error (502, 503, 504), 5xx, '
      + 'retriable-status-codes (the statuses in statusCodes), retriable-4xx (409)',
  })),
  statusCodes: Type.Optional(statusList('statuses retried when retryOn lists retriable-status-codes', [])),
  nonIdempotent: Type.Optional(boolean('retry methods that are not idempotent (POST, PATCH) too; set it only on routes that are safe to repeat', false)),
  maxReplayBodyBytes: Type.Optional(integer(0, 16_777_216, 'a request body larger than this is never replayed, so such a call is tried once', 65_536)),
  honorRetryAfter: Type.Optional(boolean('on a 503 or 429 with Retry-After, wait what it says (within the deadline) instead of the back-off', true)),
  budget: Type.Optional(section({
    ratio: Type.Optional(number(0, 1, 'retries allowed as a share of the calls made in the window (0.2: at most 20% extra load)', 0.2)),
    minPerSecond: Type.Optional(integer(0, 100_000, 'retries always allowed per second on top of the ratio, so light traffic can retry', 10)),
    window: Type.Optional(duration('how far back calls and retries are counted', '10s')),
  }, 'a cap on retries so an outage cannot multiply the load')),
}, 'retries, made only by the calling sidecar');

export const CircuitBreakerSchema = section({
  enabled: Type.Optional(boolean('whether calls pass through a circuit breaker (per endpoint and per service)', true)),
  errorThresholdPercentage: Type.Optional(integer(1, 100, 'open when more than this percentage of the calls in the window failed…', 50)),
  volumeThreshold: Type.Optional(integer(1, 1_000_000, '…and at least this many calls were made in the window', 20)),
  rollingWindow: Type.Optional(duration('the window over which calls are counted', '10s')),
  resetTimeout: Type.Optional(duration('how long the breaker stays open before one probe call goes through (half-open)', '5s')),
  failureStatuses: Type.Optional(statusList('statuses from the app that count as failures (connection failures always do); 4xx never count unless listed', ['5xx'])),
}, 'circuit breaker: when open, calls fail at once with 503 CIRCUIT_OPEN');

export const OutlierDetectionSchema = section({
  enabled: Type.Optional(boolean('whether failing endpoints are ejected from balancing for a while', true)),
  consecutiveFailures: Type.Optional(integer(1, 1000, 'eject an endpoint after this many failures in a row', 5)),
  interval: Type.Optional(duration('how often success rates are compared', '10s')),
  baseEjectionTime: Type.Optional(duration('ejection time, multiplied by the number of times the endpoint has been ejected…', '30s')),
  maxEjectionTime: Type.Optional(duration('…up to this', '300s')),
  maxEjectionPercent: Type.Optional(integer(0, 100, 'most endpoints ejected at once, in percent of the endpoints; one may always be ejected', 10)),
  successRate: Type.Optional(section({
    enabled: Type.Optional(boolean('also eject endpoints whose success rate is far below the others\'', true)),
    minRequests: Type.Optional(integer(1, 1_000_000, 'an endpoint is judged only after this many calls in the interval', 100)),
    stdevFactor: Type.Optional(number(0.1, 10, 'eject below mean − stdevFactor × standard deviation of the endpoints\' success rates', 1.9)),
  }, 'success-rate ejection')),
}, 'outlier detection: take failing endpoints out of the rotation');

const hashSource = <K extends string, T extends TSchema>(key: K, value: T, description: string) =>
  Type.Object({ [key]: value } as { [P in K]: T }, { additionalProperties: false, description });

/** One place a request's affinity key can come from (affinity/hash-key.ts). */
export const HashSourceSchema = Type.Union([
  hashSource('header', text(TOKEN, 'a header name', 'the header\'s name (case-insensitive)'), 'the value of a request header'),
  hashSource('query', Type.String({ minLength: 1, description: 'the parameter\'s name' }), 'the value of a query parameter'),
  hashSource('cookie', Type.String({ minLength: 1, pattern: TOKEN, description: 'the cookie\'s name' }), 'the value of a cookie'),
  hashSource('source', Type.Literal(true, { description: 'true', 'x-expect': 'true' }), 'the calling service / pod identity'),
], {
  description: 'a key source',
  'x-expect': 'one of { header: NAME }, { query: NAME }, { cookie: NAME }, { source: true }',
});

export const LoadBalancerSchema = section({
  policy: Type.Optional(oneOf(['round-robin', 'least-request', 'p2c-ewma', 'consistent-hash'] as const,
    'how an endpoint is picked: round-robin in turn; least-request, the less busy of two picked at random; '
    + 'p2c-ewma, the faster of two picked at random by peak-EWMA latency; consistent-hash, by a key taken from the request, '
    + 'so equal keys reach the same endpoint (calls without a key: as least-request)', 'p2c-ewma')),
  ewma: Type.Optional(section({
    decay: Type.Optional(duration('how fast old latency samples fade', '10s')),
    defaultRtt: Type.Optional(duration('the latency assumed for an endpoint with no samples yet', '30ms')),
  }, 'peak-EWMA settings (policy p2c-ewma only)')),
  consistentHash: Type.Optional(section({
    hashOn: Type.Optional(Type.Array(HashSourceSchema, {
      minItems: 1,
      uniqueItems: true,
      default: [{ source: true }],
      description: 'where the key comes from, tried in order: the first source with a non-empty value gives it; '
        + 'a request with none is balanced as least-request',
    })),
    virtualNodes: Type.Optional(integer(1, 16_384,
      'points each endpoint of weight 1 puts on the hash ring (weight w: w times as many, at most 262144); '
      + 'more points spread keys more evenly, fewer build the ring faster', 2048)),
    boundedLoadFactor: Type.Optional(number(1, 100,
      'bounded load: no endpoint takes a call that would put it above this factor × its fair share of the calls in flight; '
      + 'the call goes to the next endpoint on the ring instead. 1 is strict balance; a large factor lets keys stay put under uneven load', 1.25)),
  }, 'consistent-hash settings (policy consistent-hash only)')),
}, 'load balancing among the endpoints (of the chosen subset)');

export const SubsetSchema = section({
  name: text(NAME, NAME_WORDS, 'the subset\'s name, used by headerRoutes'),
  labels: Type.Record(Type.String(), Type.String({ description: 'the label value' }), {
    propertyNames: { pattern: '^[A-Za-z0-9]([A-Za-z0-9_./-]{0,251}[A-Za-z0-9])?$', 'x-expect': 'a label name (letters, digits, "-", "_", "." and "/")' },
    minProperties: 1,
    description: 'the endpoints whose labels include all of these',
    'x-expect': 'a mapping of label name to value, such as { version: v2 }',
  }),
  weight: integer(0, 100, 'share of the traffic, in percent; the weights of a policy\'s subsets add up to 100'),
}, 'a named group of endpoints');

export const HeaderRouteSchema = section({
  headers: headerValues('requests carrying all these headers with exactly these values… (names are case-insensitive)'),
  subset: text(NAME, NAME_WORDS, '…go to this subset, whatever the weights'),
}, 'a header match that sends requests to one subset (canary, request colouring)');

export const ConcurrencySchema = section({
  maxInFlight: Type.Optional(integer(0, 1_000_000, 'most calls in flight to the service from this sidecar; 0 for no limit', 0)),
  maxQueue: Type.Optional(integer(0, 1_000_000, 'calls that may wait for a slot; beyond that, 503 OVERLOADED at once', 0)),
  retryAfterSeconds: Type.Optional(integer(0, 3600, 'the Retry-After (seconds) sent with OVERLOADED', 1)),
}, 'a limit on concurrent calls');

export const McpSchema = section({
  affinity: Type.Optional(boolean('keep each MCP session on the replica that holds it, learnt from the traffic '
    + '(Mcp-Session-Id, the SSE endpoint event); false balances every MCP request like any other call', true)),
}, 'MCP (Model Context Protocol) servers: session awareness');

export const CompressionSchema = section({
  algorithm: Type.Optional(oneOf(['none', 'gzip', 'lz4'] as const,
    'compress the bodies of calls to the service (and their answers) on the link between sidecars: gzip is smaller, lz4 much cheaper; '
    + 'a peer sidecar that does not speak the algorithm gets them uncompressed. Streamed bodies are never compressed', 'none')),
  minBytes: Type.Optional(integer(0, 16_777_216, 'only bodies at least this large are compressed (small ones do not pay)', 1024)),
}, 'per-message compression between sidecars');

export const AsyncSchema = section({
  attempts: Type.Optional(integer(1, 1000, 'delivery attempts of an async message or event, the first one included, before it becomes a dead letter', 10)),
  backoff: Type.Optional(section({
    base: Type.Optional(duration('redelivery n waits a random time up to base × 2^(n−1) (full jitter), never more than max', '1s')),
    max: Type.Optional(duration('the longest wait between deliveries', '60s')),
  }, 'exponential back-off with full jitter between delivery attempts')),
  maxAge: Type.Optional(duration('a message still undelivered this long after it was accepted (or last replayed from the dead letters) becomes a dead letter; 0 for no limit', '24h')),
  attemptTimeout: Type.Optional(duration('limit on one delivery attempt, until the app\'s answer arrives; the attempt then counts as failed', '30s')),
}, 'asynchronous delivery (Prefer: respond-async, published events): acknowledgement, redelivery and dead letters');

const TOPIC = '^[A-Za-z0-9]([A-Za-z0-9._-]{0,247}[A-Za-z0-9])?$';

export const SubscriptionSchema = section({
  topic: text(TOPIC, 'letters, digits, ".", "_" and "-", at most 249 characters', 'the topic whose events the service receives'),
  path: text('^/[^\\s#]*$', 'a path starting with "/"', 'where the service\'s app receives each event, as a POST with the published body'),
  delivery: Type.Optional(oneOf(['competing', 'broadcast'] as const,
    'competing: one replica of the service receives each event; broadcast: every replica does', 'competing')),
}, 'a topic the service subscribes to');

/** An allowed calling identity: a service, every service of a namespace, or anyone. */
const SOURCE = '^(\\*|\\*\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?)$';

export const AccessSchema = section({
  allow: Type.Optional(Type.Array(text(SOURCE, 'a service (payments, or payments.shop), every service of a namespace (*.shop), or * for anyone',
    'a calling service that may call'), {
    uniqueItems: true, default: [],
    description: 'the calling services allowed; once this lists any, every other caller is refused (403 ACCESS_DENIED). '
      + 'A caller is the verified identity of its sidecar\'s certificate under mutual TLS, else the service it claims',
  })),
  defaultDeny: Type.Optional(boolean('refuse callers not listed in allow even when allow is empty (deny everyone unless allowed)', false)),
}, 'who may call the service (or route): checked by the called sidecar');

export const PolicySpecSchema = section({
  service: text(DNS_LABEL, DNS_LABEL_WORDS, 'the service the policy applies to, as the app names it (payments)'),
  namespace: Type.Optional(text(DNS_LABEL, DNS_LABEL_WORDS, 'the service\'s namespace; the sidecar\'s own namespace when left out')),
  route: Type.Optional(RouteSchema),
  timeouts: Type.Optional(TimeoutsSchema),
  retries: Type.Optional(RetriesSchema),
  circuitBreaker: Type.Optional(CircuitBreakerSchema),
  outlierDetection: Type.Optional(OutlierDetectionSchema),
  loadBalancer: Type.Optional(LoadBalancerSchema),
  subsets: Type.Optional(Type.Array(SubsetSchema, { default: [], description: 'named groups of endpoints by label, with their share of the traffic' })),
  headerRoutes: Type.Optional(Type.Array(HeaderRouteSchema, { default: [], description: 'header matches that pick a subset; the first that matches wins' })),
  concurrency: Type.Optional(ConcurrencySchema),
  mcp: Type.Optional(McpSchema),
  priority: Type.Optional(oneOf(['high', 'medium', 'low'] as const,
    'the lane calls to the service take in each link\'s batches and in the async outbox: a high-priority call never waits behind queued '
    + 'lower ones; an app may set it per call with the mcp-mesh-priority header', 'medium')),
  compression: Type.Optional(CompressionSchema),
  access: Type.Optional(AccessSchema),
  async: Type.Optional(AsyncSchema),
  subscriptions: Type.Optional(Type.Array(SubscriptionSchema, {
    default: [],
    description: 'topics the service subscribes to (POST /mesh/v1/publish/<topic> delivers to it); service-wide policies only',
  })),
}, 'what the policy applies to and what it sets; every setting left out is inherited');

export const PolicyDocumentSchema = Type.Object({
  apiVersion: Type.Literal(API_VERSION, { description: 'the policy format version', 'x-expect': API_VERSION }),
  kind: Type.Literal(KIND, { description: 'the kind of document', 'x-expect': KIND }),
  metadata: section({
    name: text('^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$', 'lower-case letters, digits, "-" and ".", at most 253 characters',
      'the policy\'s name, unique among the loaded policies; shown in /config_dump'),
  }, 'about the document'),
  spec: PolicySpecSchema,
}, {
  additionalProperties: false,
  title: 'mcp-mesh Policy',
  description: 'One policy document. A file may hold several, separated by ---.',
});

export type PolicyDocument = Static<typeof PolicyDocumentSchema>;
export type PolicySpec = Static<typeof PolicySpecSchema>;
export type RouteMatch = Static<typeof RouteMatchSchema>;
export type RetryOn = (typeof RETRY_CONDITIONS)[number];
export type HashSourceSpec = Static<typeof HashSourceSchema>;

export type { TSchema };
