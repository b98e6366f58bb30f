import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ForkedChild } from '../../../bench/child-ipc.ts';
import type { RunResult, RunSpec } from '../../../bench/generator.ts';

const bench = (file: string) => fileURLToPath(new URL(`../../../bench/${file}`, import.meta.url));

test('a forked generator answers a run by its id, then stops when asked', async (t) => {
  const app = createServer((req, res) => { req.resume().on('end', () => res.end('ok')); });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { app.closeAllConnections(); app.close(resolve); }));
  const generator = await ForkedChild.start(bench('generator.ts'));
  assert.ok(generator.pid > 0);
  const spec: Omit<RunSpec, 'id'> = { origin: `http://127.0.0.1:${(app.address() as AddressInfo).port}`, host: 'target', mode: 'closed', rate: 0, durationMs: 100, connections: 1, bodyBytes: 16 };
  const result = await generator.call<RunResult>(spec);
  assert.ok(result.ok > 0 && result.errors === 0, JSON.stringify(result.outcomes));
  await assert.rejects(generator.call({ ...spec, origin: 'not a url' }), /Invalid URL|invalid/i);
  await generator.stop();
  assert.throws(() => process.kill(generator.pid, 0), /ESRCH/);
});

test('a forked helper that says its port is read from its first message', async () => {
  const app = await ForkedChild.start(bench('async-app.ts'));
  try {
    assert.ok(app.port > 0);
    assert.equal(app.hello.port, app.port);
    assert.deepEqual(await app.call({ cmd: 'count', run: 'r' }), { received: 0, unique: 0 });
  } finally {
    await app.stop();
  }
});
