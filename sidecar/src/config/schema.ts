// The sidecar configuration schema: the single source of the TypeScript type (MeshConfigInput) and
// of the validation done at start-up. Every object rejects unknown keys, so a typo is an error.
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const strictObject = <T extends Parameters<typeof Type.Object>[0]>(properties: T, description: string) =>
  Type.Object(properties, { additionalProperties: false, default: {}, description });

/** "250ms", "1s", "5m", "1h" or a number of milliseconds. */
export const Duration = Type.Union([
  Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' }),
  Type.Integer({ minimum: 0 }),
], { description: 'a duration such as 250ms, 1s, 5m, or milliseconds as a number' });

/** "host:port"; port 0 picks a free port. */
export const Address = Type.String({
  pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9_.-]+):(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})$',
  description: 'host:port',
});

// An egress.allow entry: `*`, a host name or `*.domain`, or an address / CIDR range (IPv4 dotted
// decimal; IPv6 in hex groups, `::` allowed once — what ipaddr.js reads in outbound/egress-address.ts).
const IPV4 = '((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const H16 = '[0-9A-Fa-f]{1,4}';
const IPV6 = [
  `(${H16}:){7}${H16}`, `(${H16}:){1,7}:`, `:(:${H16}){1,7}`, '::',
  ...[1, 2, 3, 4, 5, 6].map((left) => `(${H16}:){${left}}(:${H16}){1,${7 - left}}`),
].join('|');
const EGRESS_ENTRY = `^(\\*|(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|${IPV4}/(3[0-2]|[12]?[0-9])|(${IPV6})(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$`;

const ServiceName = Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$', description: 'a DNS label' });
const ServiceKey = Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?$' });

export const StaticEndpoint = Type.Union([
  Address,
  Type.Object({
    address: Address,
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  }, { additionalProperties: false }),
], { description: 'host:port or { address, labels, weight }' });

