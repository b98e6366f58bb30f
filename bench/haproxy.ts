// HAProxy as a peer to compare the mesh with: two processes chained (generator → haproxy 1 →
// haproxy 2 → app), the way the mesh has two sidecars. Debian's `haproxy` package; installed with
// apt-get when it is missing and we may, otherwise the caller skips the HAProxy column.
//
// Ports: HAProxy refuses `bind 127.0.0.1:0` ("invalid port '0'"), so we open the listening socket
// ourselves on port 0 (the kernel picks a free port, no race with other programs) and hand it to
// HAProxy as file descriptor 3 (`bind fd@3`). Where the socket's descriptor cannot be had, we fall back
// to learning a free port from a throwaway socket and letting HAProxy bind it (a small race).
//
// Each process runs in the foreground (`-db`: no master, no daemon), so its pid is the one whose CPU
// and memory /proc shows; `nbthread 1`, like our single-threaded Node sidecars; no logging.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startChain, stopChild, type ProxyChain } from './children.ts';

export interface HaproxyBinary {
  path: string;
  /** e.g. "2.6.12-1+deb12u3" */
  version: string;
}

export type HaproxyFound = { ok: true; binary: HaproxyBinary } | { ok: false; why: string };

const CANDIDATES = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/bin/haproxy'];

/** Finds `haproxy` (PATH, then the usual sbin folders); installs it with apt-get when root and apt exist. */
export function findHaproxy(log: (line: string) => void = () => {}): HaproxyFound {
  const found = locateHaproxy();
  if (found) return { ok: true, binary: found };
  const why = installHaproxy(log);
  if (why) return { ok: false, why };
  const installed = locateHaproxy();
  return installed ? { ok: true, binary: installed } : { ok: false, why: 'apt-get install haproxy ran, but no haproxy binary was found afterwards' };
}

