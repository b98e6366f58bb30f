// The policy example in the README must be a valid policy: documentation that cannot rot.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { validatePolicies } from '../../sidecar/src/policy/validate.ts';

test('every policy example in README.md validates', () => {
  const readme = readFileSync(path.join(import.meta.dirname, '../../README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => b.includes('kind: Policy'));
  assert.ok(blocks.length >= 1, 'the README shows a policy');
  const dir = mkdtempSync(path.join(tmpdir(), 'readme-policy-'));
  try {
    const files = blocks.map((block, i) => {
      const file = path.join(dir, `example-${i}.yaml`);
      writeFileSync(file, block);
      return file;
    });
    const result = validatePolicies(files);
    assert.deepEqual(result.errors, []);
    assert.equal(result.ok.length, files.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
