// `mcp-mesh demo` (what `npm start` runs), as a user runs it: a child process that must finish well
// within a minute, exit 0, and print a summary naming every service, with no unexpected errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const BIN = fileURLToPath(new URL('../../bin/mcp-mesh.js', import.meta.url));

test('mcp-mesh demo runs a mesh, prints a summary and exits 0', { timeout: 90_000 }, async () => {
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const elapsed = Date.now() - started;
  const context = `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;

  assert.equal(code, 0, `exit code${context}`);
  assert.ok(elapsed < 60_000, `took ${elapsed} ms${context}`);
  assert.match(stdout, /Calls per service and replica/, context);
  for (const service of ['frontend', 'orders', 'payments', 'events']) {
    assert.match(stdout, new RegExp(`^\\s+${service}\\s+${service}-1\\s`, 'm'), `summary names ${service}${context}`);
  }
  for (const replica of ['orders-2', 'payments-2', 'events-2']) assert.match(stdout, new RegExp(`\\s${replica}\\s`), `summary names ${replica}${context}`);
  assert.match(stdout, /unexpected errors: 0\b/, context);
  assert.match(stdout, /^OK: /m, context);
  assert.doesNotMatch(stdout, /FAILED/, context);
  for (const section of ['Latency by call kind', 'p50', 'p99', 'batch sizes', 'Errors by code', 'UNKNOWN_SERVICE']) {
    assert.ok(stdout.includes(section), `summary has "${section}"${context}`);
  }
  assert.match(stdout, /SIGTERM to 7 sidecars; 7 exited with code 0/, context);
});
