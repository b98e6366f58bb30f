// The broken-policy corpus: every file under test/fixtures/policies/broken/ is rejected with exactly
// one problem, at the expected line and column, naming the field in words. Each row is the whole
// line `mcp-mesh policy validate` prints after the file name; {dir} stands for the fixtures folder.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { validatePolicies } from '../../../sidecar/src/policy/validate.ts';

const BROKEN_DIR = path.join(import.meta.dirname, '../../fixtures/policies/broken');

const BROKEN: [name: string, expected: string][] = [
  ['alias-bomb', '10:12: invalid YAML: aliases expand too far (past the YAML reader\'s limit of 100 alias expansions; a file like this is an "alias bomb")'],
  ['attempts-not-a-number', '8:15: spec.retries.attempts: must be an integer from 1 to 10'],
  ['attempts-too-many', '8:15: spec.retries.attempts: must be an integer from 1 to 10'],
  ['attempts-zero', '8:15: spec.retries.attempts: must be an integer from 1 to 10'],
  ['backoff-base-over-max', '9:13: spec.retries.backoff.base: the back-off base (1s, from this policy) is longer than its max (250ms, from the built-in default)'],
  ['bad-duration', '8:14: spec.timeouts.request: must be a duration such as 250ms, 1s, 5m, or milliseconds as a number'],
  ['bad-service-name', '6:12: spec.service: must be a DNS label: lower-case letters, digits and "-", at most 63 characters'],
  ['bounded-load-below-one', '10:26: spec.loadBalancer.consistentHash.boundedLoadFactor: must be a number from 1 to 100'],
  ['breaker-enabled-not-boolean', '8:14: spec.circuitBreaker.enabled: must be true or false'],
  ['breaker-threshold-zero', '8:31: spec.circuitBreaker.errorThresholdPercentage: must be an integer from 1 to 100'],
  ['budget-ratio-over-one', '9:14: spec.retries.budget.ratio: must be a number from 0 to 1'],
  ['connect-timeout-zero', '8:14: spec.timeouts.connect: must be longer than 0'],
  ['consistent-hash-without-policy', '9:5: spec.loadBalancer.consistentHash: only applies to policy consistent-hash, not least-request'],
  ['duplicate-key', '9:5: invalid YAML: Map keys must be unique'],
  ['ejection-base-over-max', '8:23: spec.outlierDetection.baseEjectionTime: baseEjectionTime (10m, from this policy) is longer than maxEjectionTime (5m, from the built-in default)'],
  ['ewma-without-p2c', '9:5: spec.loadBalancer.ewma: only applies to policy p2c-ewma, not round-robin'],
  ['hash-on-empty', '10:15: spec.loadBalancer.consistentHash.hashOn: must not be an empty list'],
  ['hash-source-false', '10:26: spec.loadBalancer.consistentHash.hashOn[0].source: must be true'],
  ['hash-source-two-keys', '11:11: spec.loadBalancer.consistentHash.hashOn[0]: must be one of { header: NAME }, { query: NAME }, { cookie: NAME }, { source: true }'],
  ['hash-source-unknown', '12:11: spec.loadBalancer.consistentHash.hashOn[1]: must be one of { header: NAME }, { query: NAME }, { cookie: NAME }, { source: true }'],
  ['header-route-unknown-subset', '11:15: spec.headerRoutes[0].subset: names subset v2, which is not defined; the subsets are v1'],
  ['header-value-not-quoted', '10:28: spec.headerRoutes[0].headers.x-canary: must be text; write "true" in quotes'],
  ['invalid-yaml', '9:1: invalid YAML: All mapping items must start at the same column'],
  ['load-balancer-unknown', '8:13: spec.loadBalancer.policy: must be one of round-robin, least-request, p2c-ewma, consistent-hash'],
  ['mcp-affinity-not-boolean', '8:15: spec.mcp.affinity: must be true or false'],
  ['missing-metadata-name', '3:11: metadata.name: is required'],
  ['missing-service', '6:3: spec.service: is required'],
  ['negative-duration', '8:13: spec.timeouts.perTry: must be a duration such as 250ms, 1s, 5m, or milliseconds as a number'],
  ['not-a-mapping', '1:1: a policy document must be a mapping with apiVersion, kind, metadata and spec'],
  ['per-try-longer-than-deadline', '8:13: spec.timeouts.perTry: the per-try timeout (20s, from this policy) is longer than the overall deadline timeouts.request (15s, from the sidecar config), so it would never apply'],
  ['policy-name-twice', '12:9: metadata.name: policy payments is already defined in {dir}/policy-name-twice.yaml:4:9'],
  ['queue-without-limit', '8:15: spec.concurrency.maxQueue: a queue needs a limit: set concurrency.maxInFlight above 0, or maxQueue to 0'],
  ['retry-on-codes-without-list', '8:14: spec.retries.retryOn: retryOn lists retriable-status-codes but statusCodes is empty; list the statuses to retry'],
  ['retry-on-listed-twice', '11:9: spec.retries.retryOn: lists "reset" twice'],
  ['retry-on-unknown-condition', '8:32: spec.retries.retryOn[1]: must be one of connect-failure, refused-stream, reset, unavailable, gateway-error, 5xx, retriable-status-codes, retriable-4xx'],
  ['route-header-name-invalid', '11:9: spec.route.match.headers["x tenant"]: is not a header name (letters, digits and !#$%&\'*+-.^_`|~)'],
  ['route-header-twice', '12:9: spec.route.match.headers.x-tenant: header x-tenant is listed twice (header names are case-insensitive)'],
  ['route-inherited-header-route-lost-subset', '23:3: spec.subsets: lacks subset canary, which headerRoutes from {dir}/route-inherited-header-route-lost-subset.yaml:11:5 send requests to'],
  ['route-method-lower-case', '10:17: spec.route.match.methods[0]: must be an HTTP method in capitals, such as GET'],
  ['route-methods-empty', '10:16: spec.route.match.methods: must not be an empty list'],
  ['route-name-twice', '18:11: spec.route.name: service payments already has a route charge in {dir}/route-name-twice.yaml:8:11'],
  ['route-named-default', '8:11: spec.route.name: "default" is reserved for the service-wide policy; choose another name'],
  ['route-path-exact-and-prefix', '10:13: spec.route.match.path: must set exactly one of exact or prefix'],
  ['route-path-without-slash', '11:17: spec.route.match.path.prefix: must be a path starting with "/" (no query string)'],
  ['route-without-match', '8:5: spec.route.match: is required'],
  ['routes-tie', '19:5: spec.route.match: matches the same requests as route charge-a in {dir}/routes-tie.yaml:9:12, and neither is more specific; make one more specific (see docs/policies.md#matching)'],
  ['status-class-unknown', '9:19: spec.retries.statusCodes[0]: must be a status code from 100 to 599, or a class such as 5xx'],
  ['status-code-out-of-range', '8:28: spec.circuitBreaker.failureStatuses[1]: must be a status code from 100 to 599, or a class such as 5xx'],
  ['status-codes-without-retry-on', '8:18: spec.retries.statusCodes: statusCodes has no effect unless retryOn lists retriable-status-codes'],
  ['subset-defined-twice', '9:15: spec.subsets[1].name: subset v1 is defined twice'],
  ['subset-weights-not-100', '7:3: spec.subsets: the weights must add up to 100; they add up to 110'],
  ['subset-without-labels', '8:7: spec.subsets[0].labels: is required'],
  ['two-service-wide-policies', '14:12: spec.service: service payments (namespace default) already has a service-wide policy in {dir}/two-service-wide-policies.yaml:6:12; merge them, or narrow one with spec.route'],
  ['unknown-key-in-spec', '7:3: spec.retrys: unknown key; did you mean retries?'],
  ['unknown-key-nested', '8:5: spec.retries.atempts: unknown key; did you mean attempts?'],
  ['unknown-key-top-level', '7:1: status: unknown key; the keys allowed here are apiVersion, kind, metadata, spec'],
  ['unresolved-alias', '7:12: invalid YAML: Unresolved alias (the anchor must be set before the alias): defaults'],
  ['wrong-api-version', '1:13: apiVersion: must be mcp-mesh.io/v1'],
  ['wrong-kind', '2:7: kind: must be Policy'],
];

describe('broken policy files', () => {
  it('the corpus has at least 30 files, each one with a row here', () => {
    const files = readdirSync(BROKEN_DIR).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -'.yaml'.length)).sort();
    assert.ok(files.length >= 30, `${files.length} files`);
    assert.deepEqual(files, BROKEN.map(([name]) => name).sort());
  });

  for (const [name, expected] of BROKEN) {
    it(`${name}: ${expected.replace(/^[^ ]+ /, '').slice(0, 70)}`, () => {
      const file = path.join(BROKEN_DIR, `${name}.yaml`);
      const { ok, errors } = validatePolicies([file]);
      assert.deepEqual(errors, [`${file}:${expected.replaceAll('{dir}', BROKEN_DIR)}`]);
      assert.deepEqual(ok, [], 'a file with a problem is not reported OK');
    });
  }
});
