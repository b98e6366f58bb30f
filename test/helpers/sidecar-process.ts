// A real sidecar in its own process, as users run it: `node bin/mcp-mesh.js sidecar --config FILE`.
// The config is written to a fresh temp folder; the sidecar's JSON log lines (stdout) are collected
// so tests can wait on events ("listening", "link ready", "config reloaded") instead of sleeping.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = path.join(REPO_ROOT, 'bin', 'mcp-mesh.js');
/** The Node that runs the tests is the repo's Node 24 (node_modules/.bin/node). */
export const NODE = process.execPath;

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface Ports {
  outbound: number;
  inbound: number;
  admin: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A config for tests: every listener on loopback port 0 unless given. Plain objects become JSON (valid YAML). */
export interface TestSidecarConfig {
  service: string;
  appPort: number;
  namespace?: string;
  /** service -> peer sidecars: inbound addresses, or { address, labels, weight } entries */
  peers?: Record<string, (string | { address: string; labels?: Record<string, string>; weight?: number })[]>;
  inboundPort?: number;
  /** Extra top-level keys, merged over the defaults (e.g. limits, link, shutdown). */
  extra?: Record<string, unknown>;
}

export function sidecarConfig(options: TestSidecarConfig): Record<string, unknown> {
  return {
    service: options.service,
    namespace: options.namespace ?? 'default',
    app: { port: options.appPort },
    listen: { outbound: '127.0.0.1:0', inbound: `127.0.0.1:${options.inboundPort ?? 0}`, admin: '127.0.0.1:0' },
    discovery: { static: options.peers ?? {} },
    log: { level: 'info' },
    ...options.extra,
  };
}

export function toYaml(config: Record<string, unknown> | string): string {
  // JSON is YAML; a string is written as it is (for hand-written and deliberately broken files).
  return typeof config === 'string' ? config : `${JSON.stringify(config, null, 2)}\n`;
}

const live = new Set<ChildProcess>();
process.once('exit', () => { for (const child of live) child.kill('SIGKILL'); });

/** An environment with no proxy settings and no MESH_* overrides leaking in from the test runner. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('MESH_') || /^(https?|no|all)_proxy$/i.test(key) || key === 'NODE_USE_ENV_PROXY' || key.startsWith('NODE_TEST')) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

export class SidecarProcess {
  readonly name: string;
  readonly dir: string;
  readonly configFile: string;
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  readonly exited: Promise<ExitStatus>;
  #stderr = '';
  #waiters = new Set<() => void>();
  #ports: Ports | undefined;
  #exitStatus: ExitStatus | undefined;

  private constructor(name: string, dir: string, configFile: string, env: NodeJS.ProcessEnv, ownsDir: boolean) {
    this.name = name;
    this.dir = dir;
    this.configFile = configFile;
    this.child = spawn(NODE, [CLI, 'sidecar', '--config', configFile], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child);
        if (ownsDir) rmSync(dir, { recursive: true, force: true }); // the config is not needed any more
        this.#exitStatus = { code, signal };
        this.#wake();
        resolve({ code, signal });
      });
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        parsed = { level: 0, msg: line };
      }
      this.logs.push(parsed);
      this.#wake();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.#stderr += chunk; });
  }

  /**
   * Write `config` to a new temp folder (or `dir`), start the sidecar on it and wait for its
   * "listening" line, which carries the ports it bound.
   */
  static async start(options: { config: Record<string, unknown> | string; name?: string; env?: Record<string, string>; dir?: string; timeoutMs?: number }): Promise<SidecarProcess> {
    const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'mcp-mesh-it-'));
    const configFile = path.join(dir, 'mesh.yaml');
    writeFileSync(configFile, toYaml(options.config));
    const name = options.name ?? (typeof options.config === 'string' ? 'sidecar' : String(options.config.service));
    // Each sidecar keeps its async data in its own folder (a restart on the same `dir` finds it again).
    // Test apps outlive their sidecars, so by default a stopped sidecar does not wait for its app to
    // go (shutdown.waitForApp); the lifecycle tests turn it back on.
    const env = cleanEnv({ MESH_DATA_DIR: path.join(dir, 'data'), MESH_SHUTDOWN_WAIT_FOR_APP: 'false', ...options.env });
    const sidecar = new SidecarProcess(name, dir, configFile, env, options.dir === undefined);
    try {
      const line = await sidecar.waitForLog((l) => typeof l.ports === 'object' && l.ports !== null, { timeoutMs: options.timeoutMs ?? 15_000 });
      sidecar.#ports = line.ports as Ports;
    } catch (err) {
      sidecar.child.kill('SIGKILL');
      throw err;
    }
    return sidecar;
  }

  get ports(): Ports {
    if (!this.#ports) throw new Error(`${this.name} has not reported its ports`);
    return this.#ports;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** How the process ended; undefined while it runs. */
  get exitStatus(): ExitStatus | undefined {
    return this.#exitStatus;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get outboundUrl(): string {
    return `http://127.0.0.1:${this.ports.outbound}`;
  }

  get inboundAddress(): string {
    return `127.0.0.1:${this.ports.inbound}`;
  }

  /** A cursor into the log: pass it as `since` to wait only for lines logged after this point. */
  mark(): number {
    return this.logs.length;
  }

  /**
   * Resolve with the first log line (at index >= since) that matches; a string matches a prefix of `msg`.
   * Rejects if the process exits first or after `timeoutMs`, quoting the recent log.
   */
  waitForLog(match: string | ((line: LogLine) => boolean), options: { since?: number; timeoutMs?: number } = {}): Promise<LogLine> {
    const test = typeof match === 'string' ? (l: LogLine) => typeof l.msg === 'string' && l.msg.startsWith(match) : match;
    const timeoutMs = options.timeoutMs ?? 10_000;
    let index = options.since ?? 0;
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (; index < this.logs.length; index++) {
          if (test(this.logs[index]!)) {
            finish();
            resolve(this.logs[index]!);
            return true;
          }
        }
        if (this.#exitStatus) {
          finish();
          reject(new Error(`${this.name} exited (${JSON.stringify(this.#exitStatus)}) before logging ${String(match)}\n${this.describe()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.name}: no log line matching ${String(match)} within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      const waiter = () => { check(); };
      const finish = () => { clearTimeout(timer); this.#waiters.delete(waiter); };
      if (!check()) this.#waiters.add(waiter);
    });
  }

  /** Peak resident memory of the sidecar process so far (VmHWM), in bytes. Linux only. */
  peakRssBytes(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
    if (!match) throw new Error(`no VmHWM in /proc/${this.pid}/status`);
    return Number(match[1]) * 1024;
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** For after() hooks: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 8_000): Promise<ExitStatus> {
    if (!this.#exitStatus) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.#exitStatus!;
  }

  describe(): string {
    const recent = this.logs.slice(-15).map((l) => JSON.stringify(l)).join('\n  ');
    return `--- ${this.name} (pid ${this.child.pid}) recent log:\n  ${recent}\n--- stderr:\n${this.#stderr.slice(-2000)}`;
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/** Run the CLI to completion (for config errors): exit code, stdout and stderr. */
export async function runCli(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = spawn(NODE, [CLI, ...args], { cwd: REPO_ROOT, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
  // 'close', not 'exit': all output has been read by then.
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  live.delete(child);
  return { code, signal, stdout, stderr };
}
