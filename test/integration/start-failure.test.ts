// A sidecar that cannot start exits at once, with one line on stderr, whatever the network does:
// here a peer is reachable, so a link to it opens as soon as anything dials. Before the fix, a
// broken policy file left such a sidecar running (its link alive, its listeners never bound) instead
// of exiting 1. The 10 s bound on each run is the failure, not the synchronisation: runCli resolves
// as soon as the process has exited.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/apps.ts';
import { policy } from '../helpers/policies.ts';
import { runCli, SidecarProcess, sidecarConfig, toYaml } from '../helpers/sidecar-process.ts';

const EXIT_WITHIN_MS = 10_000;

describe('a sidecar that cannot start exits 1 at once, even with a peer reachable', { timeout: 60_000 }, () => {
  let dir: string;
  let app: TestApp;
  let peer: SidecarProcess;
  let busy: Server;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-start-failure-'));
    app = await startTestApp();
    peer = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port }) });
    busy = createServer().listen(0, '127.0.0.1');
    await once(busy, 'listening');
  });
  after(async () => {
    await peer?.stop();
    await app?.close();
    busy?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Run `mcp-mesh sidecar` on a config that knows the reachable peer, plus `extra`. */
  const start = async (name: string, extra: Record<string, unknown>, listen?: Record<string, string>) => {
    const config = sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: [peer.inboundAddress] }, extra });
    if (listen) config.listen = { ...(config.listen as Record<string, string>), ...listen };
    const file = path.join(dir, `${name}.yaml`);
    writeFileSync(file, toYaml(config));
    return runCli(['sidecar', '--config', file], { env: { MESH_DATA_DIR: path.join(dir, `data-${name}`) }, timeoutMs: EXIT_WITHIN_MS });
  };

  const assertOneLineExit = (result: Awaited<ReturnType<typeof runCli>>, pattern: RegExp) => {
    assert.deepEqual({ code: result.code, signal: result.signal }, { code: 1, signal: null }, `exit 1 on its own within ${EXIT_WITHIN_MS} ms\nstderr: ${result.stderr}\nstdout: ${result.stdout.slice(-2000)}`);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line:\n${result.stderr}`);
    assert.match(lines[0]!, pattern);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  };

  test('an invalid policy file', async () => {
    const file = path.join(dir, 'attempts-zero.yaml');
    writeFileSync(file, policy('payments', 'payments', '  retries:\n    attempts: 0\n'));
    const result = await start('bad-policy', { policies: [file] });
    assertOneLineExit(result, /^policy error: .*attempts-zero\.yaml:8:15: spec\.retries\.attempts: must be an integer from 1 to 10$/);
  });

  test('a policy file that is an alias bomb', async () => {
    const file = path.resolve('test/fixtures/policies/broken/alias-bomb.yaml');
    const result = await start('alias-bomb', { policies: [file] });
    assertOneLineExit(result, /^policy error: .*alias-bomb\.yaml:10:12: invalid YAML: aliases expand too far/);
  });

  test('certificate files that are not certificates', async () => {
    const junk = path.join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    const result = await start('bad-certs', { tls: { cert: junk, key: junk, ca: junk } });
    assertOneLineExit(result, /^tls error: tls\.cert .*junk\.pem is not a PEM certificate/);
  });

  test('a listen address already in use: what start-up had opened is closed again', async () => {
    const result = await start('port-in-use', {}, { admin: `127.0.0.1:${(busy.address() as AddressInfo).port}` });
    assertOneLineExit(result, /^config error: listen EADDRINUSE: .*127\.0\.0\.1:\d+$/);
  });
});
