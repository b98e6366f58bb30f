// Headless Chromium for page tests (Debian's `chromium` package). If it is missing, the test setup
// installs it (root, apt-get, non-interactive, bounded in time); a test skips, saying why, only when
// it cannot be installed. The browser runs one shot per page: --dump-dom prints the DOM after the
// page's scripts ran (within a virtual-time budget), --screenshot saves a PNG.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];

/** The first Chromium on PATH (or in /usr/bin), or undefined. */
export function findChromium(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/bin'];
  for (const name of NAMES) {
    for (const dir of dirs) {
      const file = path.join(dir, name);
      try {
        accessSync(file, constants.X_OK);
        return file;
      } catch { /* not here */ }
    }
  }
  return undefined;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run a command to its end or until `timeoutMs` (then SIGKILL, its process group included). */
export function run(command: string, args: string[], options: { timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    const kill = () => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); } };
    const timer = setTimeout(() => { timedOut = true; kill(); }, options.timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); resolve({ code: null, stdout, stderr: `${stderr}${err.message}`, timedOut }); });
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, timedOut }); });
  });
}

/** Chromium's path, or why there is none (for `t.skip`). */
export type ChromiumLookup = { path: string; skip?: undefined } | { path?: undefined; skip: string };

/**
 * Chromium, installed with apt-get if it is missing and this process may do so (root on a system
 * with apt-get). The package lists are refreshed once if the first install cannot find the package.
 */
export async function ensureChromium(options: { timeoutMs?: number } = {}): Promise<ChromiumLookup> {
  const found = findChromium();
  if (found) return { path: found };
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return { skip: 'chromium is not installed and this test is not running as root, so it cannot install it (apt-get install -y chromium)' };
  const deadline = performance.now() + (options.timeoutMs ?? 300_000);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const left = () => Math.max(1000, deadline - performance.now());
  const install = () => run('apt-get', ['install', '-y', '-q', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', 'chromium'], { timeoutMs: left(), env });
  let result = await install();
  if (result.code !== 0 && !result.timedOut && /Unable to locate package|has no installation candidate/.test(result.stderr + result.stdout)) {
    const update = await run('apt-get', ['update', '-q'], { timeoutMs: left(), env });
    if (update.code === 0) result = await install();
  }
  const installed = findChromium();
  if (installed) return { path: installed };
  const why = result.timedOut ? 'timed out' : `exited ${result.code}`;
  return { skip: `chromium is not installed and apt-get install -y chromium ${why}: ${(result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ')}` };
}

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', '--hide-scrollbars', '--mute-audio'];

/**
 * Load `url` and return the DOM after its scripts ran. `budgetMs` is Chromium's virtual time budget:
 * the page's timers (its polling) run for that much virtual time before the DOM is taken.
 */
export async function dumpDom(chromium: string, url: string, options: { budgetMs?: number; timeoutMs?: number } = {}): Promise<string> {
  return withProfile(async (profile) => {
    const result = await run(chromium, [...FLAGS, `--user-data-dir=${profile}`, `--virtual-time-budget=${options.budgetMs ?? 3000}`, '--dump-dom', url], { timeoutMs: options.timeoutMs ?? 60_000 });
    if (result.code !== 0 || result.timedOut) throw new Error(`chromium --dump-dom ${url}: ${result.timedOut ? 'timed out' : `exit ${result.code}`}\n${result.stderr.slice(-2000)}`);
    return result.stdout;
  });
}

/** Load `url` and save a PNG of the window at `file` once the page's scripts ran for `budgetMs` of virtual time. */
export async function screenshot(chromium: string, url: string, file: string, options: { budgetMs?: number; width?: number; height?: number; timeoutMs?: number } = {}): Promise<void> {
  await withProfile(async (profile) => {
    const size = `${options.width ?? 1280},${options.height ?? 900}`;
    const result = await run(chromium, [...FLAGS, `--user-data-dir=${profile}`, `--virtual-time-budget=${options.budgetMs ?? 3000}`, `--window-size=${size}`, `--screenshot=${file}`, url], { timeoutMs: options.timeoutMs ?? 60_000 });
    if (result.code !== 0 || result.timedOut) throw new Error(`chromium --screenshot ${url}: ${result.timedOut ? 'timed out' : `exit ${result.code}`}\n${result.stderr.slice(-2000)}`);
  });
}

/** A throwaway profile folder per run, so runs never share state or lock each other out. */
async function withProfile<T>(use: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-chromium-'));
  try {
    return await use(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
