// One sidecar as a real child process (`mcp-mesh sidecar --config FILE`), the way a deployment runs it.
// The config is written to a file, the process is started, and its JSON log is read to learn the
// ports it bound (every listener is on port 0). Warnings and errors it logs are kept for the summary.
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';

/** bin/mcp-mesh.js, found from this file so the demo works from any working directory. */
export const MESH_BIN = fileURLToPath(new URL('../../../bin/mcp-mesh.js', import.meta.url));

export interface SidecarSpec {
  service: string;
  /** This replica's name, e.g. "orders-2"; also the sidecar's `instance`. */
  replica: string;
  appPort: number;
  /** service -> peer sidecars' inbound addresses */
  peers: Record<string, string[]>;
  /** Extra YAML lines appended to the generated config. */
  extraYaml?: string;
  /** Environment variables for this sidecar's process only (e.g. MESH_… overrides, OTEL_…), over the parent's. */
  env?: Record<string, string>;
  /** Node.js options for the sidecar process (e.g. --cpu-prof, --trace-gc); none by default. */
  nodeArgs?: string[];
  /** Gets every stdout line that is not a JSON log line (e.g. --trace-gc output). */
  onOtherLine?: (line: string) => void;
}

export interface Ports {
  outbound: number;
  inbound: number;
  admin: number;
}

/** One of a sidecar's links to a peer, from its admin `GET /endpoints`. */
export interface LinkState {
  address: string;
  state: string;
  batches: number;
  envelopes: number;
}

export interface LogLine {
  level: number;
  msg: string;
  code?: string;
  [key: string]: unknown;
}

export class SidecarProcess {
  readonly spec: SidecarSpec;
  readonly configFile: string;
  readonly #child: ChildProcess;
  readonly #exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Log lines at warn (40) or above. */
  readonly problems: LogLine[] = [];
  #stderr = '';
  ports: Ports | undefined;

  private constructor(spec: SidecarSpec, configFile: string, child: ChildProcess) {
    this.spec = spec;
    this.configFile = configFile;
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.#stderr = (this.#stderr + chunk).slice(-8192); });
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The replica's name. */
  get name(): string {
    return this.spec.replica;
  }

  /** Where apps send their outbound calls (once started). */
  get outboundUrl(): string {
    return `http://127.0.0.1:${this.ports!.outbound}`;
  }

  /** GET on the admin listener; the JSON answer. */
  async admin<T>(route: string): Promise<T> {
    const res = await request(`http://127.0.0.1:${this.ports!.admin}${route}`);
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`admin ${route} of ${this.spec.replica} answered ${res.statusCode}`);
    }
    return await res.body.json() as T;
  }

  /** This sidecar's links to its peers (admin /endpoints), with their counters. */
  async links(): Promise<LinkState[]> {
    return (await this.admin<{ links: LinkState[] }>('/endpoints')).links;
  }

  /** Batches and envelopes sent so far on all of this sidecar's links. */
  async linkTotals(): Promise<{ batches: number; envelopes: number }> {
    const sum = { batches: 0, envelopes: 0 };
    for (const link of await this.links()) {
      sum.batches += link.batches;
      sum.envelopes += link.envelopes;
    }
    return sum;
  }

  /** Writes the config into `dir`, starts the process, resolves once it logged its listening ports. */
  static async start(spec: SidecarSpec, dir: string, timeoutMs = 15_000): Promise<SidecarProcess> {
    const configFile = path.join(dir, `${spec.replica}.yaml`);
    writeFileSync(configFile, renderConfig(spec, dir));
    const child = spawn(process.execPath, [...(spec.nodeArgs ?? []), MESH_BIN, 'sidecar', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...spec.env, NODE_OPTIONS: '' },
    });
    const sidecar = new SidecarProcess(spec, configFile, child);
    await sidecar.#waitForPorts(timeoutMs);
    return sidecar;
  }

  #waitForPorts(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(`did not report its ports within ${timeoutMs} ms`), timeoutMs);
      const fail = (why: string) => {
        clearTimeout(timer);
        this.#child.kill('SIGKILL');
        reject(new Error(`sidecar ${this.spec.replica} ${why}${this.#stderr ? `\n${this.#stderr.trim()}` : ''}`));
      };
      const onEarlyExit = (code: number | null, signal: string | null) => fail(`exited early (code ${code}, signal ${signal})`);
      this.#child.once('exit', onEarlyExit);
      const lines = createInterface({ input: this.#child.stdout! });
      lines.on('line', (line) => {
        let entry: LogLine;
        try {
          entry = JSON.parse(line) as LogLine;
        } catch {
          this.spec.onOtherLine?.(line); // not a log line
          return;
        }
        if (entry.level >= 40) this.problems.push(entry);
        const ports = entry['ports'] as Ports | undefined;
        if (!this.ports && ports && typeof ports.inbound === 'number') {
          this.ports = ports;
          clearTimeout(timer);
          this.#child.off('exit', onEarlyExit);
          resolve();
        }
      });
    });
  }

  /** SIGTERM, then wait for the exit; SIGKILL if it takes longer than `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGTERM');
    let killed = false;
    const timer = setTimeout(() => { killed = true; this.#child.kill('SIGKILL'); }, timeoutMs);
    const result = await this.#exited;
    clearTimeout(timer);
    return { ...result, killed };
  }
}

/** Every sidecar's links to its peers reach `ready` (links open at start-up, before any call). */
export async function waitForLinks(sidecars: SidecarProcess[], timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const notReady: string[] = [];
    for (const sidecar of sidecars) {
      for (const link of await sidecar.links()) if (link.state !== 'ready') notReady.push(`${sidecar.name} → ${link.address} (${link.state})`);
    }
    if (notReady.length === 0) return;
    if (Date.now() > until) throw new Error(`links not ready after ${timeoutMs} ms: ${notReady.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Made fresh for each demo run; every sidecar of the run shares it. */
const DEMO_TOKEN_KEY = randomBytes(24).toString('hex');

function renderConfig(spec: SidecarSpec, dir: string): string {
  const lines = [
    `# generated by mcp-mesh demo for replica ${spec.replica}`,
    `service: ${spec.service}`,
    `instance: ${spec.replica}`,
    `app: { port: ${spec.appPort} }`,
    'listen: { outbound: 127.0.0.1:0, inbound: 127.0.0.1:0, admin: 127.0.0.1:0 }',
    'discovery:',
    '  static:',
  ];
  const services = Object.entries(spec.peers);
  if (services.length === 0) lines[lines.length - 1] += ' {}';
  for (const [service, addresses] of services) lines.push(`    ${service}: [${addresses.join(', ')}]`);
  lines.push('log: { level: info }');
  lines.push(`storage: { dir: ${JSON.stringify(path.join(dir, `data-${spec.replica}`))} }`); // one data folder per sidecar
  // The demo's apps live in the demo process and outlive their sidecars: do not wait for them to go.
  lines.push('shutdown: { waitForApp: false }');
  // One MCP token key for the whole demo mesh, as a real mesh has (any client sidecar can route any session).
  lines.push(`mcp: { tokenKey: ${DEMO_TOKEN_KEY} }`);
  if (spec.extraYaml) lines.push(spec.extraYaml);
  return `${lines.join('\n')}\n`;
}
