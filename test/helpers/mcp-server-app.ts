// A real MCP server app (sidecar/src/demo/mcp-server.ts, built with the official SDK) in a child
// process of its own (mcp-server-main.ts), so that a test can kill one replica the way a pod dies.
// The test reads what reached each app from its /stats route, straight from the app (not through
// the mesh).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import type { McpAppStats } from '../../sidecar/src/demo/mcp-server.ts';
import { cleanEnv, NODE, REPO_ROOT, type ExitStatus } from './sidecar-process.ts';
import { within } from './wait.ts';

export type { McpAppStats };

const MAIN = path.join(REPO_ROOT, 'test', 'helpers', 'mcp-server-main.ts');

const live = new Set<ChildProcess>();
process.once('exit', () => { for (const child of live) child.kill('SIGKILL'); });

export interface McpServerApp {
  /** The replica's name: what `whoami` answers. */
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  stats(): Promise<McpAppStats>;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM (SIGKILL after `graceMs`) and wait for the exit. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

export async function startMcpServerApp(options: { name: string; allowedHosts?: string[]; timeoutMs?: number }): Promise<McpServerApp> {
  const args = [MAIN, '--name', options.name, '--allowed-hosts', (options.allowedHosts ?? ['mcp', 'localhost', '127.0.0.1']).join(',')];
  const child = spawn(NODE, args, { cwd: REPO_ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-4000); });
  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      status = { code, signal };
      resolve(status);
    });
  });
  const lines = createInterface({ input: child.stdout! });
  const listening = new Promise<number>((resolve, reject) => {
    lines.on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { msg?: string; port?: number };
        if (parsed.msg === 'listening' && typeof parsed.port === 'number') resolve(parsed.port);
      } catch { /* the SDK's own console output */ }
    });
    void exited.then((s) => reject(new Error(`MCP app ${options.name} exited (${JSON.stringify(s)}) before listening\n${stderr}`)));
  });
  let port: number;
  try {
    port = await within(listening, options.timeoutMs ?? 15_000, `MCP app ${options.name} did not start`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    name: options.name,
    port,
    pid: child.pid!,
    exited,
    stats: async () => {
      const response = await request(`http://127.0.0.1:${port}/stats`);
      if (response.statusCode !== 200) throw new Error(`${options.name} /stats: ${response.statusCode} ${await response.body.text()}`);
      return await response.body.json() as McpAppStats;
    },
    signal: (signal) => { child.kill(signal); },
    stop: async (graceMs = 5000) => {
      if (!status) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      return status!;
    },
  };
}
