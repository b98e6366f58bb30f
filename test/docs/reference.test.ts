// The reference pages are written from code tables; these tests keep them in step.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ENV_OVERRIDES } from '../../sidecar/src/config/env.ts';
import { ERROR_CODES, LOG_CODES } from '../../sidecar/src/errors/codes.ts';

const docs = (name: string) => readFileSync(path.join(import.meta.dirname, '../../docs', name), 'utf8');

test('docs/configuration.md lists every key and its environment variable', () => {
  const page = docs('configuration.md');
  for (const override of ENV_OVERRIDES) {
    const row = page.split('\n').find((line) => line.startsWith(`| \`${override.path.join('.')}\` |`));
    assert.ok(row, `no row for ${override.path.join('.')}`);
    assert.ok(row.includes(`\`${override.variable}\``), `row for ${override.path.join('.')} does not name ${override.variable}`);
  }
});

test('docs/errors.md lists every error code with its status', () => {
  const page = docs('errors.md');
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    assert.ok(page.includes(`| \`${code}\` | ${info.status} |`), `errors.md lacks ${code} → ${info.status}`);
  }
});

test('docs/logging.md lists every log code in its table, and errors.md points there', () => {
  const page = docs('logging.md');
  const section = page.slice(page.indexOf('## Log codes'), page.indexOf('\n## ', page.indexOf('## Log codes') + 1));
  assert.ok(section.length > 0, 'logging.md has a "Log codes" section');
  for (const [code, info] of Object.entries(LOG_CODES)) {
    assert.ok(section.includes(`| \`${code}\` | ${info.summary} |`), `logging.md's log codes lack ${code} (or its summary differs from codes.ts)`);
  }
  const rows = [...section.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual(rows.filter((code) => !(code! in LOG_CODES)), [], 'logging.md lists no code that is not in LOG_CODES');
  assert.match(docs('errors.md'), /logging\.md#log-codes/);
});

test('docs/metrics.md lists every metric the sidecar creates', () => {
  const source = readFileSync(path.join(import.meta.dirname, '../../sidecar/src/telemetry/metrics.ts'), 'utf8');
  const names = [...source.matchAll(/create(Counter|Histogram|UpDownCounter|ObservableGauge|Gauge)\('([a-z_]+)'/g)].map((m) => ({ kind: m[1]!, name: m[2]! }));
  assert.ok(names.length >= 2, 'metrics.ts creates metrics');
  const page = docs('metrics.md');
  for (const { kind, name } of names) {
    const exposed = kind === 'Counter' ? `${name}_total` : name;
    assert.ok(page.includes(`| \`${exposed}\` |`), `metrics.md lacks ${exposed}`);
  }
});
