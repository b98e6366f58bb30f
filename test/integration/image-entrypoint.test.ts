// The container image without a Docker engine: read the Dockerfile, put exactly the files it copies into
// a temp folder, and run its ENTRYPOINT + CMD there (`node bin/mcp-mesh.js sidecar --config …`): it must
// start (the "listening" log line with its ports) and exit 0 on SIGTERM. What is not tested here: the
// base image, tini, the user.
//
// The deps stage runs `npm ci --omit=dev --ignore-scripts`; a test installs nothing, so its result is
// assembled from what the README's setup (`npm ci`) already installed: every package package-lock.json
// does not mark `dev` (exactly what `npm ci --omit=dev` installs from it), copied from the repo's
// node_modules, each at the version the lock names; optional packages of other platforms are absent
// there as they would be in the image. A repo whose node_modules does not match its lock skips these
// tests, saying so (run `npm ci`).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cleanEnv, REPO_ROOT } from '../helpers/sidecar-process.ts';

interface Stage { from: string; name: string | undefined; instructions: { op: string; args: string }[] }

/** Dockerfile → stages of instructions (line continuations joined, comments dropped). */
function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op, args] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    if (!op || args === undefined) continue;
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ from: m[1]!, name: m[2], instructions: [] });
    } else stages.at(-1)!.instructions.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

function copies(stage: Stage): { sources: string[]; dest: string; from: string | undefined }[] {
  return stage.instructions.filter((i) => i.op === 'COPY').map((i) => {
    const words = i.args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const rest = words.filter((w) => !w.startsWith('--'));
    return { sources: rest.slice(0, -1), dest: rest.at(-1)!, from };
  });
}

const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const final = stages.at(-1)!;
const deps = stages.find((s) => s.name === 'deps')!;
const execForm = (op: string) => JSON.parse(final.instructions.findLast((i) => i.op === op)!.args) as string[];

interface LockEntry { version?: string; dev?: boolean; optional?: boolean; link?: boolean }

/**
 * Copy into `dir` the packages `npm ci --omit=dev` would install from the repo's package-lock.json,
 * taken from the repo's node_modules. Returns why it cannot, when a package is missing or at another
 * version than the lock's (node_modules not installed from this lock).
 */
function copyProductionInstall(dir: string): string | undefined {
  const lock = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (!key.startsWith('node_modules/') || entry.dev) continue;
    const from = path.join(REPO_ROOT, key);
    const manifest = path.join(from, 'package.json');
    if (!existsSync(manifest)) {
      if (entry.optional) continue; // another platform's prebuilt binary
      return `${key} is not installed (run npm ci)`;
    }
    const installed = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
    if (entry.version !== undefined && installed !== entry.version) return `${key} is ${installed}, package-lock.json says ${entry.version} (run npm ci)`;
    mkdirSync(path.dirname(path.join(dir, key)), { recursive: true });
    // A package's own node_modules holds nested packages: each is a lock entry of its own.
    cpSync(from, path.join(dir, key), { recursive: true, filter: (source) => source === from || path.basename(source) !== 'node_modules' });
  }
  return undefined;
}

describe('Dockerfile', () => {
  test('multi-stage on node:24-bookworm-slim; production install without scripts; non-root; tini as PID 1', () => {
    assert.equal(stages.length, 2);
    for (const s of stages) assert.equal(s.from, 'node:24-bookworm-slim');
    const run = deps.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join(' && ');
    assert.match(run, /npm ci --omit=dev --ignore-scripts/);
    assert.ok(!final.instructions.some((i) => i.op === 'RUN' && /npm/.test(i.args)), 'no npm in the final stage');
    const user = final.instructions.findLast((i) => i.op === 'USER')!.args;
    assert.ok(user && !/^(root|0)(:|$)/.test(user), `USER ${user}`);
    assert.deepEqual(execForm('ENTRYPOINT').slice(0, 2), ['/usr/bin/tini', '--']);
    assert.ok(final.instructions.some((i) => i.op === 'RUN' && /apt-get install -y --no-install-recommends tini/.test(i.args)));
    const fromDeps = copies(final).filter((c) => c.from !== undefined);
    assert.deepEqual(fromDeps.map((c) => [c.from, c.sources]), [['deps', ['/opt/mcp-mesh/node_modules']]]);
  });

  test('.dockerignore keeps out what the image does not need, and nothing the image copies', () => {
    const ignored = readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const must of ['node_modules', '.git', 'test', 'bench', 'docs', 'test-artifacts', '.tmp', 'mcp-mesh-data']) assert.ok(ignored.includes(must), must);
    for (const source of [...copies(deps), ...copies(final)].filter((c) => !c.from).flatMap((c) => c.sources)) {
      assert.ok(!ignored.some((p) => p === source || source.startsWith(`${p}/`)), `${source} is copied but ignored`);
    }
  });
});

