// `mcp-mesh demo`: a complete local mesh on 127.0.0.1, a short mixed load, a printed summary.
// Flow (see README.md here): start apps → start sidecar processes, callees first (their inbound ports
// go into their callers' static discovery) → wait for every link → load → read link counters →
// the MCP section (an SDK server's replicas, the same SDK clients with and without session
// affinity) → SIGTERM every sidecar, callers first → print → exit 0 only if nothing unexpected
// happened.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { closeAgent, startApp, type DemoApp, type ServiceName } from './apps.ts';
import { runAsyncDemo, writeAsyncPolicy, type AsyncReport } from './async-demo.ts';
import { runLoad, type LoadOptions, type Outcome } from './load.ts';
import type { McpDemo, McpRunOptions } from './mcp-demo.ts';
import { SidecarProcess, waitForLinks } from './sidecar-process.ts';
import { render, type LinkReport, type McpReport, type SidecarExit, type SidecarWarning } from './summary.ts';

/** Who runs, how many replicas, and whom each service calls (its sidecar's static discovery). */
const TOPOLOGY: { service: ServiceName; replicas: number; calls: ServiceName[] }[] = [
  { service: 'payments', replicas: 2, calls: [] },
  { service: 'events', replicas: 2, calls: [] },
  { service: 'orders', replicas: 2, calls: ['payments'] },
  { service: 'frontend', replicas: 1, calls: ['orders', 'payments', 'events'] },
];

const USAGE = `usage: mcp-mesh demo [--requests N] [--concurrency N] [--burst N] [--upload-mib N] [--async-calls N] [--async-events N] [--mcp-clients N] [--mcp-calls N] [--keep]
  --requests N     plain calls in the mixed phase (default 600)
  --concurrency N  calls in flight in the mixed phase (default 8)
  --burst N        calls fired at once in the burst phase (default 200)
  --upload-mib N   size of each large upload (default 20)
  --async-calls N  async charges (Prefer: respond-async) in the async section (default 200)
  --async-events N events published to a topic in the async section (default 50)
  --mcp-clients N  MCP SDK clients per transport and client sidecar (default 10; 0 skips the MCP section)
  --mcp-calls N    tool calls per MCP client (default 5)
  --keep           keep the generated sidecar config files (their folder is printed)`;

interface Replica {
  service: ServiceName;
  replica: string;
  app: DemoApp;
  sidecar?: SidecarProcess;
}

