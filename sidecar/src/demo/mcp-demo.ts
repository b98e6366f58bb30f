// The demo's MCP section (docs/mcp-affinity.md): an MCP server built with the official SDK, run as
// 3 replicas, each with its own sidecar, and the same SDK clients sent through two client sidecars:
//
//   SDK clients ─▶ mcp-client-affinity (defaults: session affinity learned from the traffic) ══╗
//   SDK clients ─▶ mcp-client-rr (policy: round-robin, mcp.affinity false) ═══════════════════╬═▶ sidecar of mcp-i ─▶ MCP server mcp-i
//
// Without affinity a client's `initialize` (or its SSE stream) lands on one replica and its next
// POST on another, which answers "session not found": the failure the mesh fixes. The SDK is a dev
// dependency, so demo.ts imports this module dynamically and `mcp-mesh sidecar` never loads it.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { MeshDispatchers, runMcpClients, type McpClientOutcome, type McpTransportKind } from './mcp-clients.ts';
import { startMcpServer, type McpServerApp } from './mcp-server.ts';
import { SidecarProcess, waitForLinks } from './sidecar-process.ts';
import type { McpFailure, McpReport, McpRunReport, SidecarExit } from './summary.ts';

export const MCP_SERVICE = 'mcp';
const REPLICAS = 3;
const TRANSPORTS: McpTransportKind[] = ['streamable', 'sse'];

export interface McpRunOptions {
  /** SDK clients per transport and client sidecar, all at once. */
  clients: number;
  /** whoami tool calls per client. */
  calls: number;
  /** Give up on the client runs after this long (counted as a failure of the demo). */
  deadlineMs: number;
}

interface Caller {
  replica: string;
  affinity: boolean;
  sidecar?: SidecarProcess;
}

interface McpReplica {
  replica: string;
  app: McpServerApp;
  sidecar?: SidecarProcess;
}