describe('the image, assembled from the Dockerfile without Docker', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-image-'));
  let installError: string | undefined;
  after(() => rmSync(dir, { recursive: true, force: true }));

  before(() => {
    // The deps stage: its COPY sources, then the production install its npm command makes.
    for (const c of copies(deps)) for (const s of c.sources) cpSync(path.join(REPO_ROOT, s), path.join(dir, path.basename(s)));
    installError = copyProductionInstall(dir);
    // The final stage: every COPY that is not from the deps stage (node_modules is already in place).
    for (const c of copies(final).filter((x) => !x.from)) {
      for (const s of c.sources) {
        const target = c.sources.length === 1 && c.dest !== './' ? path.join(dir, c.dest) : path.join(dir, path.basename(s));
        cpSync(path.join(REPO_ROOT, s), target, { recursive: true });
      }
    }
  });

  const command = (args: string[]) => {
    const [node, ...rest] = execForm('ENTRYPOINT').slice(2); // without tini
    assert.equal(node, 'node');
    return [...rest, ...args];
  };

  function unavailable(t: { skip(msg: string): void }): boolean {
    if (!installError) return false;
    t.skip(`the repo's node_modules cannot stand in for the image's production install: ${installError}`);
    return true;
  }

  test('only production dependencies are installed; dev dependencies are absent', (t) => {
    if (unavailable(t)) return;
    assert.ok(existsSync(path.join(dir, 'node_modules/fastify')));
    assert.ok(!existsSync(path.join(dir, 'node_modules/typescript')));
    assert.ok(!existsSync(path.join(dir, 'node_modules/kubernetes-models')));
    assert.ok(!existsSync(path.join(dir, 'test')));
  });

  test('ENTRYPOINT + CMD start a sidecar that reports its ports and exits 0 on SIGTERM', async (t) => {
    if (unavailable(t)) return;
    const cmd = execForm('CMD');
    assert.deepEqual(cmd, ['sidecar', '--config', '/etc/mcp-mesh/mesh.yaml']);
    const config = path.join(dir, 'mesh.yaml'); // the test's stand-in for the mounted /etc/mcp-mesh/mesh.yaml
    writeFileSync(config, JSON.stringify({
      service: 'orders', namespace: 'shop', app: { port: 18080 },
      listen: { outbound: '127.0.0.1:0', inbound: '127.0.0.1:0', admin: '127.0.0.1:0' },
      policies: [path.join(dir, 'policies/examples')],
    }));
    const child = spawn(process.execPath, command([...cmd.slice(0, -1), config]), {
      cwd: dir, env: cleanEnv({ MESH_DATA_DIR: path.join(dir, 'data'), MESH_SHUTDOWN_WAIT_FOR_APP: 'false' }), stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line within 20 s\n${stdout}\n${stderr}`)), 20_000);
      child.stdout.setEncoding('utf8').on('data', (c: string) => {
        stdout += c;
        for (const line of stdout.split('\n')) {
          try {
            const parsed = JSON.parse(line) as Record<string, unknown>;
            if (parsed.ports) { clearTimeout(timer); resolve(parsed); return; }
          } catch { /* a partial line */ }
        }
      });
      void exited.then((s) => { clearTimeout(timer); reject(new Error(`exited ${JSON.stringify(s)} before starting\n${stdout}\n${stderr}`)); });
    });
    const ports = started.ports as Record<string, number>;
    for (const k of ['outbound', 'inbound', 'admin']) assert.ok(ports[k]! > 0, k);
    const health = await fetch(`http://127.0.0.1:${ports.admin}/healthz`);
    assert.equal(health.status, 200);
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const status = await exited;
    clearTimeout(killer);
    assert.deepEqual(status, { code: 0, signal: null }, stderr);
  });

  test('the policy command runs from the install (policies/ is in the image)', (t) => {
    if (unavailable(t)) return;
    const r = spawnSync(process.execPath, command(['policy', 'validate', 'policies/examples']), { cwd: dir, encoding: 'utf8', env: cleanEnv(), timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
  });

  test('the injector command loads from the install (when the CLI has it)', (t) => {
    if (unavailable(t)) return;
    const help = spawnSync(process.execPath, command(['help']), { cwd: dir, encoding: 'utf8', env: cleanEnv(), timeout: 30_000 });
    assert.equal(help.status, 0, help.stderr);
    if (!/\binjector\b/.test(help.stdout)) return t.skip('this CLI has no injector command yet');
    const r = spawnSync(process.execPath, command(['injector', '--help']), { cwd: dir, encoding: 'utf8', env: cleanEnv(), timeout: 30_000 });
    assert.doesNotMatch(r.stderr, /ERR_MODULE_NOT_FOUND|Cannot find (module|package)/, 'everything the injector imports is in the image');
    assert.ok(r.status === 0 || r.status === 2, `exit ${r.status}: ${r.stderr}`);
  });
});
