// The built-in policy: what every call gets with no policy file at all, where each value comes
// from, and that the schema, the field table and EffectivePolicy cover the same fields.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compilePolicies, FIELDS, specSchemaAt } from '../../../sidecar/src/policy/resolve.ts';
import { PolicySpecSchema } from '../../../sidecar/src/policy/schema.ts';
import { PolicyStore } from '../../../sidecar/src/policy/store.ts';
import type { EffectivePolicy } from '../../../sidecar/src/policy/types.ts';
import { configDefaults } from '../../../sidecar/src/policy/validate.ts';
import { DEFAULTS, memoryLogger } from '../../helpers/policies.ts';

const EVERY_5XX = Array.from({ length: 100 }, (_, i) => 500 + i);

const BUILT_IN: EffectivePolicy = {
  route: 'default',
  timeouts: { connectMs: 1000, perTryMs: 0, overallMs: 15000, streamIdleMs: 300000 },
  retries: {
    attempts: 3,
    backoffBaseMs: 25,
    backoffMaxMs: 250,
    retryOn: ['connect-failure', 'refused-stream', 'reset'],
    statusCodes: [],
    nonIdempotent: false,
    maxReplayBodyBytes: 65536,
    honorRetryAfter: true,
    budget: { ratio: 0.2, minPerSecond: 10, windowMs: 10000 },
  },
  circuitBreaker: { enabled: true, errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindowMs: 10000, resetTimeoutMs: 5000, failureStatuses: EVERY_5XX },
  outlierDetection: {
    enabled: true, consecutiveFailures: 5, intervalMs: 10000, baseEjectionMs: 30000, maxEjectionMs: 300000, maxEjectionPercent: 10,
    successRate: { enabled: true, minRequests: 100, stdevFactor: 1.9 },
  },
  loadBalancer: {
    policy: 'p2c-ewma', ewmaDecayMs: 10000, ewmaDefaultRttMs: 30,
    consistentHash: { hashOn: [{ source: true }], virtualNodes: 2048, boundedLoadFactor: 1.25 },
  },
  subsets: [],
  headerRoutes: [],
  concurrency: { maxInFlight: 0, maxQueue: 0, retryAfterSeconds: 1 },
  mcp: { affinity: true },
  priority: 'medium',
  compression: { algorithm: 'none', minBytes: 1024 },
  access: { allow: [], defaultDeny: false },
  async: { attempts: 10, backoffBaseMs: 1000, backoffMaxMs: 60000, maxAgeMs: 86400000, attemptTimeoutMs: 30000 },
  subscriptions: [],
};

/** Dotted paths of the leaves (values and lists) of an object. */
function leaves(value: object, prefix = ''): string[] {
  return Object.entries(value).flatMap(([key, child]) => child !== null && typeof child === 'object' && !Array.isArray(child)
    ? leaves(child as object, `${prefix}${key}.`)
    : [`${prefix}${key}`]);
}

/** Keys (under spec) of every setting in the schema: leaves, and lists of mappings as a whole. */
function schemaSettings(node: { properties?: Record<string, unknown>; type?: string }, prefix: string[] = []): string[] {
  return Object.entries(node.properties ?? {}).flatMap(([key, child]) => {
    const c = child as { properties?: Record<string, unknown>; type?: string };
    return c.type === 'object' && c.properties ? schemaSettings(c, [...prefix, key]) : [[...prefix, key].join('.')];
  });
}

describe('built-in defaults (no policy file)', () => {
  it('are the documented values', () => {
    const { table, problems } = compilePolicies({ policies: [] }, DEFAULTS);
    assert.deepEqual(problems, []);
    assert.deepEqual(table.defaults, BUILT_IN);
  });

  it('take the three timeouts from the sidecar config, and say so', () => {
    const { table } = compilePolicies({ policies: [] }, { namespace: 'shop', timeouts: { connectMs: 250, requestMs: 2000, streamIdleMs: 60000 } });
    assert.deepEqual(table.defaults.timeouts, { connectMs: 250, perTryMs: 0, overallMs: 2000, streamIdleMs: 60000 });
    const { sources } = table.dump().defaults;
    assert.equal(sources['timeouts.connectMs'], 'sidecar config');
    assert.equal(sources['timeouts.overallMs'], 'sidecar config');
    assert.equal(sources['timeouts.streamIdleMs'], 'sidecar config');
    assert.equal(sources['timeouts.perTryMs'], 'default');
  });

  it('give every value a source: "default" except the config timeouts', () => {
    const { sources, policy } = compilePolicies({ policies: [] }, DEFAULTS).table.dump().defaults;
    const fromConfig = ['timeouts.connectMs', 'timeouts.overallMs', 'timeouts.streamIdleMs'];
    assert.deepEqual(Object.keys(sources).sort(), leaves(policy).filter((l) => l !== 'route').sort());
    for (const [key, source] of Object.entries(sources)) assert.equal(source, fromConfig.includes(key) ? 'sidecar config' : 'default', key);
  });

  it('are what a store with no policy paths resolves for any service', () => {
    const store = PolicyStore.load([], DEFAULTS, memoryLogger(), { watch: false });
    assert.deepEqual(store.resolve('payments', 'default', { method: 'GET', path: '/', headers: [] }), BUILT_IN);
    assert.equal(store.resolve('orders', 'shop', { method: 'POST', path: '/x', headers: {} }), store.defaults, 'one precomputed object');
  });

  it('are deeply frozen', () => {
    const policy = compilePolicies({ policies: [] }, DEFAULTS).table.defaults;
    for (const value of [policy, policy.timeouts, policy.retries, policy.retries.retryOn, policy.retries.budget, policy.circuitBreaker.failureStatuses,
      policy.outlierDetection.successRate, policy.subsets, policy.concurrency,
      policy.loadBalancer.consistentHash.hashOn, policy.loadBalancer.consistentHash.hashOn[0]!, policy.mcp]) {
      assert.ok(Object.isFrozen(value), JSON.stringify(value).slice(0, 60));
    }
    assert.throws(() => { (policy.retries as { attempts: number }).attempts = 9; }, TypeError);
  });

  it('configDefaults() (used by policy validate) matches the sidecar config schema defaults', () => {
    assert.deepEqual(configDefaults(), DEFAULTS);
  });
});

describe('one field table joins the schema and EffectivePolicy', () => {
  it('every setting in the schema sets a field, and every field is set by one setting', () => {
    const settings = schemaSettings(PolicySpecSchema).filter((k) => !['service', 'namespace'].includes(k) && !k.startsWith('route.'));
    assert.deepEqual(FIELDS.map((f) => f.spec.join('.')).sort(), settings.sort());
    const effectiveLeaves = leaves(BUILT_IN).filter((l) => l !== 'route');
    assert.deepEqual(FIELDS.map((f) => f.effective).sort(), effectiveLeaves.sort());
  });

  it('every field with a fixed default has it in the schema (the other three come from the sidecar config)', () => {
    for (const f of FIELDS) {
      const hasDefault = specSchemaAt(f.spec)?.default !== undefined;
      assert.equal(hasDefault, f.fromConfig === undefined, f.spec.join('.'));
    }
  });
});
