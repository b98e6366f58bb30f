// Environment overrides: every leaf key of the config has a variable named MESH_ + its path in
// upper snake case (app.port → MESH_APP_PORT, link.batchMaxCount → MESH_LINK_BATCH_MAX_COUNT), except
// for the few named in NAMED (storage.dir → MESH_DATA_DIR).
// Precedence: environment, then file, then schema default. docs/configuration.md lists them all
// (test/unit/config/env.test.ts keeps the list and the doc in step).
import type { TSchema } from '@sinclair/typebox';
import { MeshConfigSchema } from './schema.ts';

export interface EnvOverride {
  variable: string;
  path: string[];
  /** How the string value becomes a config value. */
  kind: 'string' | 'integer' | 'boolean' | 'duration' | 'list' | 'static-endpoints' | 'service-lists';
}

/** Keys whose variable has a name of its own rather than the derived one. */
const NAMED: Readonly<Record<string, string>> = {
  'storage.dir': 'MESH_DATA_DIR', // the name a container image or chart sets for a data volume
};

function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

function kindOf(schema: TSchema, path: string[]): EnvOverride['kind'] {
  if (path.join('.') === 'discovery.static') return 'static-endpoints';
  if (path.join('.') === 'tls.identities') return 'service-lists';
  if (schema.type === 'integer') return 'integer';
  if (schema.type === 'array') return 'list';
  if (schema.type === 'boolean') return 'boolean';
  if (Array.isArray(schema.anyOf) && schema.anyOf.some((s: TSchema) => s.type === 'integer')) return 'duration';
  return 'string';
}

function collect(schema: TSchema, path: string[], out: EnvOverride[]): void {
  const isNestedObject = schema.type === 'object' && schema.properties && path.join('.') !== 'discovery.static';
  if (isNestedObject) {
    for (const [key, child] of Object.entries(schema.properties as Record<string, TSchema>)) collect(child, [...path, key], out);
    return;
  }
  out.push({ variable: NAMED[path.join('.')] ?? `MESH_${path.map(snake).join('_')}`, path, kind: kindOf(schema, path) });
}

export const ENV_OVERRIDES: readonly EnvOverride[] = (() => {
  const out: EnvOverride[] = [];
  collect(MeshConfigSchema, [], out);
  return out;
})();

function parseValue(kind: EnvOverride['kind'], raw: string): unknown {
  switch (kind) {
    case 'integer': return /^-?[0-9]+$/.test(raw.trim()) ? Number(raw) : raw;
    case 'duration': return /^[0-9]+$/.test(raw.trim()) ? Number(raw) : raw.trim();
    case 'list': return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'boolean': return raw.trim() === 'true' ? true : raw.trim() === 'false' ? false : raw;
    // "payments=127.0.0.1:25002,127.0.0.1:26002;orders=127.0.0.1:27002", "payments=payments-v2,billing.shop"
    case 'static-endpoints':
    case 'service-lists': return Object.fromEntries(raw.split(';').filter((s) => s.trim()).map((entry) => {
      const [service = '', addresses = ''] = entry.split('=');
      return [service.trim(), addresses.split(',').map((a) => a.trim()).filter(Boolean)];
    }));
    default: return raw;
  }
}

/** Writes every MESH_* override found in `env` into `target` (a plain parsed config object). */
export function applyEnvOverrides(target: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  const applied: string[] = [];
  for (const override of ENV_OVERRIDES) {
    const raw = env[override.variable];
    if (raw === undefined) continue;
    let node = target;
    for (const key of override.path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[override.path.at(-1)!] = parseValue(override.kind, raw);
    applied.push(override.variable);
  }
  return applied;
}
