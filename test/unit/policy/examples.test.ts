// Every example under policies/examples/ loads, on its own and all together (as one folder would),
// and the examples between them set every field of the schema: documentation that cannot rot.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readPolicySet } from '../../../sidecar/src/policy/load.ts';
import { FIELDS } from '../../../sidecar/src/policy/resolve.ts';
import { PolicyStore } from '../../../sidecar/src/policy/store.ts';
import { DEFAULTS, memoryLogger } from '../../helpers/policies.ts';

const dir = path.join(import.meta.dirname, '../../../policies/examples');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();

describe('policies/examples', () => {
  it('there are examples', () => {
    assert.ok(files.length >= 8, files.join(', '));
  });

  for (const file of files) {
    it(`${file} loads`, () => {
      const store = PolicyStore.load([path.join(dir, file)], DEFAULTS, memoryLogger(), { watch: false });
      const { files: loaded } = store.dump();
      assert.equal(loaded.length, 1);
      assert.ok(loaded[0]!.policies.length >= 1, 'holds a policy');
      assert.ok(store.dump().services.length >= 1, 'sets something for a service');
    });
  }

  it('mcp.yaml: routes stateless MCP requests by their Mcp-Method and Mcp-Name headers', () => {
    const store = PolicyStore.load([path.join(dir, 'mcp.yaml')], DEFAULTS, memoryLogger(), { watch: false });
    const route = (headers: [string, string][]) => store.resolve('assistant', 'default', {
      method: 'POST', path: '/mcp', headers: headers.map(([name, value]) => ({ name, value })),
    });
    assert.equal(route([['mcp-method', 'tools/call'], ['mcp-name', 'build_report']]).route, 'report-tool');
    assert.equal(route([['mcp-method', 'tools/call'], ['mcp-name', 'search']]).route, 'tool-calls');
    assert.equal(route([['mcp-method', 'tools/list']]).route, 'default');
    assert.deepEqual(route([]).loadBalancer.consistentHash.hashOn, [{ header: 'x-tenant' }, { source: true }]);
  });

  it('load together, as a folder', () => {
    const store = PolicyStore.load([dir], DEFAULTS, memoryLogger(), { watch: false });
    assert.equal(store.dump().files.length, files.length);
  });

  it('load together in any sidecar namespace (documents without one take the sidecar\'s: shop is the examples\' own)', () => {
    for (const namespace of ['default', 'shop']) {
      const store = PolicyStore.load([dir], { ...DEFAULTS, namespace }, memoryLogger(), { watch: false });
      assert.equal(store.dump().files.length, files.length, namespace);
    }
  });

  it('set every field of the schema between them, and a route', () => {
    const { policies, problems } = readPolicySet([dir]);
    assert.deepEqual(problems, []);
    const isSet = (keys: readonly string[]) => policies.some((p) => keys.reduce<unknown>((node, k) => (node as Record<string, unknown> | undefined)?.[k], p.spec) !== undefined);
    const unset = FIELDS.filter((f) => !isSet(f.spec)).map((f) => f.spec.join('.'));
    assert.deepEqual(unset, []);
    for (const key of [['namespace'], ['route', 'match', 'path', 'exact'], ['route', 'match', 'path', 'prefix'], ['route', 'match', 'methods'], ['route', 'match', 'headers']]) {
      assert.ok(isSet(key), key.join('.'));
    }
  });
});
