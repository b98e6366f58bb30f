// Every example config under deploy/examples must load: documentation that cannot rot.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfigFile } from '../../sidecar/src/config/load.ts';

const dir = path.join(import.meta.dirname, '../../deploy/examples');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

test('there are example configs', () => {
  assert.ok(files.length >= 2);
});

for (const file of files) {
  test(`deploy/examples/${file} loads`, () => {
    const config = loadConfigFile(path.join(dir, file), {});
    assert.match(config.service, /^[a-z0-9-]+$/);
    assert.ok(config.app.port > 0);
  });
}
