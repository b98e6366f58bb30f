// Policies on a running sidecar: /config_dump shows the defaults and, with files, the effective policy
// per service and route with the file:line:col of each value; a changed file applies from the next
// call; a broken edit is rejected, logged and counted, and the running policy stays.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { adminJson, useFleet } from '../helpers/fleet.ts';
import { documents, policy } from '../helpers/policies.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import type { PolicyDump } from '../../sidecar/src/policy/store.ts';

type ConfigDump = { config: { policies: string[] }; policies: PolicyDump };

/** "file:line:col" of the value (or the key) on the first line of `text` that starts, after its indent, with `key:`. */
function positionOf(file: string, text: string, key: string, of: 'value' | 'key' = 'value'): string {
  const lines = text.split('\n');
  const index = lines.findIndex((l) => l.trimStart().startsWith(`${key}:`));
  assert.ok(index >= 0, `no line with ${key}: in the test's own policy text`);
  const keyAt = lines[index]!.indexOf(key);
  const col = of === 'key' ? keyAt + 1 : keyAt + key.length + 3; // 1-based; the value follows ": "
  return `${file}:${index + 1}:${col}`;
}

describe('/config_dump with no policy files', { timeout: 30_000 }, () => {
  let sidecar: SidecarProcess;
  before(async () => { sidecar = await SidecarProcess.start({ config: sidecarConfig({ service: 'plain', appPort: 1 }) }); });
  after(() => sidecar?.stop());

  test('shows the built-in defaults, each from "default" or "sidecar config", and no services', async () => {
    const dump = await adminJson<ConfigDump>(sidecar, '/config_dump');
    assert.deepEqual(dump.config.policies, []);
    const { generation, files, services, reload, defaults } = dump.policies;
    assert.deepEqual({ generation, files, services, reload }, { generation: 1, files: [], services: [], reload: { failures: 0, lastError: null } });
    const p = defaults.policy;
    assert.deepEqual(p.timeouts, { connectMs: 1000, perTryMs: 0, overallMs: 15000, streamIdleMs: 300000 });
    assert.deepEqual({ attempts: p.retries.attempts, retryOn: p.retries.retryOn, nonIdempotent: p.retries.nonIdempotent, budget: p.retries.budget },
      { attempts: 3, retryOn: ['connect-failure', 'refused-stream', 'reset'], nonIdempotent: false, budget: { ratio: 0.2, minPerSecond: 10, windowMs: 10000 } });
    assert.equal(p.circuitBreaker.enabled, true);
    assert.equal(p.circuitBreaker.volumeThreshold, 20);
    assert.equal(p.circuitBreaker.failureStatuses.length, 100, 'every 5xx, and nothing else');
    assert.ok(p.circuitBreaker.failureStatuses.every((s) => s >= 500 && s <= 599));
    assert.equal(p.outlierDetection.enabled, true);
    assert.equal(p.loadBalancer.policy, 'p2c-ewma');
    assert.deepEqual(p.concurrency, { maxInFlight: 0, maxQueue: 0, retryAfterSeconds: 1 });
    const sources = new Set(Object.values(defaults.sources));
    assert.deepEqual([...sources].sort(), ['default', 'sidecar config']);
    assert.equal(defaults.sources['timeouts.overallMs'], 'sidecar config');
    assert.equal(defaults.sources['retries.attempts'], 'default');
  });
});

