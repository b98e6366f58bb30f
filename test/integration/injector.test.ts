// `mcp-mesh injector` as a cluster runs it: a real process serving HTTPS with a certificate made by
// openssl for the test, answering AdmissionReviews like the API server sends them.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { CLI, cleanEnv, NODE, REPO_ROOT, runCli } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

interface LogLine { msg: string; [key: string]: unknown }

function makeCert(dir: string, cn: string, existingKey = false): { ca: string } {
  const key = path.join(dir, 'tls.key');
  const cert = path.join(dir, 'tls.crt');
  execFileSync('openssl', [
    'req', '-x509', ...(existingKey ? ['-key', key] : ['-newkey', 'rsa:2048', '-nodes', '-keyout', key]), '-out', cert,
    '-subj', `/CN=${cn}`, '-days', '1', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { ca: readFileSync(cert, 'utf8') };
}

function fixture(name: string): string {
  return readFileSync(path.join(REPO_ROOT, 'test/fixtures/admission', `${name}.json`), 'utf8');
}

describe('mcp-mesh injector', { timeout: 60_000 }, () => {
  let dir: string;
  let child: ChildProcess;
  let port: number;
  let agent: Agent;
  const lines: LogLine[] = [];
  const waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const nextLog = (match: (l: LogLine) => boolean) => new Promise<LogLine>((resolve) => {
    const seen = lines.find(match);
    if (seen) resolve(seen); else waiters.push({ match, resolve });
  });

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-injector-'));
    const { ca } = makeCert(dir, 'localhost');
    agent = new Agent({ connect: { ca } });
    child = spawn(NODE, [CLI, 'injector', '--cert', path.join(dir, 'tls.crt'), '--key', path.join(dir, 'tls.key'), '--port', '0', '--host', '127.0.0.1'], {
      cwd: REPO_ROOT, env: cleanEnv({ MESH_INJECTOR_IMAGE: 'registry.test/mcp-mesh:env' }), stdio: ['ignore', 'pipe', 'inherit'],
    });
    createInterface({ input: child.stdout! }).on('line', (text) => {
      const line = JSON.parse(text) as LogLine;
      lines.push(line);
      for (const w of waiters.filter((x) => x.match(line))) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
    });
    const listening = await within(nextLog((l) => l.msg.startsWith('injector listening')), 15_000, 'injector did not start');
    port = listening.port as number;
    assert.equal(listening.msg, `injector listening: https://127.0.0.1:${port}/mutate`);
  });

  after(async () => {
    if (child.exitCode === null) { child.kill('SIGKILL'); await once(child, 'exit'); }
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (body: string, contentType = 'application/json', route = '/mutate') => request(`https://localhost:${port}${route}`, {
    method: 'POST', body, headers: { 'content-type': contentType }, dispatcher: agent,
  });

  test('injects a Deployment pod: AdmissionReview v1 answer with a base64 JSON patch', async () => {
    const res = await post(fixture('deployment-pod'));
    assert.equal(res.statusCode, 200);
    const review = await res.body.json() as { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType: string; patch: string } };
    assert.equal(review.apiVersion, 'admission.k8s.io/v1');
    assert.equal(review.kind, 'AdmissionReview');
    assert.equal(review.response.uid, '0f2a1d8e-6b1c-4c2e-9d8f-1a2b3c4d5e01');
    assert.equal(review.response.allowed, true);
    assert.equal(review.response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(review.response.patch, 'base64').toString('utf8')) as { path: string; value: unknown }[];
    const sidecar = patch.find((op) => op.path === '/spec/initContainers')!.value as { name: string; image: string; restartPolicy: string }[];
    assert.equal(sidecar[0]!.name, 'mcp-mesh-proxy');
    assert.equal(sidecar[0]!.image, 'registry.test/mcp-mesh:env', 'image from MESH_INJECTOR_IMAGE');
    assert.equal(sidecar[0]!.restartPolicy, 'Always');
    const logged = await nextLog((l) => l.uid === '0f2a1d8e-6b1c-4c2e-9d8f-1a2b3c4d5e01');
    assert.equal(logged.msg, 'admission injected (native)');
    assert.equal(logged.namespace, 'shop');
  });

  test('a pod that did not opt in itself: injected on /mutate (selected by its namespace), untouched on /mutate/opted-in', async () => {
    const selected = await (await post(fixture('bare-pod'))).body.json() as { response: Record<string, unknown> };
    assert.equal(selected.response.allowed, true);
    assert.equal(selected.response.patchType, 'JSONPatch');
    const optedIn = await (await post(fixture('bare-pod'), 'application/json', '/mutate/opted-in')).body.json() as { response: Record<string, unknown> };
    assert.deepEqual(optedIn.response, { uid: '0f2a1d8e-6b1c-4c2e-9d8f-1a2b3c4d5e02', allowed: true });
  });

  test('bad annotations: allowed false with the message', async () => {
    const res = await post(fixture('bad-annotations'));
    assert.equal(res.statusCode, 200);
    const review = await res.body.json() as { response: { uid: string; allowed: boolean; status: { message: string } } };
    assert.equal(review.response.allowed, false);
    assert.match(review.response.status.message, /^mcp-mesh injector: mcp-mesh\.io\/app-port: "http" must be a port number 1–65535/);
  });

  test('malformed bodies: 400', async () => {
    for (const body of ['{"apiVersion": "admission.k8s.io/v1", "kind": ', '[]', '{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}']) {
      const res = await post(body);
      assert.equal(res.statusCode, 400, body);
      await res.body.dump();
    }
    const res = await post('uid=1', 'application/x-www-form-urlencoded');
    assert.equal(res.statusCode, 415);
    await res.body.dump();
  });

  test('/healthz', async () => {
    const res = await request(`https://localhost:${port}/healthz`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(await res.body.json(), { status: 'ok' });
  });

  test('a renewed certificate is served without a restart', async () => {
    const reloaded = nextLog((l) => l.msg === 'certificate reloaded');
    const { ca } = makeCert(dir, 'renewed', true);
    await within(reloaded, 10_000, 'no reload after the certificate changed');
    const fresh = new Agent({ connect: { ca } });
    try {
      const res = await request(`https://localhost:${port}/healthz`, { dispatcher: fresh });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    } finally {
      await fresh.close();
    }
  });

  test('SIGTERM: exits 0', async () => {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = await within(exited, 10_000, 'injector did not exit');
    assert.equal(code, 0);
  });

  test('usage errors: exit 2 with the reason', async () => {
    const missing = await runCli(['injector', '--port', '0']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--cert FILE and --key FILE are required/);
    const mode = await runCli(['injector', '--cert', 'a', '--key', 'b', '--sidecar-mode', 'sidecar']);
    assert.equal(mode.code, 2);
    assert.match(mode.stderr, /--sidecar-mode sidecar: must be native or container/);
    const unreadable = await runCli(['injector', '--cert', path.join(dir, 'nope.crt'), '--key', path.join(dir, 'nope.key'), '--port', '0', '--host', '127.0.0.1']);
    assert.equal(unreadable.code, 1);
    assert.match(unreadable.stderr, /cannot start: cannot read .*nope\.crt/);
  });
});
