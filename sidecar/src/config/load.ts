// Load the sidecar config: YAML file → environment overrides → schema check (with defaults) →
// resolved, frozen MeshConfig. Nothing downstream re-checks what is validated here.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { applyEnvOverrides, ENV_OVERRIDES } from './env.ts';
import { MeshConfigSchema, type MeshConfigInput } from './schema.ts';
import { parseHostPort, type HostPort } from './address.ts';
import { toMs } from './duration.ts';
import { documentData, locateErrors } from './yaml-errors.ts';

export interface StaticEndpointConfig {
  address: string;
  labels: Readonly<Record<string, string>>;
  weight: number;
}

export interface DnsDiscoveryConfig {
  /** "service" or "service.namespace", resolved at start-up. */
  services: readonly string[];
  nameTemplate: string;
  clusterDomain: string;
  inboundPort: number;
  servers: readonly string[];
  recordTypes: readonly ('A' | 'AAAA')[];
  minIntervalMs: number;
  maxIntervalMs: number;
  timeoutMs: number;
}

export interface KubernetesDiscoveryConfig {
  /** Empty: all namespaces. */
  namespaces: readonly string[];
  inboundPort: number;
  portName: string;
  podLabels: boolean;
  /** Absolute path of a kubeconfig file, if given. */
  kubeconfig: string | undefined;
  /** API server URL used without credentials, if given. */
  server: string | undefined;
}

export interface DiscoveryConfig {
  mode: 'static' | 'dns' | 'kubernetes';
  static: Readonly<Record<string, readonly StaticEndpointConfig[]>>;
  dns: DnsDiscoveryConfig;
  kubernetes: KubernetesDiscoveryConfig;
}

/** The resolved configuration: durations in milliseconds, addresses parsed, paths absolute. */
export interface MeshConfig {
  service: string;
  namespace: string;
  instance: string;
  /** Other services this sidecar serves ("name.namespace"): destinations it accepts besides its own. */
  aliases: readonly string[];
  app: { host: string; port: number; connections: number };
  listen: { outbound: HostPort; inbound: HostPort; admin: HostPort };
  discovery: DiscoveryConfig;
  policies: readonly string[];
  timeouts: { connectMs: number; requestMs: number; streamIdleMs: number };
  limits: { maxBodyBytes: number; inlineBodyBytes: number; maxHeaderBytes: number; headerTimeoutMs: number; maxStreamsPerPeer: number; maxSessions: number; sessionIdleTimeoutMs: number;
    maxInboundConnections: number; maxConnectionsPerPeer: number; inboundHandshakeTimeoutMs: number; inboundIdleTimeoutMs: number };
  link: {
    batchMaxCount: number; batchMaxBytes: number; lingerMs: number;
    heartbeatIntervalMs: number; unhealthyAfterMs: number; reconnectBaseMs: number; reconnectMaxMs: number;
  };
  /** `waitForApp`: on SIGTERM the outbound listener serves the app until its port closes (or `graceMs` passes). */
  shutdown: { graceMs: number; waitForApp: boolean };
  /** Hosts outside the mesh the app may reach (names, `*.domain`, `*`). */
  egress: { allow: readonly string[] };
  /** Durable storage of async messages; `dir` is absolute. */
  storage: { dir: string; maxBytes: number; maxMessageBytes: number; retentionMs: number; dedupWindowMs: number; deliveryConcurrency: number };
  log: { level: string };
  /** Key that signs MCP session owner tokens; undefined: a random one per sidecar (see main.ts). */
  mcp: { tokenKey: string | undefined };
  /**
   * Mutual TLS between sidecars; `files` (absolute paths) undefined: plaintext. `required`: a start
   * without usable files is an error.
   */
  tls: {
    files: { cert: string; key: string; ca: string } | undefined; required: boolean; trustDomain: string;
    /** Secure naming: service → more identities that may serve it (as written; security/secure-naming.ts qualifies them). */
    identities: Readonly<Record<string, readonly string[]>>;
  };
  /** The file it came from, if any (for reloads and messages). */
  file: string | undefined;
}