/** The installed `haproxy`, if any; never installs. */
export function locateHaproxy(): HaproxyBinary | undefined {
  for (const candidate of ['haproxy', ...CANDIDATES]) {
    if (candidate.startsWith('/') && !existsSync(candidate)) continue;
    try {
      const out = execFileSync(candidate, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const version = parseVersion(out);
      if (version) return { path: candidate, version };
    } catch { /* not there */ }
  }
  return undefined;
}

/** "HAProxy version 2.6.12-1+deb12u3 2025/10/03 - …" → "2.6.12-1+deb12u3". */
export function parseVersion(text: string): string | undefined {
  return /HA-?Proxy version (\S+)/i.exec(text)?.[1];
}

/** Undefined when it installed; otherwise why it could not. */
function installHaproxy(log: (line: string) => void): string | undefined {
  if (process.platform !== 'linux') return `haproxy is not installed (and is only installed automatically on Linux)`;
  if (process.getuid?.() !== 0) return 'haproxy is not installed, and installing it needs root (apt-get install haproxy)';
  const apt = ['/usr/bin/apt-get', '/bin/apt-get'].find((p) => existsSync(p));
  if (!apt) return 'haproxy is not installed, and there is no apt-get to install it with';
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => execFileSync(apt, ['install', '-y', '--no-install-recommends', 'haproxy'], { stdio: ['ignore', 'ignore', 'pipe'], env, timeout: 300_000 });
  log('haproxy is not installed: apt-get install -y haproxy');
  try {
    install();
    return undefined;
  } catch {
    // The package lists may be missing (fresh container): fetch them once and try again.
    try {
      execFileSync(apt, ['update'], { stdio: ['ignore', 'ignore', 'pipe'], env, timeout: 300_000 });
      install();
      return undefined;
    } catch (err) {
      return `apt-get install haproxy failed: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim().split('\n').pop()}`;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Configuration

export interface ProxyConfig {
  /** The `bind` argument: `fd@3` for the socket we hand over, or `127.0.0.1:PORT`. */
  bind: string;
  /** The next hop(s), `host:port`, each one `server` line. */
  servers: string[];
  /** `balance` of the backend when there are several servers (HAProxy's default is roundrobin). */
  balance?: string;
  /** Extra lines for the backend (stick tables, cookies…) and the frontend. */
  backendLines?: string[];
  frontendLines?: string[];
  /** Most connections the process accepts (global maxconn); default 4096. */
  maxconn?: number;
}

/**
 * A whole HAProxy configuration: one HTTP frontend on `bind`, one backend to `servers`. Keep-alive on
 * both sides and idle server connections shared between client connections (`http-reuse always`), as
 * a sidecar keeps a pool of connections to its next hop; no logging; one thread.
 */
export function haproxyConfig(config: ProxyConfig): string {
  const lines = [
    ...globalAndDefaults(config.maxconn ?? 4096),
    'frontend in',
    `  bind ${config.bind}`,
    ...(config.frontendLines ?? []).map((l) => `  ${l}`),
    '  default_backend next',
    '',
    'backend next',
    ...(config.balance ? [`  balance ${config.balance}`] : []),
    ...(config.backendLines ?? []).map((l) => `  ${l}`),
    ...config.servers.map((server, i) => `  server s${i + 1} ${server}`),
    '',
  ];
  return lines.join('\n');
}

/** The `global` and `defaults` sections every bench HAProxy shares. */
function globalAndDefaults(maxconn = 4096): string[] {
  return [
    'global',
    '  nbthread 1',
    `  maxconn ${maxconn}`,
    // No `log` line anywhere: HAProxy then logs nothing, as our sidecars log no request lines by default.
    '',
    'defaults',
    '  mode http',
    '  option http-keep-alive',
    '  http-reuse always',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    '',
  ];
}

// ---------------------------------------------------------------------------------------------------
// Processes

export interface HaproxyProcess {
  pid: number;
  /** The port it accepts on (127.0.0.1). */
  port: number;
  /** The config it runs, for the report or a failure message. */
  config: string;
  /** What it wrote on stderr (the last 8 KiB). */
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * Starts one HAProxy with a caller-given configuration: `config(bind)` must return the whole file and
 * use `bind` as the argument of its one listening `bind` line (HAProxy cannot bind port 0 itself).
 */
export async function startHaproxy(binary: HaproxyBinary, config: (bind: string) => string, name = 'haproxy'): Promise<HaproxyProcess> {
  const dir = mkdtempSync(path.join(tmpdir(), `mcp-mesh-${name}-`));
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as AddressInfo).port;
  // The listening socket's descriptor (internal, but stable on Unix for years); without it, free the port
  // and let HAProxy bind it.
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const handOver = typeof fd === 'number' && fd >= 0;
  if (!handOver) await new Promise((resolve) => server.close(resolve));
  const text = config(handOver ? 'fd@3' : `127.0.0.1:${port}`);
  const file = path.join(dir, `${name}.cfg`);
  writeFileSync(file, text);
  const cleanUp = () => rmSync(dir, { recursive: true, force: true });
  const fds: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe', handOver ? fd! : 'ignore'];
  try {
    // A config error is reported here with HAProxy's own words, before anything runs (the check, too,
    // needs the socket on fd 3).
    execFileSync(binary.path, ['-c', '-q', '-f', file], { stdio: fds, encoding: 'utf8' });
  } catch (err) {
    if (handOver) server.close();
    cleanUp();
    throw new Error(`${name}: HAProxy rejected its configuration:\n${String((err as { stderr?: string }).stderr ?? err).trim()}\n--- ${file}\n${text}`);
  }
  const child = spawn(binary.path, ['-db', '-q', '-f', file], { stdio: ['ignore', 'ignore', 'pipe', fds[3]!] });
  // HAProxy has its own copy of the socket now: ours must go, or we would accept some of its connections.
  if (handOver) server.close();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-8192); });
  await new Promise<void>((resolve, reject) => {
    const early = (code: number | null, signal: string | null) => reject(new Error(`${name} exited at start (code ${code}, signal ${signal}): ${stderr.trim()}`));
    child.once('error', reject);
    child.once('exit', early);
    // It reads its config and starts accepting within milliseconds; a start-up failure exits as fast.
    setTimeout(() => { child.off('exit', early); resolve(); }, 200);
  }).catch((err: unknown) => { cleanUp(); throw err; });
  return {
    pid: child.pid!,
    port,
    config: text,
    stderr: () => stderr,
    stop: async () => {
      // SIGTERM stops HAProxy at once (SIGUSR1 would wait for the keep-alive connections to go).
      await stopChild(child);
      cleanUp();
    },
  };
}

/** haproxy 1 (next to the generator) and haproxy 2 (next to the app). */
export type HaproxyChain = ProxyChain<HaproxyProcess>;

/** generator → haproxy 1 → haproxy 2 → app on 127.0.0.1:`appPort`. */
export function startHaproxyChain(binary: HaproxyBinary, appPort: number): Promise<HaproxyChain> {
  return startChain(appPort, (next, position) => startHaproxy(binary, (bind) => haproxyConfig({ bind, servers: [`127.0.0.1:${next}`] }), `haproxy-${position}`));
}

