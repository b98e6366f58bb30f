// Load the sidecar config: YAML file → environment overrides → schema check (with defaults) →
// resolved, frozen MeshConfig. Nothing downstream re-checks what is validated here.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Document } from 'yaml';
import { applyEnvOverrides } from './env.ts';
import { MeshConfigSchema, type MeshConfigInput } from './schema.ts';
import { parseHostPort, type HostPort } from './address.ts';
import { toMs } from './duration.ts';

export interface StaticEndpointConfig {
  address: string;
  labels: Readonly<Record<string, string>>;
  weight: number;
}

/** The resolved configuration: durations in milliseconds, addresses parsed, paths absolute. */
export interface MeshConfig {
  service: string;
  namespace: string;
  instance: string;
  app: { host: string; port: number; connections: number };
  listen: { outbound: HostPort; inbound: HostPort; admin: HostPort };
  discovery: { static: Readonly<Record<string, readonly StaticEndpointConfig[]>> };
  policies: readonly string[];
  timeouts: { connectMs: number; requestMs: number; streamIdleMs: number };
  limits: { maxBodyBytes: number; inlineBodyBytes: number };
  link: {
    batchMaxCount: number; batchMaxBytes: number; lingerMs: number;
    heartbeatIntervalMs: number; unhealthyAfterMs: number; reconnectBaseMs: number; reconnectMaxMs: number;
  };
  shutdown: { graceMs: number };
  log: { level: string };
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
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const pos = lineCounter.linePos(first.pos[0]);
    throw new ConfigError(`config error: ${label}:${pos.line}:${pos.col}: invalid YAML: ${first.message.split('\n')[0]}`);
  }
  const raw = doc.toJS() ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config error: ${label}: the top level must be a mapping`);
  const fromEnv = applyEnvOverrides(raw, env);
  if (!validate(raw)) {
    const problems = describeErrors(validate.errors ?? [], doc, lineCounter, label, fromEnv);
    throw new ConfigError(`config error: ${problems.join('\n  ')}`);
  }
  return resolve(raw as MeshConfigInput, file);
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
    app: { ...input.app },
    listen: {
      outbound: parseHostPort(input.listen.outbound),
      inbound: parseHostPort(input.listen.inbound),
      admin: parseHostPort(input.listen.admin),
    },
    discovery: { static: staticEndpoints },
    policies: input.policies.map((p) => path.resolve(base, p)),
    timeouts: {
      connectMs: toMs(input.timeouts.connect),
      requestMs: toMs(input.timeouts.request),
      streamIdleMs: toMs(input.timeouts.streamIdle),
    },
    limits: { ...input.limits },
    link: {
      batchMaxCount: input.link.batchMaxCount,
      batchMaxBytes: input.link.batchMaxBytes,
      lingerMs: toMs(input.link.linger),
      heartbeatIntervalMs: toMs(input.link.heartbeatInterval),
      unhealthyAfterMs: toMs(input.link.unhealthyAfter),
      reconnectBaseMs: toMs(input.link.reconnectBase),
      reconnectMaxMs: toMs(input.link.reconnectMax),
    },
    shutdown: { graceMs: toMs(input.shutdown.grace) },
    log: { level: input.log.level },
    file: file ? path.resolve(file) : undefined,
  };
  if (config.link.heartbeatIntervalMs <= 0) throw new ConfigError('config error: key "link.heartbeatInterval": must be greater than 0');
  if (config.link.unhealthyAfterMs <= config.link.heartbeatIntervalMs) {
    throw new ConfigError('config error: key "link.unhealthyAfter": must be longer than link.heartbeatInterval');
  }
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

// ---- turning schema errors into sentences ----

function describeErrors(errors: ErrorObject[], doc: Document, lines: LineCounter, label: string, fromEnv: string[]): string[] {
  // An anyOf failure explains itself better than each branch's failure, so branch errors are dropped.
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const kept = errors.filter((e) => e.keyword === 'anyOf' || !anyOfPaths.has(e.instancePath));
  const seen = new Set<string>();
  const out: string[] = [];
  for (const error of kept) {
    const segments = error.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    let key = segments;
    let problem: string;
    switch (error.keyword) {
      case 'additionalProperties':
        key = [...segments, String(error.params.additionalProperty)];
        problem = 'unknown key (check the spelling; see docs/configuration.md)';
        break;
      case 'required':
        key = [...segments, String(error.params.missingProperty)];
        problem = 'is required';
        break;
      case 'anyOf':
      case 'pattern':
        problem = `must be ${(error.parentSchema as { description?: string } | undefined)?.description ?? error.message}`;
        break;

      default:
        problem = error.message ?? 'is invalid';
    }
    const keyName = key.join('.') || '(top level)';
    const where = locate(doc, key, error.keyword === 'additionalProperties', lines);
    const env = fromEnv.find((v) => v === `MESH_${key.map((k) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`);
    const origin = env ? `environment variable ${env}` : where ? `${label}:${where}` : label;
    const line = `${origin}: key "${keyName}" ${problem}`;
    if (!seen.has(line)) out.push(line);
    seen.add(line);
  }
  return out;
}

function locate(doc: Document, key: string[], atKey: boolean, lines: LineCounter): string | undefined {
  let node: unknown = doc.contents;
  let range: [number, number, number] | undefined;
  for (const segment of key) {
    if (!isMap(node)) break;
    const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === segment);
    if (!pair || !isPair(pair)) break;
    const target = atKey ? pair.key : pair.value;
    range = (target as { range?: [number, number, number] } | null)?.range ?? range;
    node = pair.value;
  }
  if (!range) return undefined;
  const pos = lines.linePos(range[0]);
  return `${pos.line}:${pos.col}`;
}