describe('policy files on a running sidecar', { timeout: 30_000 }, () => {
  const FILE = 'search.yaml';
  const serviceWide = policy('search', 'search', '  retries:\n    attempts: 2\n  loadBalancer:\n    policy: round-robin\n');
  const slowRoute = (spec: string) => policy('search-slow', 'search', `  route:\n    name: slow\n    match:\n      path:\n        prefix: /delay\n  timeouts:\n${spec}`);
  const original = documents(serviceWide, slowRoute('    request: 100ms\n'));
  const started = useFleet({ service: 'search', replicas: 1, policies: { [FILE]: original } });

  test('/config_dump: the effective policy of the service and of its route, and the file:line:col of each value', async () => {
    const fleet = started();
    const file = fleet.policyFile(FILE);
    const { policies } = await adminJson<ConfigDump>(fleet.caller, '/config_dump');
    assert.deepEqual(policies.files, [{ file, policies: ['search', 'search-slow'] }]);
    assert.equal(policies.services.length, 1);
    const search = policies.services[0]!;
    assert.deepEqual({ service: search.service, namespace: search.namespace, serviceWide: search.serviceWide }, { service: 'search', namespace: 'default', serviceWide: { name: 'search', file } });
    // Service-wide: its own values from the file, the rest from the defaults.
    assert.equal(search.effective.policy.retries.attempts, 2);
    assert.equal(search.effective.policy.loadBalancer.policy, 'round-robin');
    assert.equal(search.effective.policy.timeouts.overallMs, 15000);
    assert.equal(search.effective.sources['retries.attempts'], positionOf(file, original, 'attempts'));
    assert.equal(search.effective.sources['loadBalancer.policy'], positionOf(file, original, 'policy'));
    assert.equal(search.effective.sources['timeouts.overallMs'], 'sidecar config');
    assert.equal(search.effective.sources['circuitBreaker.volumeThreshold'], 'default');
    // The route: its timeout from its own document, the rest inherited from the service-wide one.
    assert.equal(search.routes.length, 1);
    const route = search.routes[0]!;
    assert.deepEqual({ name: route.name, policy: route.policy, file: route.file, match: route.match }, { name: 'slow', policy: 'search-slow', file, match: { path: { prefix: '/delay' } } });
    assert.equal(route.effective.policy.timeouts.overallMs, 100);
    assert.equal(route.effective.policy.retries.attempts, 2);
    assert.equal(route.effective.sources['timeouts.overallMs'], positionOf(file, original, 'request'));
    assert.equal(route.effective.sources['retries.attempts'], positionOf(file, original, 'attempts'));
    assert.equal(route.effective.sources['retries.retryOn'], 'default');
  });

  test('hot reload: a route timeout raised on disk applies to the next call; a broken edit is rejected and the running policy stays', async () => {
    const fleet = started();
    const file = fleet.policyFile(FILE);

    // 100 ms against an app that takes 300 ms.
    const short = await fleet.call('/delay/300');
    assert.equal(short.status, 504, `under the 100 ms route timeout: ${short.status} ${short.body}`);
    assert.equal(short.code, 'DEADLINE_EXCEEDED');
    // Given up at the route's 100 ms (named in the error), before the app's answer at 300 ms, which
    // would have been a 200. A timer never fires early, so the lower bound cannot flake.
    assert.match(short.body, /within 100 ms|caller's deadline \((9\d|100) ms\)/, 'the error names the route timeout');
    assert.ok(short.ms >= 95, `not before the deadline (${short.ms.toFixed(0)} ms)`);
    assert.equal((await fleet.call('/work/other')).status, 200, 'other paths are not under the route');

    let mark = fleet.caller.mark();
    fleet.writePolicy(FILE, documents(serviceWide, slowRoute('    request: 2s\n')));
    const reloaded = await fleet.caller.waitForLog('policies reloaded', { since: mark });
    assert.equal(reloaded.generation, 2);
    const long = await fleet.call('/delay/300');
    assert.equal(long.status, 200, `the next call runs under 2 s: ${long.status} ${long.body}`);
    assert.equal(long.body, 'after 300 ms', 'the app\'s own answer, given after its 300 ms');

    // A typo in the key: as written it would have put the timeout back to 100 ms.
    mark = fleet.caller.mark();
    const broken = documents(serviceWide, slowRoute('    requst: 100ms\n'));
    fleet.writePolicy(FILE, broken);
    const rejected = await fleet.caller.waitForLog((l) => l.code === 'POLICY_INVALID', { since: mark });
    const where = positionOf(file, broken, 'requst', 'key');
    assert.match(rejected.msg, /rejected, the running policies stay/);
    assert.ok((rejected.problems as string[]).some((p) => p.startsWith(`${where}: spec.timeouts.requst: unknown key`)), `logged with file:line:col: ${JSON.stringify(rejected.problems)}`);
    const still = await fleet.call('/delay/300');
    assert.equal(still.status, 200, `the 2 s policy still runs: ${still.status} ${still.body}`);

    const { policies } = await adminJson<ConfigDump>(fleet.caller, '/config_dump');
    assert.equal(policies.generation, 2, 'no new set was applied');
    assert.ok(policies.reload.failures >= 1);
    assert.ok(policies.reload.lastError!.problems.some((p) => p.startsWith(`${where}: `)), `last error: ${JSON.stringify(policies.reload.lastError)}`);
    assert.equal(policies.services[0]!.routes[0]!.effective.policy.timeouts.overallMs, 2000);
    assert.ok(!fleet.caller.logs.slice(mark).some((l) => l.msg === 'policies reloaded'), 'the broken set was never applied');
  });
});
