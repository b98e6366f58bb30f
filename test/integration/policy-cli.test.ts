// `mcp-mesh policy validate` as users run it: a real process, exit codes, one OK line per valid
// file on stdout, one `file:line:col: field: message` line per problem on stderr.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { policy } from '../helpers/policies.ts';
import { runCli } from '../helpers/sidecar-process.ts';

const BROKEN = 'test/fixtures/policies/broken';

describe('mcp-mesh policy validate', { timeout: 60_000 }, () => {
  let dir: string;
  before(() => { dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-policy-cli-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('valid files: exit 0 and one OK line per file', async () => {
    const result = await runCli(['policy', 'validate', 'policies/examples/canary.yaml', 'policies/examples/routes.yaml']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'policies/examples/canary.yaml: OK (1 policy)\npolicies/examples/routes.yaml: OK (3 policies)\n');
    assert.equal(result.stderr, '');
  });

  test('a folder: every file in it', async () => {
    const result = await runCli(['policy', 'validate', 'policies/examples']);
    assert.equal(result.code, 0, result.stderr);
    const examples = readdirSync('policies/examples').filter((f) => f.endsWith('.yaml'));
    assert.equal(result.stdout.trim().split('\n').length, examples.length, 'one OK line per example file');
    assert.match(result.stdout, /^policies\/examples\/timeouts\.yaml: OK \(1 policy\)$/m);
  });

  const broken: [file: string, line: string][] = [
    ['attempts-zero.yaml', '8:15: spec.retries.attempts: must be an integer from 1 to 10'],
    ['unknown-key-in-spec.yaml', '7:3: spec.retrys: unknown key; did you mean retries?'],
    ['invalid-yaml.yaml', '9:1: invalid YAML: All mapping items must start at the same column'],
    ['header-route-unknown-subset.yaml', '11:15: spec.headerRoutes[0].subset: names subset v2, which is not defined; the subsets are v1'],
    // The yaml package throws these without a position: still one line naming file:line:col, no stack trace.
    ['alias-bomb.yaml', '10:12: invalid YAML: aliases expand too far (past the YAML reader\'s limit of 100 alias expansions; a file like this is an "alias bomb")'],
    ['unresolved-alias.yaml', '7:12: invalid YAML: Unresolved alias (the anchor must be set before the alias): defaults'],
  ];
  for (const [file, line] of broken) {
    test(`${file}: exit 1, ${line}`, async () => {
      const result = await runCli(['policy', 'validate', `${BROKEN}/${file}`]);
      assert.equal(result.code, 1);
      assert.equal(result.stderr, `${BROKEN}/${file}:${line}\n`);
      assert.equal(result.stdout, '');
    });
  }

  test('several files: every problem of every file, OK for the valid ones, exit 1', async () => {
    const result = await runCli(['policy', 'validate', 'policies/examples/retries.yaml', `${BROKEN}/attempts-zero.yaml`, `${BROKEN}/wrong-kind.yaml`]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, 'policies/examples/retries.yaml: OK (1 policy)\n');
    assert.deepEqual(result.stderr.trim().split('\n'), [
      `${BROKEN}/attempts-zero.yaml:8:15: spec.retries.attempts: must be an integer from 1 to 10`,
      `${BROKEN}/wrong-kind.yaml:2:7: kind: must be Policy`,
    ]);
  });

  test('files checked as one set: a conflict between two valid files names both', async () => {
    const a = path.join(dir, 'a.yaml');
    const b = path.join(dir, 'b.yaml');
    writeFileSync(a, policy('pay-a', 'payments', '  timeouts: { request: 2s }\n'));
    writeFileSync(b, policy('pay-b', 'payments', '  retries: { attempts: 2 }\n'));
    assert.equal((await runCli(['policy', 'validate', a])).code, 0);
    const result = await runCli(['policy', 'validate', a, b]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, `${b}:6:12: spec.service: service payments (namespace default) already has a service-wide policy in ${a}:6:12; merge them, or narrow one with spec.route\n`);
    assert.equal(result.stdout, `${a}: OK (1 policy)\n`);
  });

  test('a file that does not exist: exit 1', async () => {
    const result = await runCli(['policy', 'validate', 'policies/nope.yaml']);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'policies/nope.yaml: cannot read: ENOENT\n');
  });

  test('no file, or another subcommand: usage, exit 2', async () => {
    for (const args of [['policy', 'validate'], ['policy', 'check', 'x.yaml'], ['policy']]) {
      const result = await runCli(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /usage: mcp-mesh policy validate/);
    }
  });
});
