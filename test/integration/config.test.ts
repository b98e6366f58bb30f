// The sidecar config as users meet it: through the CLI. Bad files stop the process with one message
// naming the key; MESH_* variables override the file; the static endpoint list follows file changes.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { closedPort, rawValues, startTestApp, type Echo, type TestApp } from '../helpers/apps.ts';
import { assertMeshError } from '../helpers/mesh.ts';
import { cleanEnv, CLI, NODE, REPO_ROOT, runCli, SidecarProcess, sidecarConfig, toYaml } from '../helpers/sidecar-process.ts';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { within } from '../helpers/wait.ts';

/** Nine to the fourth power values from a few lines of anchors and aliases ("billion laughs"). */
const ALIAS_BOMB = [
  'x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
  'x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
  'x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
  'x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
  'x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]',
].join('\n') + '\n';

describe('bad config files: exit 1 with one message naming the key', { timeout: 120_000 }, () => {
  let dir: string;
  before(() => { dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-config-')); });
  after(() => { rmSync(dir, { recursive: true, force: true }); });

  const valid = 'service: orders\napp: { port: 8080 }\nlisten: { outbound: 127.0.0.1:0, inbound: 127.0.0.1:0, admin: 127.0.0.1:0 }\n';
  const cases: { name: string; yaml: string; env?: Record<string, string>; expect: RegExp[] }[] = [
    { name: 'unknown top-level key (a typo)', yaml: `${valid}servce: payments\n`, expect: [/"servce"/, /unknown key/] },
    { name: 'unknown nested key', yaml: 'service: orders\napp: { port: 8080 }\nlisten: { outbund: 127.0.0.1:0 }\n', expect: [/"listen\.outbund"/, /unknown key/] },
    { name: 'wrong type', yaml: 'service: orders\napp: { port: eighty }\n', expect: [/"app\.port"/, /integer/] },
    { name: 'number out of range', yaml: 'service: orders\napp: { port: 70000 }\n', expect: [/"app\.port"/] },
    { name: 'missing app.port', yaml: 'service: orders\napp: { host: 127.0.0.1 }\n', expect: [/"app\.port"/, /required/] },
    { name: 'missing app section', yaml: 'service: orders\n', expect: [/"app\.port"/, /required/] },
    { name: 'bad duration', yaml: `${valid}timeouts: { request: soon }\n`, expect: [/"timeouts\.request"/, /duration/] },
    { name: 'bad address', yaml: 'service: orders\napp: { port: 8080 }\nlisten: { inbound: nowhere }\n', expect: [/"listen\.inbound"/, /host:port/] },
    { name: 'bad static endpoint', yaml: `${valid}discovery: { static: { payments: [not-an-address] } }\n`, expect: [/"discovery\.static\.payments\.0"/] },
    { name: 'invalid YAML', yaml: 'service: orders\napp: { port: 8080\n', expect: [/invalid YAML/, /mesh\.yaml:\d+:\d+/] },
    { name: 'duplicate key', yaml: `${valid}service: again\n`, expect: [/invalid YAML/, /service|unique|duplicate/i] },
    // Aliases the yaml package refuses without a position (a "billion laughs" file; an alias naming no anchor).
    { name: 'an alias bomb', yaml: `${valid}${ALIAS_BOMB}`, expect: [/mesh\.yaml:7:10: invalid YAML: aliases expand too far/, /alias bomb/] },
    { name: 'an alias naming no anchor', yaml: `${valid}timeouts: *defaults\n`, expect: [/mesh\.yaml:4:11: invalid YAML: Unresolved alias/, /defaults/] },
    { name: 'a bad value from the environment', yaml: valid, env: { MESH_APP_PORT: 'abc' }, expect: [/MESH_APP_PORT/, /"app\.port"/] },
  ];
  for (const { name, yaml, env, expect } of cases) {
    test(name, async () => {
      const file = path.join(dir, 'mesh.yaml');
      writeFileSync(file, yaml);
      const result = await runCli(['sidecar', '--config', file], { env });
      assert.equal(result.code, 1, `exit code (stderr: ${result.stderr})`);
      assert.equal(result.stdout, '', 'nothing started, nothing logged');
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one message:\n${result.stderr}`);
      for (const pattern of expect) assert.match(lines[0]!, pattern);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    });
  }

  test('a config file that does not exist', async () => {
    const result = await runCli(['sidecar', '--config', path.join(dir, 'missing.yaml')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /missing\.yaml/);
    assert.match(result.stderr, /ENOENT/);
  });

  test('no --config and no MESH_* variables: exit 1 naming what is missing', async () => {
    const result = await runCli(['sidecar']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /"service"|"app\.port"/);
    assert.match(result.stderr, /required/);
  });

  test('no --config: the MESH_* variables alone configure the sidecar (as the injector sets them)', async () => {
    const child = spawn(NODE, [CLI, 'sidecar'], {
      cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
      env: cleanEnv({
        MESH_SERVICE: 'envonly', MESH_APP_PORT: '9', MESH_LISTEN_OUTBOUND: '127.0.0.1:0', MESH_LISTEN_INBOUND: '127.0.0.1:0',
        MESH_LISTEN_ADMIN: '127.0.0.1:0', MESH_DATA_DIR: path.join(dir, 'data-envonly'), MESH_SHUTDOWN_WAIT_FOR_APP: 'false',
      }),
    });
    const exited = once(child, 'exit');
    const lines = createInterface({ input: child.stdout! });
    const listening = await within(new Promise<string>((resolve) => lines.on('line', (line) => { if (line.includes('"ports"')) resolve(line); })), 15_000, 'the sidecar did not start');
    assert.match(listening, /sidecar envonly\.default listening/);
    child.kill('SIGTERM');
    assert.deepEqual(await within(exited, 15_000, 'the sidecar did not stop'), [0, null]);
  });
});

describe('environment overrides and live reload', { timeout: 60_000 }, () => {
  let app: TestApp;
  let payments: SidecarProcess;
  const started: SidecarProcess[] = [];

  before(async () => {
    app = await startTestApp();
    // The file names a port where nothing listens; MESH_APP_PORT points at the real app.
    payments = await SidecarProcess.start({
      config: sidecarConfig({ service: 'payments', appPort: await closedPort(), extra: { aliases: ['ledger'] } }), // also listed as ledger below
      env: { MESH_APP_PORT: String(app.port) },
    });
    started.push(payments);
  });
  after(async () => {
    await Promise.all(started.map((s) => s.stop()));
    await app?.close();
  });

  test('MESH_APP_PORT, MESH_SERVICE and MESH_DISCOVERY_STATIC override the file', async () => {
    const caller = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: ['127.0.0.1:1'] } }),
      env: { MESH_SERVICE: 'billing', MESH_DISCOVERY_STATIC: `payments=${payments.inboundAddress}` },
    });
    started.push(caller);
    const response = await request(`${caller.outboundUrl}/env`, { headers: { host: 'payments' } });
    const text = await response.body.text();
    assert.equal(response.statusCode, 200, text);
    const echo = JSON.parse(text) as Echo;
    assert.equal(echo.url, '/env', 'reached the app on MESH_APP_PORT, through the endpoint from MESH_DISCOVERY_STATIC');
    assert.deepEqual(rawValues(echo.rawHeaders, 'mcp-mesh-source'), ['billing'], 'MESH_SERVICE renamed the caller');
  });

  test('the static endpoint list is re-read when the file changes; an invalid file is ignored', async () => {
    const base = sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: [payments.inboundAddress] } });
    const caller = await SidecarProcess.start({ config: base });
    started.push(caller);
    const call = (host: string) => request(`${caller.outboundUrl}/reload`, { headers: { host } });

    await assertMeshError(await call('ledger'), 404, 'UNKNOWN_SERVICE');

    // 1. Rewrite in place: add a service.
    let mark = caller.mark();
    writeFileSync(caller.configFile, toYaml({ ...base, discovery: { static: { payments: [payments.inboundAddress], ledger: [payments.inboundAddress] } } }));
    await caller.waitForLog('config reloaded', { since: mark });
    let response = await call('ledger');
    assert.equal(response.statusCode, 200, await response.body.text());

    // 2. An invalid file is reported and changes nothing.
    mark = caller.mark();
    writeFileSync(caller.configFile, toYaml({ ...base, bogus: true }));
    const error = await caller.waitForLog((l) => l.code === 'CONFIG_INVALID', { since: mark });
    assert.match(error.msg, /"bogus"/);
    response = await call('ledger');
    assert.equal(response.statusCode, 200, 'the running config stays');
    await response.body.dump();

    // 3. Replace by rename (how editors and Kubernetes ConfigMaps update files): drop payments.
    mark = caller.mark();
    const next = path.join(caller.dir, 'mesh.yaml.next');
    writeFileSync(next, toYaml({ ...base, discovery: { static: { ledger: [payments.inboundAddress] } } }));
    renameSync(next, caller.configFile);
    const reloaded = await caller.waitForLog('config reloaded', { since: mark });
    assert.deepEqual(reloaded.services, ['ledger']);
    await assertMeshError(await call('payments'), 404, 'UNKNOWN_SERVICE');
    response = await call('ledger');
    assert.equal(response.statusCode, 200);
    await response.body.dump();
  });
});
