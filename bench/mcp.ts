// The MCP scenario (issue 9): sessions opened per second and tool calls per second through the mesh's
// session affinity, with real processes and the official SDK on both ends.
//
//   direct:  SDK clients ─────────────────────────────────────────────────────────▶ MCP server mcp-1
//   mesh:    SDK clients ─▶ sidecar A (outbound) ══MCP/gRPC══▶ sidecar of mcp-i ─▶ MCP server mcp-i  (i = 1..3)
//   haproxy: SDK clients ─▶ HAProxy (stick table on Mcp-Session-Id) ─────────────▶ MCP server mcp-i
//
// The servers are the demo's (sidecar/src/demo/mcp-server.ts: official SDK, Streamable HTTP at /mcp
// and HTTP+SSE at /sse, a `whoami` tool answering {replica, session, count}), 3 replicas, each its
// own process with its own sidecar (default config, one shared token key). The clients are the
// demo's SDK clients (sidecar/src/demo/mcp-clients.ts), in this process, addressing the service as
// `http://mcp/…` through an HTTP proxy (sidecar A, the one replica, or HAProxy): no client code
// change. The direct target is one replica without a mesh (affinity is moot there), the baseline.
// HAProxy learns the owner from the `Mcp-Session-Id` response header, so it only takes part with
// Streamable HTTP (the HTTP+SSE session id is in the stream's body, out of its reach).
//
// Two closed loops per transport and target, each bounded by a count and a time:
//   sessions — C clients, each connecting (the initialize handshake), then closing (DELETE of the
//              session / the SSE stream cut), again and again; latency = connect + initialize;
//   calls    — C sessions opened first, then each calling `whoami` as soon as its last answer is in.
// Each is run in slices alternating the targets (direct, mesh, haproxy, then backwards…), after an
// unrecorded warm-up, so drift on the machine hits every target alike.
//
// Affinity is checked three ways: every answer of a session names the replica that created it, with
// an unbroken call count; every HTTP answer a session got carries that replica's `x-replica`; the
// servers' /stats count no request for a session they do not hold (the "session not found" 404).
//
//   node bench/mcp.ts [--clients N] [--duration S] [--sessions N] [--calls N] [--transport LIST] [--no-haproxy] [--out FILE]
import { parseArgs } from 'node:util';
import os, { tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as hdr from 'hdr-histogram-js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { connectClient, MeshDispatchers, type ClientSidecar, type LiveClient, type McpClientOutcome, type McpTransportKind } from '../sidecar/src/demo/mcp-clients.ts';
import { SidecarProcess, waitForLinks } from '../sidecar/src/demo/sidecar-process.ts';
import type { McpAppStats } from '../sidecar/src/demo/mcp-server.ts';
import { startMcpServerApp, type McpServerApp } from '../test/helpers/mcp-server-app.ts';
import { ms, plus } from './format.ts';
import { findHaproxy, haproxyConfig, startHaproxy, type HaproxyProcess } from './haproxy.ts';
import { markers, writeSection } from './report-sections.ts';
import { cpuSeconds, machine, machineBusySeconds, memoryMiB } from './proc.ts';

const { begin: MCP_BEGIN, end: MCP_END } = markers('mcp');

const SERVICE = 'mcp';
const REPLICAS = 3;

export interface McpBenchOptions {
  /** Concurrent clients (sessions loop) and open sessions (calls loop). */
  clients: number;
  /** Seconds per target in each loop (split into `slices`); 0 skips that loop. */
  sessionsDurationS: number;
  callsDurationS: number;
  /** Most sessions opened per target in the sessions loop, most tool calls per target in the calls loop. */
  maxSessions: number;
  maxCalls: number;
  /** Slices per loop and target, interleaved between the targets. */
  slices: number;
  /** Unrecorded seconds per target and loop first. */
  warmUpS: number;
  transports: McpTransportKind[];
  /** Add the HAProxy column (Streamable HTTP only) when haproxy can be found or installed. */
  haproxy: boolean;
  /** Bound on connect and on each call (the SDK's request timeout), ms. */
  requestTimeoutMs: number;
  sidecarNodeArgs: string[];
}

export const MCP_DEFAULTS: McpBenchOptions = {
  clients: 16, sessionsDurationS: 6, callsDurationS: 6, maxSessions: 20_000, maxCalls: 200_000, slices: 2, warmUpS: 1,
  transports: ['streamable', 'sse'], haproxy: true, requestTimeoutMs: 10_000, sidecarNodeArgs: [],
};

export interface McpOutcome {
  markdown: string;
  /** No client error, and affinity held, on the direct and mesh targets. */
  ok: boolean;
}

type TargetName = 'direct' | 'mesh' | 'haproxy';
type Loop = 'sessions' | 'calls';

/** Everything measured for one transport, target and loop, summed over its slices. */
interface Tally {
  transport: McpTransportKind;
  target: TargetName;
  loop: Loop;
  /** µs: connect + initialize (sessions), one tools/call (calls). */
  latency: hdr.Histogram;
  /** Sessions opened (sessions) / open for the calls (calls). */
  sessions: number;
  /** Tool calls answered (calls). */
  calls: number;
  /** Sessions that failed to open, calls that failed, closes that failed: by what happened. */
  errors: Record<string, number>;
  /** HTTP answers with status 404 the clients got. */
  notFound: number;
  /** Sessions some of whose HTTP answers came from another replica than the one that created them. */
  split: number;
  /** Tool calls answered by another replica, for another session, or out of count order. */
  misrouted: number;
  /** Sessions created by each replica, from the clients' view. */
  perReplica: Record<string, number>;
  elapsedMs: number;
  cpu: Record<string, number>;
  /** At the servers: requests for sessions they did not hold; sessions created, by replica. */
  appNotFound: number;
  appSessions: Record<string, number>;
  /** Sidecar A's /sessions counts over the slices (mesh only). */
  affinity: AffinityCounts;
  /** Sidecar A and the biggest replica sidecar after the loop (MiB): current and peak so far. */
  memory?: MeshMemory;
}

interface Target {
  name: TargetName;
  /** What the clients' proxy dispatcher points at. */
  via: ClientSidecar;
  transports: readonly McpTransportKind[];
}

interface Processes {
  apps: McpServerApp[];
  replicaSidecars: SidecarProcess[];
  sidecarA: SidecarProcess;
  haproxy: HaproxyProcess | undefined;
  /** Why there is no HAProxy column, when there is none. */
  haproxyWhy?: string;
}

export async function runMcpBench(options: McpBenchOptions, log: (line: string) => void): Promise<McpOutcome> {
  const loadBefore = os.loadavg()[0]!;
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-bench-mcp-'));
  const stops: (() => Promise<unknown>)[] = [];
  const dispatchers = new MeshDispatchers();
  try {
    const procs = await startProcesses(options, dir, stops, log);
    const targets: Target[] = [
      { name: 'direct', via: { name: 'direct', outboundUrl: `http://127.0.0.1:${procs.apps[0]!.port}` }, transports: options.transports },
      { name: 'mesh', via: procs.sidecarA, transports: options.transports },
    ];
    if (procs.haproxy) targets.push({ name: 'haproxy', via: { name: 'haproxy', outboundUrl: `http://127.0.0.1:${procs.haproxy.port}` }, transports: ['streamable'] });
    const run = new Runner(options, procs, dispatchers);
    const idle = meshMemory(procs);

    const tallies: Tally[] = [];
    for (const transport of options.transports) {
      const here = targets.filter((t) => t.transports.includes(transport));
      for (const loop of ['sessions', 'calls'] as const) {
        const seconds = loop === 'sessions' ? options.sessionsDurationS : options.callsDurationS;
        if (seconds <= 0) continue;
        const max = loop === 'sessions' ? options.maxSessions : options.maxCalls;
        log(`mcp: ${label(transport)}, ${loop} loop: warm-up ${options.warmUpS} s per target`);
        for (const target of here) await run.slice(target, transport, loop, options.warmUpS * 1000, Math.ceil(max / options.slices), undefined);
        const byTarget = new Map(here.map((t) => [t.name, newTally(transport, t.name, loop)]));
        for (let i = 0; i < options.slices; i++) {
          const order = i % 2 === 0 ? here : [...here].reverse();
          for (const target of order) await run.slice(target, transport, loop, (seconds * 1000) / options.slices, Math.ceil(max / options.slices), byTarget.get(target.name));
        }
        const memory = meshMemory(procs);
        for (const t of byTarget.values()) {
          if (t.target === 'mesh') t.memory = memory;
          log(`  ${t.target}: ${loop === 'sessions' ? `${t.sessions} sessions, ${rate(t, t.sessions)}/s` : `${t.calls} calls over ${t.sessions} sessions, ${rate(t, t.calls)}/s`}, p50 ${ms(t.latency.getValueAtPercentile(50))} p99 ${ms(t.latency.getValueAtPercentile(99))}, errors ${count(t.errors)}, split ${t.split}, misrouted ${t.misrouted}, 404 ${t.notFound}/${t.appNotFound}`);
          tallies.push(t);
        }
      }
    }
    const memory = {
      sidecarA: memoryMiB(procs.sidecarA.pid),
      replicas: procs.replicaSidecars.map((s) => memoryMiB(s.pid)),
      apps: procs.apps.map((a) => memoryMiB(a.pid)),
      haproxy: procs.haproxy ? memoryMiB(procs.haproxy.pid) : undefined,
    };
    const problems = [...procs.sidecarA.problems, ...procs.replicaSidecars.flatMap((s) => s.problems)]
      .filter((p) => p.code !== 'PLAINTEXT_LINKS' && !/plaintext|token key/i.test(p.msg));
    const markdown = report(options, tallies, { ...memory, idle }, procs.haproxyWhy, problems.map((p) => `${p.code ?? ''} ${p.msg}`.trim()), { before: loadBefore, after: os.loadavg()[0]! });
    const ok = tallies.filter((t) => t.target !== 'haproxy').every((t) => verdict(t).ok);
    return { markdown, ok };
  } finally {
    await dispatchers.close();
    for (const stop of stops.reverse()) await stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The 3 servers, their sidecars, sidecar A, HAProxy; each one's stop pushed on `stops` as it starts. */
async function startProcesses(options: McpBenchOptions, dir: string, stops: (() => Promise<unknown>)[], log: (line: string) => void): Promise<Processes> {
  const apps: McpServerApp[] = [];
  for (let i = 1; i <= REPLICAS; i++) {
    const app = await startMcpServerApp({ name: `${SERVICE}-${i}` });
    stops.push(() => app.stop());
    apps.push(app);
  }
  const nodeArgs = options.sidecarNodeArgs;
  const replicaSidecars: SidecarProcess[] = [];
  for (const app of apps) {
    const sidecar = await SidecarProcess.start({ service: SERVICE, replica: app.name, appPort: app.port, peers: {}, nodeArgs }, dir);
    stops.push(() => sidecar.stop());
    replicaSidecars.push(sidecar);
  }
  const peers = { [SERVICE]: replicaSidecars.map((s) => `127.0.0.1:${s.ports!.inbound}`) };
  // No app calls in to sidecar A: it only carries the clients' outbound calls.
  const sidecarA = await SidecarProcess.start({ service: 'mcp-client', replica: 'sidecar-a', appPort: 1, peers, nodeArgs }, dir);
  stops.push(() => sidecarA.stop());
  await waitForLinks([sidecarA], 10_000);
  log(`mcp: servers ${apps.map((a) => `${a.name} pid ${a.pid} :${a.port}`).join(', ')}; their sidecars pids ${replicaSidecars.map((s) => s.pid).join(', ')}; sidecar A pid ${sidecarA.pid} outbound :${sidecarA.ports!.outbound}`);

  let haproxy: HaproxyProcess | undefined;
  let haproxyWhy: string | undefined;
  if (!options.transports.includes('streamable')) haproxyWhy = 'only Streamable HTTP sessions can be pinned by HAProxy, and it was not run';
  else if (!options.haproxy) haproxyWhy = 'left out (--no-haproxy)';
  else {
    const found = findHaproxy(log);
    if (!found.ok) haproxyWhy = found.why;
    else {
      haproxy = await startHaproxy(found.binary, (bind) => mcpHaproxyConfig(bind, apps.map((a) => `127.0.0.1:${a.port}`)), 'haproxy-mcp');
      stops.push(() => haproxy!.stop());
      log(`mcp: HAProxy ${found.binary.version} pid ${haproxy.pid} :${haproxy.port}, stick table on Mcp-Session-Id`);
    }
  }
  return { apps, replicaSidecars, sidecarA, haproxy, haproxyWhy };
}

/**
 * Round robin for a new session; then the session id the answer hands out is stored with the server
 * that gave it, and every request carrying it goes there (nginx Plus `sticky learn` does the same).
 */
export function mcpHaproxyConfig(bind: string, servers: string[]): string {
  return haproxyConfig({
    bind, servers, balance: 'roundrobin',
    // SSE: send each answer's head and events as they come (HAProxy otherwise holds a head whose
    // body is still open, which here delayed the answer to the SDK's GET stream by ~200 ms).
    frontendLines: ['option http-no-delay'],
    backendLines: [
      'option http-no-delay',
      'stick-table type string len 128 size 1m expire 30m',
      'stick match req.hdr(mcp-session-id)',
      'stick store-response res.hdr(mcp-session-id)',
    ],
  });
}

class Runner {
  readonly #options: McpBenchOptions;
  readonly #procs: Processes;
  readonly #dispatchers: MeshDispatchers;
  /** Whose CPU each slice measures, by the name the report groups it under. */
  readonly #pids: Record<string, number>;

  constructor(options: McpBenchOptions, procs: Processes, dispatchers: MeshDispatchers) {
    this.#options = options;
    this.#procs = procs;
    this.#dispatchers = dispatchers;
    this.#pids = {
      'sidecar A': procs.sidecarA.pid,
      ...Object.fromEntries(procs.replicaSidecars.map((s, i) => [`sidecar of mcp-${i + 1}`, s.pid])),
      ...Object.fromEntries(procs.apps.map((a) => [`server ${a.name}`, a.pid])),
      ...(procs.haproxy ? { haproxy: procs.haproxy.pid } : {}),
    };
  }

  /** One slice of a loop against one target; added to `tally` unless it is a warm-up (undefined). */
  async slice(target: Target, transport: McpTransportKind, loop: Loop, durationMs: number, max: number, tally: Tally | undefined): Promise<void> {
    const runLoop = (into: Tally) => (loop === 'sessions'
      ? this.#sessionsLoop(target, transport, durationMs, max, into)
      : this.#callsLoop(target, transport, durationMs, max, into));
    if (!tally) {
      // A warm-up: the loop runs, and nothing of it is measured or kept.
      const scratch = newTally(transport, target.name, loop);
      await runLoop(scratch);
      scratch.latency.destroy();
      return;
    }
    const appsBefore = await this.#appStats();
    const affinityBefore = target.name === 'mesh' ? await this.#affinity() : undefined;
    const cpuBefore = this.#cpu();
    const started = performance.now();
    await runLoop(tally);
    tally.elapsedMs += performance.now() - started;
    for (const [name, v] of Object.entries(this.#cpu())) tally.cpu[name] = (tally.cpu[name] ?? 0) + v - (cpuBefore[name] ?? 0);
    // Closing is asynchronous at the servers (an SSE stream's end, a DELETE behind a proxy): let it land.
    await sleep(100);
    const appsAfter = await this.#appStats();
    for (const [i, after] of appsAfter.entries()) {
      const before = appsBefore[i]!;
      tally.appNotFound += after.unknownSession - before.unknownSession;
      const created = after.sessions.streamable + after.sessions.sse - before.sessions.streamable - before.sessions.sse;
      if (created) tally.appSessions[after.replica] = (tally.appSessions[after.replica] ?? 0) + created;
    }
    if (affinityBefore) addAffinity(tally.affinity, await this.#affinity(), affinityBefore);
  }

  /** C clients, each opening and closing sessions until the time or the count is up. */
  async #sessionsLoop(target: Target, transport: McpTransportKind, durationMs: number, max: number, tally: Tally): Promise<void> {
    const end = performance.now() + durationMs;
    let begun = 0;
    await Promise.all(Array.from({ length: this.#options.clients }, async () => {
      while (performance.now() < end && begun < max) {
        const index = begun++;
        const t0 = performance.now();
        const live = await this.#connect(target, transport, index, tally);
        if (!live) continue;
        tally.latency.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        tally.sessions++;
        // Streamable HTTP: the SDK opens its GET stream once initialized; let it be answered before the
        // DELETE, or the GET may reach the server after the session is gone (a 404 of our own making).
        if (transport === 'streamable') await until(() => live.outcome.trace.some((t) => t.method === 'GET'), 2000);
        await this.#close(live, tally);
        this.#check(live.outcome, tally);
      }
    }));
  }

  /** C sessions, each calling whoami until the time or the count is up; then closed. */
  async #callsLoop(target: Target, transport: McpTransportKind, durationMs: number, max: number, tally: Tally): Promise<void> {
    const opened = await Promise.all(Array.from({ length: this.#options.clients }, (_, i) => this.#connect(target, transport, i, tally)));
    const sessions = opened.filter((s): s is LiveClient => s !== undefined);
    tally.sessions += sessions.length;
    const end = performance.now() + durationMs;
    let calls = 0;
    await Promise.all(sessions.map(async (live) => {
      let expected = 1;
      let owner: string | undefined;
      let session: string | undefined;
      while (performance.now() < end && calls < max) {
        calls++;
        const t0 = performance.now();
        try {
          const answer = await live.call();
          tally.latency.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
          tally.calls++;
          owner ??= answer.replica;
          session ??= answer.session;
          if (answer.replica !== owner || answer.session !== session || answer.count !== expected) tally.misrouted++;
          expected = answer.count + 1;
        } catch (err) {
          bump(tally.errors, `tool call: ${describe(err, live.outcome)}`);
          break; // the SDK 1.x client does not re-initialize by itself; this session is done
        }
      }
    }));
    await Promise.all(sessions.map(async (live) => {
      await this.#close(live, tally);
      this.#check(live.outcome, tally);
    }));
  }

  async #connect(target: Target, transport: McpTransportKind, index: number, tally: Tally): Promise<LiveClient | undefined> {
    try {
      // The SDK bounds the initialize request, not the wait for the SSE stream's endpoint event: bound both.
      const connecting = connectClient({ transport, dispatchers: this.#dispatchers, via: target.via, service: SERVICE, requestTimeoutMs: this.#options.requestTimeoutMs, index });
      return await within(connecting, 2 * this.#options.requestTimeoutMs);
    } catch (err) {
      const outcome = (err as { outcome?: McpClientOutcome }).outcome;
      bump(tally.errors, `connect: ${outcome ? describe(undefined, outcome) : String(err)}`);
      if (outcome) this.#check(outcome, tally);
      return undefined;
    }
  }

  /** Ends a session as a client should: DELETE (Streamable HTTP), then close (cuts any stream). */
  async #close(live: LiveClient, tally: Tally): Promise<void> {
    const closing = (async () => {
      if (live.transport instanceof StreamableHTTPClientTransport && live.outcome.ok) await live.transport.terminateSession();
      await live.client.close();
    })();
    try {
      await within(closing, this.#options.requestTimeoutMs);
    } catch (err) {
      bump(tally.errors, `close: ${describe(err, live.outcome)}`);
    }
  }

  /** What one session's HTTP answers say: 404s, and which replicas answered. */
  #check(outcome: McpClientOutcome, tally: Tally): void {
    const replicas = new Set<string>();
    for (const t of outcome.trace) {
      if (t.status === 404) tally.notFound++;
      if (t.replica) replicas.add(t.replica);
    }
    const [first] = replicas;
    if (first !== undefined) tally.perReplica[first] = (tally.perReplica[first] ?? 0) + 1;
    if (replicas.size > 1) tally.split++;
  }

  #cpu(): Record<string, number> {
    const cpu: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.#pids)) cpu[name] = cpuSeconds(pid);
    const self = process.cpuUsage();
    cpu['clients (this process)'] = (self.user + self.system) / 1e6;
    cpu['machine'] = machineBusySeconds();
    return cpu;
  }

  #appStats(): Promise<McpAppStats[]> {
    return Promise.all(this.#procs.apps.map((a) => a.stats()));
  }

  async #affinity(): Promise<AffinityCounts> {
    const snapshot = await this.#procs.sidecarA.admin<Record<string, AffinityCounts>>('/sessions');
    const sum = { bound: 0, routed: 0, ownerGone: 0 };
    for (const [service, c] of Object.entries(snapshot)) if (service.split('.')[0] === SERVICE) addAffinity(sum, c);
    return sum;
  }
}

/** Sidecar A's admin `/sessions` counters for one service. */
interface AffinityCounts {
  bound: number;
  routed: number;
  ownerGone: number;
}

/** Adds `after − before` (or `after` alone) to `into`, counter by counter. */
function addAffinity(into: AffinityCounts, after: AffinityCounts, before?: AffinityCounts): void {
  for (const k of ['bound', 'routed', 'ownerGone'] as const) into[k] += after[k] - (before?.[k] ?? 0);
}

function newTally(transport: McpTransportKind, target: TargetName, loop: Loop): Tally {
  return {
    transport, target, loop,
    latency: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 }),
    sessions: 0, calls: 0, errors: {}, notFound: 0, split: 0, misrouted: 0, perReplica: {}, elapsedMs: 0, cpu: {},
    appNotFound: 0, appSessions: {}, affinity: { bound: 0, routed: 0, ownerGone: 0 },
  };
}

/** An error in a few words: the HTTP status and the JSON-RPC message when there is one. */
function describe(err: unknown, outcome: McpClientOutcome): string {
  const text = outcome.error ?? (err instanceof Error ? err.message : String(err));
  const message = /"message":"([^"]*)"/.exec(text)?.[1] ?? text.slice(0, 80);
  return `${outcome.status ?? '-'} ${message.replace(/\bmcp-\d\b/g, 'mcp-N')}`;
}

function bump(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}

/** Resolves when `done()` holds, or after `timeoutMs` anyway. */
async function until(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done() && performance.now() < deadline) await sleep(1);
}

async function within<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs); });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------
// Report