export const MeshConfigSchema = Type.Object({
  service: ServiceName,
  namespace: Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$', default: 'default' }),
  instance: Type.Optional(Type.String({ minLength: 1, description: 'this replica\'s name in logs; default service-pid' })),
  aliases: Type.Array(ServiceKey, {
    default: [], description: 'other services (service or service.namespace) this sidecar serves, e.g. a second Kubernetes Service selecting its pods; calls addressed to any other service are refused with 421 MISDIRECTED',
  }),
  app: strictObject({
    host: Type.String({ default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    connections: Type.Integer({ minimum: 1, maximum: 10000, default: 128 }),
  }, 'the local app'),
  listen: strictObject({
    outbound: Type.String({ ...Address, default: '127.0.0.1:15001' }),
    inbound: Type.String({ ...Address, default: '0.0.0.0:15002' }),
    admin: Type.String({ ...Address, default: '127.0.0.1:15000' }),
  }, 'listener addresses'),
  discovery: strictObject({
    mode: Type.Union([Type.Literal('static'), Type.Literal('dns'), Type.Literal('kubernetes')], {
      default: 'static', description: 'one of static, dns, kubernetes',
    }),
    static: Type.Record(ServiceKey, Type.Array(StaticEndpoint), {
      default: {},
      additionalProperties: false,
      description: 'service -> peer sidecars\' inbound addresses',
    }),
    dns: strictObject({
      services: Type.Array(ServiceKey, { default: [], description: 'services (service or service.namespace) resolved at start-up; others are looked up on first use' }),
      nameTemplate: Type.String({ minLength: 1, default: '{service}.{namespace}.svc.{clusterDomain}', description: 'the DNS name of a service; {service}, {namespace} and {clusterDomain} are replaced' }),
      clusterDomain: Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$', default: 'cluster.local', description: 'a DNS domain' }),
      inboundPort: Type.Integer({ minimum: 1, maximum: 65535, default: 15002, description: 'the peer sidecars\' inbound port' }),
      servers: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'DNS servers (ip or ip:port); empty: the system\'s' }),
      recordTypes: Type.Array(Type.Union([Type.Literal('A'), Type.Literal('AAAA')]), { minItems: 1, default: ['A', 'AAAA'], description: 'A, AAAA or both' }),
      minInterval: Type.Union([...Duration.anyOf], { description: Duration.description, default: '1s' }),
      maxInterval: Type.Union([...Duration.anyOf], { description: Duration.description, default: '30s' }),
      timeout: Type.Union([...Duration.anyOf], { description: Duration.description, default: '2s' }),
    }, 'discovery.mode dns: A/AAAA records of (headless) Services'),
    kubernetes: strictObject({
      namespaces: Type.Array(Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' }), { default: [], description: 'namespaces watched; empty: all' }),
      inboundPort: Type.Integer({ minimum: 1, maximum: 65535, default: 15002, description: 'the peer sidecars\' inbound port when an EndpointSlice has no port named discovery.kubernetes.portName' }),
      portName: Type.String({ minLength: 1, default: 'mcp-inbound', description: 'EndpointSlice port name of the sidecars\' inbound port' }),
      podLabels: Type.Boolean({ default: true, description: 'watch pods to give endpoints their pod\'s labels (for subsets)' }),
      kubeconfig: Type.Optional(Type.String({ minLength: 1, description: 'a kubeconfig file; default: the in-cluster service account' })),
      server: Type.Optional(Type.String({ pattern: '^https?://', description: 'an API server URL used without credentials (kubectl proxy, tests)' })),
    }, 'discovery.mode kubernetes: EndpointSlices watched through the API server'),
  }, 'where the peers are'),
  policies: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'policy files or folders' }),
  timeouts: strictObject({
    connect: Type.Union([...Duration.anyOf], { description: Duration.description, default: '1s' }),
    request: Type.Union([...Duration.anyOf], { description: Duration.description, default: '15s' }),
    streamIdle: Type.Union([...Duration.anyOf], { description: Duration.description, default: '5m' }),
  }, 'timeouts'),
  limits: strictObject({
    maxBodyBytes: Type.Integer({ minimum: 0, default: 1073741824, description: '0 means no limit' }),
    inlineBodyBytes: Type.Integer({ minimum: 0, maximum: 4194304, default: 65536 }),
    maxHeaderBytes: Type.Integer({ minimum: 1024, maximum: 1048576, default: 32768, description: 'largest request head (request line and headers) the app may send' }),
    maxStreamsPerPeer: Type.Integer({ minimum: 1, maximum: 100000, default: 1000, description: 'most streamed calls (SSE, large bodies) one peer sidecar may have open here at once' }),
    headerTimeout: Type.Union([...Duration.anyOf], { description: `how long the app may take to send a whole request head (slow clients); ${Duration.description}`, default: '10s' }),
    maxSessions: Type.Integer({ minimum: 0, maximum: 10000000, default: 10000, description: 'most MCP sessions the local app (an MCP server) may hold at once; a new one beyond it is closed again and refused with 503 SESSION_LIMIT; 0 means no limit' }),
    sessionIdleTimeout: Type.Union([...Duration.anyOf], { description: `an MCP session with no request for this long no longer counts against limits.maxSessions; ${Duration.description}`, default: '30m' }),
    maxInboundConnections: Type.Integer({ minimum: 0, maximum: 1000000, default: 1024, description: 'most connections peers may have open to the inbound port at once; one more is closed as soon as it is accepted; 0 means no limit' }),
    maxConnectionsPerPeer: Type.Integer({ minimum: 0, maximum: 1000000, default: 16, description: 'most connections one remote address may have open to the inbound port at once (a peer sidecar needs one, two while it rotates certificates); one more is closed as soon as it is accepted; 0 means no limit' }),
    inboundHandshakeTimeout: Type.Union([...Duration.anyOf], { description: `an inbound connection that has not started a call this long after it was accepted (TLS handshake, HTTP/2 preface and the first call's headers) is closed; 0 means no limit; ${Duration.description}`, default: '10s' }),
    inboundIdleTimeout: Type.Union([...Duration.anyOf], { description: `an inbound connection with no open call (no link, no stream) for this long is closed (HTTP/2 GOAWAY); 0 means never; ${Duration.description}`, default: '5m' }),
  }, 'body limits'),
  link: strictObject({
    batchMaxCount: Type.Integer({ minimum: 1, maximum: 10000, default: 128 }),
    batchMaxBytes: Type.Integer({ minimum: 1024, default: 1048576 }),
    linger: Type.Union([...Duration.anyOf], { description: Duration.description, default: 0 }),
    heartbeatInterval: Type.Union([...Duration.anyOf], { description: Duration.description, default: '1s' }),
    unhealthyAfter: Type.Union([...Duration.anyOf], { description: Duration.description, default: '3s' }),
    reconnectBase: Type.Union([...Duration.anyOf], { description: Duration.description, default: '100ms' }),
    reconnectMax: Type.Union([...Duration.anyOf], { description: Duration.description, default: '5s' }),
  }, 'sidecar-to-sidecar links'),
  shutdown: strictObject({
    grace: Type.Union([...Duration.anyOf], { description: Duration.description, default: '5s' }),
    waitForApp: Type.Boolean({ default: true, description: 'on SIGTERM, keep serving the app\'s outbound calls until its port closes (or the grace ends)' }),
  }, 'shutdown'),
  mcp: strictObject({
    tokenKey: Type.Optional(Type.String({
      minLength: 32,
      description: 'a secret of at least 32 characters, the same in every sidecar of the mesh',
    })),
  }, 'MCP session affinity'),
  egress: strictObject({
    allow: Type.Array(Type.String({ pattern: EGRESS_ENTRY }), {
      default: [], description: 'hosts outside the mesh the app may reach through the sidecar: names, *.domain, * for any, or addresses and CIDR ranges (10.0.0.0/8, fd00::/8); private addresses only when a name or range entry names them',
    }),
  }, 'calls to hosts outside the mesh'),
  storage: strictObject({
    dir: Type.Optional(Type.String({
      minLength: 1,
      description: 'data directory of the async outbox and of the record of received messages, one per sidecar; default mcp-mesh-data/<service>.<namespace>',
    })),
    maxBytes: Type.Integer({ minimum: 0, default: 0, description: 'quota of the data directory\'s database; beyond it async requests get 507 STORAGE_FULL; 0 means no quota' }),
    maxMessageBytes: Type.Integer({ minimum: 1, maximum: 15728640, default: 4194304, description: "largest body of an async message or event (413 beyond); at most 15 MiB, so a message with its headers fits one link message (16 MiB)" }),
    retention: Type.Union([...Duration.anyOf], { description: `how long a delivered or failed message (and the answer it got) is kept for GET /mesh/v1/messages/<id>; ${Duration.description}`, default: '1h' }),
    dedupWindow: Type.Union([...Duration.anyOf], { description: `how long a received message id is remembered to drop redeliveries; keep it longer than any policy's async.maxAge; ${Duration.description}`, default: '48h' }),
    deliveryConcurrency: Type.Integer({ minimum: 1, maximum: 10000, default: 64, description: 'deliveries in flight at once per priority lane' }),
  }, 'durable storage for async calls and pub/sub'),
  tls: strictObject({
    cert: Type.Optional(Type.String({ minLength: 1, description: 'this sidecar\'s certificate (PEM), with its SPIFFE ID as URI SAN' })),
    key: Type.Optional(Type.String({ minLength: 1, description: 'the certificate\'s private key (PEM)' })),
    ca: Type.Optional(Type.String({ minLength: 1, description: 'the CA certificates (PEM) peers\' certificates must chain to' })),
    required: Type.Boolean({ default: false, description: 'refuse to start without usable certificate files (never fall back to plaintext)' }),
    trustDomain: Type.String({ pattern: '^[a-z0-9._-]+$', default: 'cluster.local', description: 'a SPIFFE trust domain (lower-case letters, digits, . _ -)' }),
    identities: Type.Record(ServiceKey, Type.Array(Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$' })), {
      default: {},
      description: 'secure naming: service -> more identities (service account, or account.namespace) whose sidecars may serve it besides the one named like the service',
    }),
  }, 'mutual TLS between sidecars'),
  log: strictObject({
    level: Type.Union(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].map((l) => Type.Literal(l)), {
      default: 'info', description: 'one of trace, debug, info, warn, error, fatal, silent',
    }),
  }, 'logging'),
}, { additionalProperties: false });

export type MeshConfigInput = Static<typeof MeshConfigSchema>;

export type { TSchema };