export async function runDemo(args: string[]): Promise<number> {
  let options: LoadOptions;
  let mcpOptions: McpRunOptions;
  let asyncOptions: { calls: number; events: number };
  let keep = false;
  try {
    const { values } = parseArgs({
      args, strict: true,
      options: {
        requests: { type: 'string', default: '600' }, concurrency: { type: 'string', default: '8' },
        burst: { type: 'string', default: '200' }, 'upload-mib': { type: 'string', default: '20' },
        'async-calls': { type: 'string', default: '200' }, 'async-events': { type: 'string', default: '50' },
        'mcp-clients': { type: 'string', default: '10' }, 'mcp-calls': { type: 'string', default: '5' },
        keep: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    keep = values.keep;
    options = {
      requests: count(values.requests, 'requests'), concurrency: count(values.concurrency, 'concurrency'),
      burst: count(values.burst, 'burst'), uploadBytes: count(values['upload-mib'], 'upload-mib') * (1 << 20),
      streams: 2, uploads: 2, deadlineMs: 30_000,
    };
    asyncOptions = { calls: count(values['async-calls'], 'async-calls'), events: count(values['async-events'], 'async-events') };
    mcpOptions = { clients: count(values['mcp-clients'], 'mcp-clients'), calls: count(values['mcp-calls'], 'mcp-calls'), deadlineMs: 15_000 };
  } catch (err) {
    process.stderr.write(`mcp-mesh demo: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }

  const t0 = performance.now();
  const log = (line: string) => process.stdout.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(4)} s] ${line}\n`);
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-demo-'));
  const replicas: Replica[] = [];
  const failures: string[] = [];
  const outcomes: Outcome[] = [];
  let links: LinkReport[] = [];
  const exits: SidecarExit[] = [];
  let shutdownAt = Number.POSITIVE_INFINITY;
  const timings = { startMs: 0, loadMs: 0, asyncMs: 0, mcpMs: 0, stopMs: 0, totalMs: 0 };
  let asyncReport: AsyncReport | undefined;
  let mcp: McpDemo | undefined;
  let mcpReport: McpReport | undefined;
  let mcpSkipped: string | undefined = mcpOptions.clients === 0 ? 'skipped (--mcp-clients 0)' : undefined;

  // Ctrl-C stops the demo the same way the end of the demo does.
  const interrupted = new AbortController();
  const onSignal = () => interrupted.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    log(`starting ${TOPOLOGY.reduce((n, t) => n + t.replicas, 0)} replicas (app + sidecar process each); sidecar configs in ${dir}`);
    for (const { service, replicas: n } of TOPOLOGY) {
      for (let i = 1; i <= n; i++) replicas.push({ service, replica: `${service}-${i}`, app: await startApp(service, `${service}-${i}`) });
    }
    await startSidecars(replicas, dir, writeAsyncPolicy(dir), log, interrupted.signal);
    await waitForLinks(replicas.map((r) => r.sidecar!), 10_000);
    timings.startMs = performance.now() - t0;
    log(`mesh ready: ${replicas.length} sidecars, every link up`);

    const frontend = replicas.find((r) => r.service === 'frontend')!;
    const loadStart = performance.now();
    try {
      await runLoad(frontend.sidecar!.ports!.outbound, options, outcomes, log, interrupted.signal);
    } finally {
      timings.loadMs = performance.now() - loadStart;
    }
    if (asyncOptions.calls + asyncOptions.events > 0) {
      const asyncStart = performance.now();
      try {
        asyncReport = await runAsyncDemo(frontend.sidecar!.ports!.outbound, asyncOptions, log, interrupted.signal);
      } finally {
        timings.asyncMs = performance.now() - asyncStart;
      }
    }
    links = await readLinks(replicas);

    if (!mcpSkipped) {
      const mcpStart = performance.now();
      try {
        const { McpDemo } = await importMcpDemo();
        mcp = new McpDemo(dir, log);
        await mcp.start(interrupted.signal);
        mcpReport = await mcp.run(mcpOptions, interrupted.signal);
      } catch (err) {
        if (!(err instanceof SdkMissing)) throw err;
        mcpSkipped = err.message;
        log(`MCP section ${err.message}`);
      } finally {
        timings.mcpMs = performance.now() - mcpStart;
      }
    }
  } catch (err) {
    failures.push((err as Error).message);
    log(`failed: ${(err as Error).message}`);
  } finally {
    // Callers first, so no sidecar loses a peer while it still has calls for it.
    const stopStart = performance.now();
    shutdownAt = Date.now();
    log('stopping: SIGTERM to every sidecar, callers first');
    if (mcp) exits.push(...await mcp.stop());
    for (const service of [...TOPOLOGY].reverse()) {
      const stopping = replicas.filter((r) => r.service === service.service && r.sidecar);
      const results = await Promise.all(stopping.map((r) => r.sidecar!.stop()));
      stopping.forEach((r, i) => exits.push({ replica: r.replica, code: results[i]!.code, signal: results[i]!.signal, killed: results[i]!.killed }));
    }
    await Promise.all(replicas.map((r) => r.app.close()));
    await closeAgent();
    if (!keep) rmSync(dir, { recursive: true, force: true });
    timings.stopMs = performance.now() - stopStart;
    timings.totalMs = performance.now() - t0;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  const everySidecar = [...replicas, ...(mcp?.sidecars ?? [])];
  const warnings: SidecarWarning[] = everySidecar.flatMap((r) => (r.sidecar?.problems ?? []).map((line) => ({
    replica: r.replica, level: line.level, code: line.code, msg: line.msg,
    duringShutdown: typeof line['time'] === 'number' && line['time'] >= shutdownAt,
  })));
  const { text, problems } = render({
    replicas: replicas.map((r) => ({ service: r.service, replica: r.replica, pid: r.sidecar?.pid ?? 0, inbound: r.sidecar?.ports?.inbound ?? 0, served: r.app.served, delivered: r.app.delivered })),
    outcomes, links, warnings, exits, timings, failures, async: asyncReport, mcp: mcpReport, mcpSkipped,
  });
  process.stdout.write(text);
  return problems.length === 0 ? 0 : 1;
}

/** Start sidecars in waves: a service starts once every service it calls is up (static discovery). */
async function startSidecars(replicas: Replica[], dir: string, asyncPolicy: string, log: (line: string) => void, signal: AbortSignal): Promise<void> {
  const started = new Set<ServiceName>();
  while (started.size < TOPOLOGY.length) {
    signal.throwIfAborted();
    const wave = TOPOLOGY.filter((t) => !started.has(t.service) && t.calls.every((c) => started.has(c)));
    if (wave.length === 0) throw new Error('the demo topology has a cycle');
    await Promise.all(replicas.filter((r) => wave.some((t) => t.service === r.service)).map(async (r) => {
      const calls = TOPOLOGY.find((t) => t.service === r.service)!.calls;
      const peers = Object.fromEntries(calls.map((callee) => [callee,
        replicas.filter((p) => p.service === callee).map((p) => `127.0.0.1:${p.sidecar!.ports!.inbound}`)]));
      // The frontend publishes: it loads the policies that hold the topic's subscriptions.
      const extraYaml = r.service === 'frontend' ? `policies: [${JSON.stringify(asyncPolicy)}]` : undefined;
      r.sidecar = await SidecarProcess.start({ service: r.service, replica: r.replica, appPort: r.app.port, peers, ...(extraYaml ? { extraYaml } : {}) }, dir);
      r.app.sidecarOutbound = r.sidecar.ports!.outbound;
      const p = r.sidecar.ports!;
      log(`  ${r.replica.padEnd(11)} app :${r.app.port}  sidecar pid ${r.sidecar.pid}: outbound :${p.outbound}, inbound :${p.inbound}, admin :${p.admin}${calls.length ? `  → ${calls.join(', ')}` : ''}`);
    }));
    for (const t of wave) started.add(t.service);
  }
}

async function readLinks(replicas: Replica[]): Promise<LinkReport[]> {
  const byInbound = new Map(replicas.map((r) => [`127.0.0.1:${r.sidecar!.ports!.inbound}`, r.replica]));
  const links: LinkReport[] = [];
  for (const r of replicas) {
    for (const link of await r.sidecar!.links()) {
      links.push({ from: r.replica, to: byInbound.get(link.address) ?? link.address, state: link.state, batches: link.batches, envelopes: link.envelopes });
    }
  }
  return links;
}

class SdkMissing extends Error {}

/**
 * The MCP section's module, loaded only now: it imports @modelcontextprotocol/sdk, a dev dependency
 * that `mcp-mesh sidecar` never loads. Without the SDK (npm ci --omit=dev) the section is skipped.
 */
async function importMcpDemo(): Promise<typeof import('./mcp-demo.ts')> {
  try {
    return await import('./mcp-demo.ts');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND' && e.message.includes('@modelcontextprotocol/sdk')) {
      throw new SdkMissing('skipped: @modelcontextprotocol/sdk is not installed (a dev dependency: run npm ci)');
    }
    throw err;
  }
}

function count(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got ${JSON.stringify(value)}`);
  return n;
}