export class McpDemo {
  readonly #dir: string;
  readonly #log: (line: string) => void;
  readonly #replicas: McpReplica[] = [];
  readonly #callers: Caller[] = [
    { replica: 'mcp-client-affinity', affinity: true },
    { replica: 'mcp-client-rr', affinity: false },
  ];
  readonly #dispatchers = new MeshDispatchers();

  constructor(dir: string, log: (line: string) => void) {
    this.#dir = dir;
    this.#log = log;
  }

  /** Every sidecar of the section started so far, callers first (the order to stop them in). */
  get sidecars(): { replica: string; sidecar: SidecarProcess }[] {
    return [...this.#callers, ...this.#replicas].flatMap((r) => (r.sidecar ? [{ replica: r.replica, sidecar: r.sidecar }] : []));
  }

  /** The 3 MCP server replicas (in this process), their sidecars, then the two client sidecars. */
  async start(signal: AbortSignal): Promise<void> {
    this.#log(`MCP: starting ${REPLICAS} replicas of an MCP server (official SDK; Streamable HTTP at /mcp, HTTP+SSE at /sse + /messages), each with its own sidecar`);
    for (let i = 1; i <= REPLICAS; i++) this.#replicas.push({ replica: `${MCP_SERVICE}-${i}`, app: await startMcpServer({ replica: `${MCP_SERVICE}-${i}` }) });
    await Promise.all(this.#replicas.map(async (r) => {
      r.sidecar = await SidecarProcess.start({ service: MCP_SERVICE, replica: r.replica, appPort: r.app.port, peers: {} }, this.#dir);
      this.#log(`  ${r.replica.padEnd(19)} app :${r.app.port}  ${ports(r.sidecar)}`);
    }));
    signal.throwIfAborted();

    // A policy for `mcp` in mcp-client-rr's config only (docs/policies.md): round-robin, no affinity.
    const policyFile = path.join(this.#dir, 'mcp-without-affinity.yaml');
    writeFileSync(policyFile, [
      'apiVersion: mcp-mesh.io/v1', 'kind: Policy', 'metadata:', '  name: mcp-without-affinity', 'spec:',
      `  service: ${MCP_SERVICE}`, '  loadBalancer: { policy: round-robin }', '  mcp: { affinity: false }', '',
    ].join('\n'));
    const peers = { [MCP_SERVICE]: this.#replicas.map((r) => `127.0.0.1:${r.sidecar!.ports!.inbound}`) };
    await Promise.all(this.#callers.map(async (c) => {
      // No app calls in to these sidecars: they only carry the SDK clients' outbound calls.
      c.sidecar = await SidecarProcess.start({
        service: 'mcp-client', replica: c.replica, appPort: 1, peers,
        extraYaml: c.affinity ? undefined : `policies: [${JSON.stringify(policyFile)}]`,
      }, this.#dir);
      this.#log(`  ${c.replica.padEnd(19)} ${ports(c.sidecar)}  → ${MCP_SERVICE} ${c.affinity ? '(defaults: MCP affinity on)' : '(policy: round-robin, mcp.affinity false)'}`);
    }));
    await waitForLinks(this.sidecars.map((s) => s.sidecar), 10_000);
  }

  /** The same SDK clients through each client sidecar, one transport at a time; never throws for a client's failure. */
  async run(options: McpRunOptions, signal: AbortSignal): Promise<McpReport> {
    const runs: McpRunReport[] = [];
    const deadline = AbortSignal.any([AbortSignal.timeout(options.deadlineMs), signal]);
    const aborted = new Promise<never>((_, reject) => {
      const fail = () => reject(signal.aborted ? signal.reason : new Error(`the MCP clients did not finish within ${options.deadlineMs / 1000} s`));
      if (deadline.aborted) fail();
      else deadline.addEventListener('abort', fail, { once: true });
    });
    aborted.catch(() => {}); // raced below; unobserved when every run ends in time
    for (const caller of this.#callers) {
      for (const transport of TRANSPORTS) {
        this.#log(`MCP: ${options.clients} SDK clients × ${options.calls} tool calls over ${transport === 'sse' ? 'HTTP+SSE' : 'Streamable HTTP'} through ${caller.replica}`);
        runs.push(await Promise.race([this.#runOne(caller, transport, options), aborted]));
      }
    }
    const sessions: Record<string, unknown> = {};
    for (const c of this.#callers) sessions[c.replica] = await c.sidecar!.admin('/sessions');
    return {
      replicas: this.#replicas.map((r) => r.replica),
      callers: this.#callers.map((c) => ({ replica: c.replica, affinity: c.affinity })),
      clients: options.clients, calls: options.calls, runs, sessions,
    };
  }

  async #runOne(caller: Caller, transport: McpTransportKind, options: McpRunOptions): Promise<McpRunReport> {
    const before = this.#appCounts();
    const { outcomes } = await runMcpClients({
      transport, clients: options.clients, calls: options.calls, dispatchers: this.#dispatchers, via: caller.sidecar!, service: MCP_SERVICE, requestTimeoutMs: 5000,
    });
    const after = this.#appCounts();
    const replicasPerClient: Record<string, number> = {};
    const sessionsPerReplica: Record<string, number> = {};
    for (const o of outcomes) {
      // Every replica that answered one of the client's HTTP requests (x-replica), not only its tool calls.
      const used = [...new Set(o.trace.flatMap((t) => (t.replica ? [t.replica] : [])))];
      replicasPerClient[used.length] = (replicasPerClient[used.length] ?? 0) + 1;
      const [only] = used;
      if (o.ok && only !== undefined && used.length === 1) sessionsPerReplica[only] = (sessionsPerReplica[only] ?? 0) + 1;
    }
    const completeSessions = outcomes.filter((o) => o.ok && o.answers.length === options.calls && o.answers.every((a, i) => a.count === i + 1 && a.session === o.answers[0]!.session)).length;
    return {
      transport, caller: caller.replica, affinity: caller.affinity,
      ok: outcomes.filter((o) => o.ok).length, failed: outcomes.filter((o) => !o.ok).length,
      callsOk: outcomes.reduce((n, o) => n + o.answers.length, 0), completeSessions,
      replicasPerClient, sessionsPerReplica, failures: failures(outcomes),
      notFoundAtApps: after.notFound - before.notFound, appSessions: after.sessions - before.sessions,
    };
  }

  #appCounts(): { sessions: number; notFound: number } {
    let sessions = 0;
    let notFound = 0;
    for (const r of this.#replicas) {
      sessions += r.app.stats.sessions.streamable + r.app.stats.sessions.sse;
      notFound += r.app.stats.unknownSession;
    }
    return { sessions, notFound };
  }

  /** SIGTERM to the client sidecars, then the replicas' sidecars; then the MCP servers close. */
  async stop(): Promise<SidecarExit[]> {
    await this.#dispatchers.close();
    const exits: SidecarExit[] = [];
    for (const group of [this.#callers, this.#replicas]) {
      const stopping = group.filter((r) => r.sidecar);
      const results = await Promise.all(stopping.map((r) => r.sidecar!.stop()));
      stopping.forEach((r, i) => exits.push({ replica: r.replica, code: results[i]!.code, signal: results[i]!.signal, killed: results[i]!.killed }));
    }
    await Promise.all(this.#replicas.map((r) => r.app.close()));
    return exits;
  }
}

function ports(sidecar: SidecarProcess): string {
  const p = sidecar.ports!;
  return `sidecar pid ${sidecar.pid}: outbound :${p.outbound}, inbound :${p.inbound}, admin :${p.admin}`;
}

/** The clients' failures grouped by what they got, most frequent first; a replica's name is one group. */
function failures(outcomes: McpClientOutcome[]): McpFailure[] {
  const groups = new Map<string, McpFailure>();
  for (const o of outcomes) {
    if (o.ok) continue;
    const error = o.error ?? 'unknown error';
    // The JSON-RPC error message of the answer, when there is one: "Session not found on mcp-2".
    const message = /"message":"([^"]*)"/.exec(error)?.[1] ?? error.slice(0, 100);
    const key = `${o.status ?? '-'} ${message.replace(/\bmcp-\d+\b/g, 'mcp-N')}`;
    const group = groups.get(key) ?? { status: o.status, message, count: 0, at: {} };
    group.count++;
    const at = o.failedAt?.startsWith('call') ? 'tool call' : (o.failedAt ?? 'connect');
    group.at[at] = (group.at[at] ?? 0) + 1;
    groups.set(key, group);
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}