/** A config that cannot be used. `message` is meant to be printed to the user as it is. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false, verbose: true });
const validate = ajv.compile(MeshConfigSchema);

/** Read, override from `env`, validate and resolve. Throws ConfigError. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): MeshConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`config error: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseConfig(text, file, env);
}

export function parseConfig(text: string, file: string | undefined, env: NodeJS.ProcessEnv = {}): MeshConfig {
  const label = file ?? '<config>';
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const parsed = documentData(doc, lineCounter);
  if ('message' in parsed) throw new ConfigError(`config error: ${label}:${parsed.at.line}:${parsed.at.col}: invalid YAML: ${parsed.message}`);
  const raw = parsed.data ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    const at = lineCounter.linePos(doc.contents?.range[0] ?? 0);
    throw new ConfigError(`config error: ${label}:${at.line}:${at.col}: the top level must be a mapping`);
  }
  const fromEnv = applyEnvOverrides(raw as Record<string, unknown>, env);
  if (!validate(raw)) {
    const problems = describeErrors(validate.errors ?? [], doc, lineCounter, label, fromEnv);
    throw new ConfigError(`config error: ${problems.join('\n  ')}`);
  }
  const input = raw as MeshConfigInput;
  // Rules that span keys or that the schema cannot say, reported like schema errors.
  const fail = (instancePath: string, message: string): never => {
    const [problem] = describeErrors([{ keyword: 'custom', instancePath, schemaPath: '', params: {}, message }], doc, lineCounter, label, fromEnv);
    throw new ConfigError(`config error: ${problem}`);
  };
  if (toMs(input.link.heartbeatInterval) <= 0) fail('/link/heartbeatInterval', 'must be greater than 0');
  if (toMs(input.link.unhealthyAfter) <= toMs(input.link.heartbeatInterval)) fail('/link/unhealthyAfter', 'must be longer than link.heartbeatInterval');
  if (toMs(input.discovery.dns.minInterval) <= 0) fail('/discovery/dns/minInterval', 'must be greater than 0');
  if (toMs(input.discovery.dns.maxInterval) < toMs(input.discovery.dns.minInterval)) fail('/discovery/dns/maxInterval', 'must not be shorter than discovery.dns.minInterval');
  if (toMs(input.discovery.dns.timeout) <= 0) fail('/discovery/dns/timeout', 'must be greater than 0');
  const tlsKeys = (['cert', 'key', 'ca'] as const).filter((k) => input.tls[k] !== undefined);
  if (tlsKeys.length > 0 && tlsKeys.length < 3) {
    const missing = (['cert', 'key', 'ca'] as const).filter((k) => input.tls[k] === undefined);
    fail(`/tls/${missing[0]}`, `is required when tls.${tlsKeys.join(', tls.')} is set (mutual TLS needs cert, key and ca)`);
  }
  if (input.tls.required && tlsKeys.length === 0) fail('/tls/required', 'is true but tls.cert, tls.key and tls.ca are not set: mutual TLS is required and there is no certificate material (set MESH_TLS_CERT, MESH_TLS_KEY, MESH_TLS_CA)');
  return resolve(input, file);
}

function resolve(input: MeshConfigInput, file: string | undefined): MeshConfig {
  const base = file ? path.dirname(path.resolve(file)) : process.cwd();
  const staticEndpoints: Record<string, StaticEndpointConfig[]> = {};
  for (const [service, entries] of Object.entries(input.discovery.static)) {
    staticEndpoints[service] = entries.map((entry) => typeof entry === 'string'
      ? { address: entry, labels: {}, weight: 1 }
      : { address: entry.address, labels: entry.labels ?? {}, weight: entry.weight ?? 1 });
  }
  const config: MeshConfig = {
    service: input.service,
    namespace: input.namespace,
    instance: input.instance ?? `${input.service}-${process.pid}`,
    aliases: input.aliases.map((alias) => (alias.includes('.') ? alias : `${alias}.${input.namespace}`)),
    app: { ...input.app },
    listen: {
      outbound: parseHostPort(input.listen.outbound),
      inbound: parseHostPort(input.listen.inbound),
      admin: parseHostPort(input.listen.admin),
    },
    discovery: resolveDiscovery(input.discovery, staticEndpoints, base),
    policies: input.policies.map((p) => path.resolve(base, p)),
    timeouts: {
      connectMs: toMs(input.timeouts.connect),
      requestMs: toMs(input.timeouts.request),
      streamIdleMs: toMs(input.timeouts.streamIdle),
    },
    limits: {
      maxBodyBytes: input.limits.maxBodyBytes, inlineBodyBytes: input.limits.inlineBodyBytes,
      maxHeaderBytes: input.limits.maxHeaderBytes, headerTimeoutMs: toMs(input.limits.headerTimeout),
      maxStreamsPerPeer: input.limits.maxStreamsPerPeer,
      maxSessions: input.limits.maxSessions, sessionIdleTimeoutMs: toMs(input.limits.sessionIdleTimeout),
      maxInboundConnections: input.limits.maxInboundConnections, maxConnectionsPerPeer: input.limits.maxConnectionsPerPeer,
      inboundHandshakeTimeoutMs: toMs(input.limits.inboundHandshakeTimeout), inboundIdleTimeoutMs: toMs(input.limits.inboundIdleTimeout),
    },
    link: {
      batchMaxCount: input.link.batchMaxCount,
      batchMaxBytes: input.link.batchMaxBytes,
      lingerMs: toMs(input.link.linger),
      heartbeatIntervalMs: toMs(input.link.heartbeatInterval),
      unhealthyAfterMs: toMs(input.link.unhealthyAfter),
      reconnectBaseMs: toMs(input.link.reconnectBase),
      reconnectMaxMs: toMs(input.link.reconnectMax),
    },
    shutdown: { graceMs: toMs(input.shutdown.grace), waitForApp: input.shutdown.waitForApp },
    egress: { allow: [...input.egress.allow] },
    storage: {
      // A relative dir is taken from the working directory (like the policy paths from the config file's folder would
      // be surprising for a data volume given by MESH_DATA_DIR).
      dir: path.resolve(input.storage.dir ?? path.join('mcp-mesh-data', `${input.service}.${input.namespace}`)),
      maxBytes: input.storage.maxBytes,
      maxMessageBytes: input.storage.maxMessageBytes,
      retentionMs: toMs(input.storage.retention),
      dedupWindowMs: toMs(input.storage.dedupWindow),
      deliveryConcurrency: input.storage.deliveryConcurrency,
    },
    log: { level: input.log.level },
    mcp: { tokenKey: input.mcp.tokenKey },
    tls: {
      // Like policy paths: relative to the config file's folder.
      files: input.tls.cert !== undefined && input.tls.key !== undefined && input.tls.ca !== undefined
        ? { cert: path.resolve(base, input.tls.cert), key: path.resolve(base, input.tls.key), ca: path.resolve(base, input.tls.ca) }
        : undefined,
      required: input.tls.required,
      trustDomain: input.tls.trustDomain,
      identities: input.tls.identities,
    },
    file: file ? path.resolve(file) : undefined,
  };
  return deepFreeze(config);
}

function resolveDiscovery(input: MeshConfigInput['discovery'], staticEndpoints: Record<string, StaticEndpointConfig[]>, base: string): DiscoveryConfig {
  const { dns, kubernetes } = input;
  return {
    mode: input.mode,
    static: staticEndpoints,
    dns: {
      services: [...dns.services],
      nameTemplate: dns.nameTemplate,
      clusterDomain: dns.clusterDomain,
      inboundPort: dns.inboundPort,
      servers: [...dns.servers],
      recordTypes: [...new Set(dns.recordTypes)],
      minIntervalMs: toMs(dns.minInterval),
      maxIntervalMs: toMs(dns.maxInterval),
      timeoutMs: toMs(dns.timeout),
    },
    kubernetes: {
      namespaces: [...new Set(kubernetes.namespaces)],
      inboundPort: kubernetes.inboundPort,
      portName: kubernetes.portName,
      podLabels: kubernetes.podLabels,
      // Like policy paths: relative to the config file's folder.
      kubeconfig: kubernetes.kubeconfig === undefined ? undefined : path.resolve(base, kubernetes.kubeconfig),
      server: kubernetes.server,
    },
  };
}

/** Freeze an object and everything it holds (configs and policies are read-only once built). */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

// ---- turning schema errors into sentences ----

function describeErrors(errors: ErrorObject[], doc: Document, lines: LineCounter, label: string, fromEnv: string[]): string[] {
  const out: string[] = [];
  for (const { key, at, error } of locateErrors(errors, doc, lines)) {
    let problem: string;
    switch (error.keyword) {
      case 'additionalProperties':
        problem = 'unknown key (check the spelling; see docs/configuration.md)';
        break;
      case 'required':
        problem = 'is required';
        break;
      case 'anyOf':
      case 'pattern': {
        const description = (error.parentSchema as { description?: string } | undefined)?.description;
        problem = description ? `must be ${description}` : 'has an invalid value';
        break;
      }
      default:
        problem = error.message ?? 'is invalid';
    }
    const keyName = key.join('.') || '(top level)';
    // A value that came from the environment is blamed on its variable, not on the file.
    const env = ENV_OVERRIDES.find((o) => fromEnv.includes(o.variable) && o.path.every((p, i) => key[i] === p));
    const origin = env ? `environment variable ${env.variable}` : at ? `${label}:${at.line}:${at.col}` : label;
    const line = `${origin}: key "${keyName}" ${problem}`;
    if (!out.includes(line)) out.push(line);
  }
  return out;
}