/** Whether a run is clean: no errors, and (with several replicas) affinity held. */
function verdict(t: Tally): { ok: boolean; text: string } {
  const broken: string[] = [];
  if (count(t.errors)) broken.push(`${count(t.errors)} errors`);
  if (t.notFound || t.appNotFound) broken.push(`${Math.max(t.notFound, t.appNotFound)} session not found`);
  if (t.split) broken.push(`${t.split} sessions split over replicas`);
  if (t.misrouted) broken.push(`${t.misrouted} calls off their session`);
  if (t.affinity.ownerGone) broken.push(`${t.affinity.ownerGone} owner gone`);
  return broken.length ? { ok: false, text: broken.join(', ') } : { ok: true, text: 'held' };
}

function report(options: McpBenchOptions, tallies: Tally[], memory: { sidecarA: Mem; replicas: Mem[]; apps: Mem[]; haproxy: Mem | undefined; idle: MeshMemory }, haproxyWhy: string | undefined, problems: string[], load: { before: number; after: number }): string {
  const m = machine();
  const out = [MCP_BEGIN, '## MCP sessions through the mesh', ''];
  out.push(`${m.model}, ${m.cpus} vCPU, ${m.memoryGiB.toFixed(1)} GiB, Node ${m.node}; load average ${load.before.toFixed(2)} before, ${load.after.toFixed(2)} after.`, '');
  out.push(`The demo's MCP server (official SDK, \`whoami\` tool) as ${REPLICAS} replicas, each its own process with its own sidecar; official-SDK`,
    `clients in one process addressing \`http://${SERVICE}/…\` through an HTTP proxy: **mesh** = sidecar A (default config: MCP`,
    'affinity learned from the traffic, p2c-ewma for new sessions) to the 3 replicas\' sidecars; **direct** = one replica, no proxy',
    '(affinity is moot there: the baseline); **haproxy** = one HAProxy in front of the 3 replicas, round robin, stick table',
    `learning \`Mcp-Session-Id\` from the answer (Streamable HTTP only). ${options.clients} concurrent clients; each loop runs`,
    `${options.slices} slices per target, alternating the targets, after a ${options.warmUpS} s warm-up of each.`, '');
  if (haproxyWhy) out.push(`No HAProxy column: ${haproxyWhy}.`, '');
  const p = (t: Tally) => [50, 90, 99, 99.9].map((q) => ms(t.latency.getValueAtPercentile(q))).join(' | ');
  const sessionRuns = tallies.filter((t) => t.loop === 'sessions');
  const callRuns = tallies.filter((t) => t.loop === 'calls');

  if (sessionRuns.length) {
    out.push(`### Sessions opened per second (closed loop, at most ${(options.maxSessions).toLocaleString('en')} per target, ${options.sessionsDurationS} s)`, '');
    out.push('Each client connects (initialize request, initialized notification; HTTP+SSE: the GET /sse stream first), then ends the session',
      '(DELETE; HTTP+SSE: the stream closed) and starts again. Latency = connect + initialize; the rate counts whole cycles.', '');
    out.push('| transport | target | sessions | errors | sessions/s | open p50 | p90 | p99 | p99.9 | max |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const t of sessionRuns) out.push(`| ${label(t.transport)} | ${t.target} | ${t.sessions.toLocaleString('en')} | ${count(t.errors)} | ${rate(t, t.sessions)} | ${p(t)} | ${ms(t.latency.maxValue)} |`);
    out.push('');
  }
  if (callRuns.length) {
    out.push(`### Tool calls per second over open sessions (closed loop, at most ${options.maxCalls.toLocaleString('en')} calls per target, ${options.callsDurationS} s)`, '');
    out.push(`${options.clients} sessions opened first; each calls \`whoami\` (tools/call) as soon as its last answer is in. Latency = one call.`, '');
    out.push('| transport | target | sessions | calls | errors | calls/s | p50 | p90 | p99 | p99.9 | max |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const t of callRuns) out.push(`| ${label(t.transport)} | ${t.target} | ${t.sessions} | ${t.calls.toLocaleString('en')} | ${count(t.errors)} | ${rate(t, t.calls)} | ${p(t)} | ${ms(t.latency.maxValue)} |`);
    out.push('');
    for (const transport of options.transports) {
      const d = callRuns.find((t) => t.transport === transport && t.target === 'direct');
      const me = callRuns.find((t) => t.transport === transport && t.target === 'mesh');
      if (!d || !me || !d.calls || !me.calls) continue;
      const added = (q: number) => plus(me.latency.getValueAtPercentile(q) - d.latency.getValueAtPercentile(q));
      out.push(`${label(transport)}: the mesh adds ${added(50)} at p50 and ${added(99)} at p99 per tool call, at ${(perSecond(me, me.calls) / perSecond(d, d.calls) * 100).toFixed(0)}% of the direct rate.`);
    }
    out.push('');
  }

  out.push('### Did affinity hold?', '');
  out.push('*Split*: sessions whose HTTP answers (`x-replica`) came from more than one replica. *Off session*: tool calls answered by',
    'another replica or session, or out of count order. *404*: "session not found" answers the clients got / the servers counted.',
    '*Bound / routed / owner gone*: sidecar A\'s admin `/sessions` over the runs.', '');
  out.push('| transport | target | loop | sessions | split | off session | 404 clients / servers | sessions per replica (clients) | created at the servers | bound / routed / owner gone | verdict |',
    '|---|---|---|---:|---:|---:|---:|---|---|---|---|');
  for (const t of tallies) {
    const v = verdict(t);
    const spread = (r: Record<string, number>) => Object.entries(r).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} ${n.toLocaleString('en')}`).join(', ') || '—';
    const aff = t.target === 'mesh' ? `${t.affinity.bound.toLocaleString('en')} / ${t.affinity.routed.toLocaleString('en')} / ${t.affinity.ownerGone}` : '—';
    out.push(`| ${label(t.transport)} | ${t.target} | ${t.loop} | ${t.sessions.toLocaleString('en')} | ${t.split} | ${t.misrouted} | ${t.notFound} / ${t.appNotFound} | ${spread(t.perReplica)} | ${spread(t.appSessions)} | ${aff} | ${v.ok ? '✅ held' : `❌ **${v.text}**`} |`);
  }
  out.push('');
  const errors = tallies.filter((t) => count(t.errors));
  for (const t of errors) out.push(`Errors (${label(t.transport)}, ${t.target}, ${t.loop}): ${Object.entries(t.errors).map(([k, n]) => `${k} × ${n}`).join('; ')}.`, '');

  out.push('### CPU and memory', '');
  out.push('CPU = utime + stime from `/proc/<pid>/stat` over the recorded slices of that target; per 1,000 tool calls (calls loop) or',
    'per 1,000 sessions opened and closed (sessions loop). *Replica sidecars* and *servers* are the sums over the 3 replicas.', '');
  out.push('| transport | target | loop | per 1,000 | sidecar A | replica sidecars | servers | clients | HAProxy | machine busy (of ' + m.cpus + ') | others |', '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of tallies) {
    const n = t.loop === 'calls' ? t.calls : t.sessions;
    const perK = (s: number) => (n ? ((s / n) * 1000).toFixed(3) : '—');
    const sum = (prefix: string) => Object.entries(t.cpu).filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);
    const mesh = t.target === 'mesh';
    // Busy CPU not used by the benchmark's processes: other programs on the machine, kernel work.
    const ours = Object.entries(t.cpu).filter(([k]) => k !== 'machine').reduce((a, [, v]) => a + v, 0);
    const others = Math.max(0, (t.cpu['machine'] ?? 0) - ours) / (t.elapsedMs / 1000);
    out.push(`| ${label(t.transport)} | ${t.target} | ${t.loop} | ${t.loop === 'calls' ? 'calls' : 'sessions'} | ${mesh ? perK(t.cpu['sidecar A'] ?? 0) : '—'} | ${mesh ? perK(sum('sidecar of ')) : '—'} | ${perK(sum('server '))} | ${perK(t.cpu['clients (this process)'] ?? 0)} | ${t.target === 'haproxy' ? perK(t.cpu['haproxy'] ?? 0) : '—'} | ${((t.cpu['machine'] ?? 0) / (t.elapsedMs / 1000)).toFixed(2)} vCPU | ${others > 0.25 ? `**${others.toFixed(2)}**` : others.toFixed(2)} |`);
  }
  out.push('', '*Others*: busy CPU not used by the benchmark\'s processes (other programs, kernel work); in bold above 0.25 vCPU, where the',
    'figures of that row are disturbed and the run should be repeated on a quiet machine.', '');
  const mib = (x: Mem) => `${x.peak.toFixed(1)} MiB`;
  const meshRuns = tallies.filter((t) => t.memory);
  if (meshRuns.length) {
    out.push('| after the mesh\'s … | sidecar A RSS (VmRSS) | peak so far (VmHWM) | biggest replica sidecar RSS | peak so far |', '|---|---:|---:|---:|---:|');
    for (const t of meshRuns) out.push(`| ${label(t.transport)} ${t.loop} loop | ${t.memory!.sidecarA.current.toFixed(1)} MiB | ${t.memory!.sidecarA.peak.toFixed(1)} MiB | ${t.memory!.replica.current.toFixed(1)} MiB | ${t.memory!.replica.peak.toFixed(1)} MiB |`);
    out.push('');
  }
  out.push(`RSS of the idle sidecars before the first session: sidecar A ${memory.idle.sidecarA.current.toFixed(1)} MiB, biggest replica sidecar ${memory.idle.replica.current.toFixed(1)} MiB. Peak RSS (VmHWM) at the end: sidecar A ${mib(memory.sidecarA)}; replica sidecars ${memory.replicas.map(mib).join(', ')}; servers ${memory.apps.map(mib).join(', ')}${memory.haproxy ? `; HAProxy ${mib(memory.haproxy)}` : ''}.`, '');
  if (problems.length) out.push(`Sidecar warnings and errors during the run: ${[...new Set(problems)].slice(0, 8).join('; ')}.`, '');
  out.push(MCP_END);
  return `${out.join('\n')}\n`;
}

type Mem = { peak: number; current: number };

/** Sidecar A and the replica sidecar with the highest peak (MiB): current and peak so far. */
type MeshMemory = { sidecarA: Mem; replica: Mem };

function meshMemory(procs: Processes): MeshMemory {
  const replicas = procs.replicaSidecars.map((r) => memoryMiB(r.pid));
  return { sidecarA: memoryMiB(procs.sidecarA.pid), replica: replicas.reduce((a, b) => (b.peak > a.peak ? b : a)) };
}

function label(transport: McpTransportKind): string {
  return transport === 'streamable' ? 'Streamable HTTP' : 'HTTP+SSE';
}

function count(record: Record<string, number>): number {
  return Object.values(record).reduce((a, b) => a + b, 0);
}

function perSecond(t: Tally, n: number): number {
  return t.elapsedMs ? n / (t.elapsedMs / 1000) : 0;
}

function rate(t: Tally, n: number): string {
  return Math.round(perSecond(t, n)).toLocaleString('en');
}

// ---------------------------------------------------------------------------------------------------
// Standalone

const USAGE = `usage: node bench/mcp.ts [options]
  --clients N          concurrent clients / open sessions            (BENCH_MCP_CLIENTS, default ${MCP_DEFAULTS.clients})
  --duration S         seconds per target in each loop               (BENCH_MCP_DURATION, default ${MCP_DEFAULTS.callsDurationS})
  --sessions-duration S  … in the sessions loop only (0 skips it)
  --calls-duration S     … in the calls loop only (0 skips it)
  --sessions N         most sessions per target in the sessions loop (default ${MCP_DEFAULTS.maxSessions})
  --calls N            most tool calls per target in the calls loop  (default ${MCP_DEFAULTS.maxCalls})
  --slices N           interleaved slices per loop and target        (default ${MCP_DEFAULTS.slices})
  --warm-up S          unrecorded seconds per target and loop        (default ${MCP_DEFAULTS.warmUpS})
  --transport LIST     streamable,sse                                (default both)
  --no-haproxy         no HAProxy column
  --sidecar-node-args A  Node options for the sidecars
  --out FILE           replace the MCP section of FILE (the rest is kept)`;

export function parseMcpOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): McpBenchOptions & { out?: string; help?: boolean } {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      clients: { type: 'string' }, duration: { type: 'string' }, 'sessions-duration': { type: 'string' }, 'calls-duration': { type: 'string' },
      sessions: { type: 'string' }, calls: { type: 'string' }, slices: { type: 'string' }, 'warm-up': { type: 'string' }, transport: { type: 'string' },
      'no-haproxy': { type: 'boolean' }, 'sidecar-node-args': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  const num = (flag: string, value: string | undefined, fallback: number, min: number) => {
    const n = Number(value ?? fallback);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${flag} must be a number ≥ ${min}, got ${JSON.stringify(value)}`);
    return n;
  };
  const duration = values.duration ?? env['BENCH_MCP_DURATION'];
  const transports = (values.transport ?? 'streamable,sse').split(',').map((s) => s.trim()).filter(Boolean);
  for (const t of transports) if (t !== 'streamable' && t !== 'sse') throw new Error(`--transport: unknown transport ${JSON.stringify(t)} (streamable, sse)`);
  return {
    clients: Math.round(num('clients', values.clients ?? env['BENCH_MCP_CLIENTS'], MCP_DEFAULTS.clients, 1)),
    sessionsDurationS: num('sessions-duration', values['sessions-duration'] ?? duration, MCP_DEFAULTS.sessionsDurationS, 0),
    callsDurationS: num('calls-duration', values['calls-duration'] ?? duration, MCP_DEFAULTS.callsDurationS, 0),
    maxSessions: Math.round(num('sessions', values.sessions, MCP_DEFAULTS.maxSessions, 1)),
    maxCalls: Math.round(num('calls', values.calls, MCP_DEFAULTS.maxCalls, 1)),
    slices: Math.round(num('slices', values.slices, MCP_DEFAULTS.slices, 1)),
    warmUpS: num('warm-up', values['warm-up'], MCP_DEFAULTS.warmUpS, 0),
    transports: [...new Set(transports)] as McpTransportKind[],
    haproxy: !values['no-haproxy'],
    requestTimeoutMs: MCP_DEFAULTS.requestTimeoutMs,
    sidecarNodeArgs: (values['sidecar-node-args'] ?? '').split(/\s+/).filter(Boolean),
    out: values.out,
    help: values.help,
  };
}

async function main(argv: string[]): Promise<number> {
  let options: ReturnType<typeof parseMcpOptions>;
  try {
    options = parseMcpOptions(argv);
  } catch (err) {
    process.stderr.write(`bench/mcp: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  const result = await runMcpBench(options, log);
  process.stdout.write(result.markdown);
  if (options.out && options.out !== '-') {
    writeSection(path.resolve(options.out), result.markdown, MCP_BEGIN, MCP_END);
    log(`written to ${options.out}`);
  }
  if (!result.ok) log('MCP: ERRORS, OR AFFINITY BROKEN (see "Did affinity hold?")');
  return result.ok ? 0 : 1;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => { console.error(err); process.exitCode = 1; },
  );
}
