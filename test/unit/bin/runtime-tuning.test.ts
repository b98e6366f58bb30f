// The sidecar's runtime settings (bin/runtime-tuning.js) and its pre-stripped sources (bin/js-cache.js):
// the sidecar process runs with them, the operator's own values win, and they can be turned off.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { REPO_ROOT, SidecarProcess } from '../../helpers/sidecar-process.ts';

const CONFIG = { service: 'orders', app: { port: 18080 }, listen: { outbound: '127.0.0.1:0', inbound: '127.0.0.1:0', admin: '127.0.0.1:0' } };

/** The running sidecar's command line and environment, as the kernel sees them. */
function processOf(sidecar: SidecarProcess): { argv: string[]; env: Record<string, string> } {
  const split = (file: string) => readFileSync(`/proc/${sidecar.pid}/${file}`, 'utf8').split('\0').filter(Boolean);
  return { argv: split('cmdline'), env: Object.fromEntries(split('environ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) };
}

describe('mcp-mesh sidecar runtime settings', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  const running: SidecarProcess[] = [];
  after(async () => { await Promise.all(running.map((s) => s.stop())); });
  const start = async (env: Record<string, string> = {}) => {
    const sidecar = await SidecarProcess.start({ config: CONFIG, env });
    running.push(sidecar);
    return processOf(sidecar);
  };

  test('re-executed in place (same pid) with a capped young generation and two malloc arenas', async () => {
    const { argv, env } = await start();
    assert.ok(argv.some((a) => /^--max-semi-space-size=\d+$/.test(a)), argv.join(' '));
    assert.deepEqual(argv.slice(-4).slice(0, 2), [path.join(REPO_ROOT, 'bin/mcp-mesh.js'), 'sidecar']);
    assert.equal(env['MALLOC_ARENA_MAX'], '2');
  });

  test("the operator's own values are kept", async () => {
    const { argv, env } = await start({ NODE_OPTIONS: '--max-semi-space-size=16', MALLOC_ARENA_MAX: '4' });
    assert.ok(!argv.some((a) => a.startsWith('--max-semi-space-size')), argv.join(' '));
    assert.equal(env['MALLOC_ARENA_MAX'], '4');
  });

  test('MCP_MESH_RUNTIME_TUNING=off runs the sidecar with Node defaults', async () => {
    const { argv, env } = await start({ MCP_MESH_RUNTIME_TUNING: 'off' });
    assert.ok(!argv.some((a) => a.startsWith('--max-semi-space-size')), argv.join(' '));
    assert.equal(env['MALLOC_ARENA_MAX'], undefined);
  });
});

describe('pre-stripped sources', () => {
  // Which of Node's TypeScript parts a process loaded, after importing a sidecar module.
  const loaded = (withCache: boolean) => {
    const script = `
      const { useJsCache } = await import('./bin/js-cache.js');
      if (${withCache}) useJsCache();
      const { parseConfig } = await import('./sidecar/src/config/load.ts');
      if (parseConfig('service: a\\napp: { port: 1 }\\n').service !== 'a') throw new Error('module did not work');
      console.log(JSON.stringify(process.moduleLoadList.filter((m) => /amaro/.test(m))));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return JSON.parse(run.stdout) as string[];
  };

  test("served from the cache, the sources load without Node's TypeScript stripper", () => {
    // Filled by another process, as the sidecar's first process image (or the image build) does.
    assert.equal(spawnSync(process.execPath, ['bin/js-cache.js'], { cwd: REPO_ROOT }).status, 0);
    assert.deepEqual(loaded(true), []);
  });

  test('without it, Node strips them (the stripper is loaded)', () => {
    assert.ok(loaded(false).length > 0);
  });
});
