// Admin /metrics: Prometheus text from OpenTelemetry; a rejected policy reload is counted there.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { policy } from '../helpers/policies.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

describe('admin /metrics', { timeout: 30_000 }, () => {
  let dir: string;
  let sidecar: SidecarProcess;
  const metrics = async () => {
    const response = await request(`http://127.0.0.1:${sidecar.ports.admin}/metrics`);
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers['content-type']), /^text\/plain/);
    return response.body.text();
  };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'metrics-policies-'));
    writeFileSync(path.join(dir, 'payments.yaml'), policy('payments', 'payments', '  timeouts: { request: 2s }\n'));
    sidecar = await SidecarProcess.start({ config: sidecarConfig({ service: 'orders', appPort: 1, extra: { policies: [dir] } }) });
  });
  after(async () => {
    await sidecar?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a rejected policy reload is counted in mcp_policy_reload_failures_total', async () => {
    assert.doesNotMatch(await metrics(), /mcp_policy_reload_failures_total\{[^}]*\} [1-9]/, 'no failure counted before a broken edit');
    const mark = sidecar.mark();
    writeFileSync(path.join(dir, 'payments.yaml'), policy('payments', 'payments', '  timeouts: { request: soon }\n'));
    await sidecar.waitForLog((l) => l.code === 'POLICY_INVALID', { since: mark });
    assert.match(await metrics(), /^mcp_policy_reload_failures_total(\{[^}]*\})? 1$/m);
  });
});
