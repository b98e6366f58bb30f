// docs/injector.md lists every annotation the injector reads: the table and the constants stay in step.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ANNOTATIONS } from '../../../sidecar/src/injector/annotations.ts';

test('docs/injector.md has a row for every annotation', () => {
  const doc = readFileSync(new URL('../../../docs/injector.md', import.meta.url), 'utf8');
  const rows = new Set([...doc.matchAll(/^\| `(mcp-mesh\.io\/[a-z-]+)` \|/gm)].map((m) => m[1]));
  assert.deepEqual([...rows].sort(), Object.values(ANNOTATIONS).sort());
});
