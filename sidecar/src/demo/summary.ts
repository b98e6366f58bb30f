// Turns what the demo saw into the printed summary (the MCP section included), and decides whether
// anything unexpected happened.
// Pure functions over plain data, so the report reads top to bottom like the printed text.
import type { AsyncReport } from './async-demo.ts';
import type { Outcome } from './load.ts';

export interface ReplicaReport {
  service: string;
  replica: string;
  pid: number;
  inbound: number;
  /** Requests the replica's app answered, by route. */
  served: Map<string, number>;
  /** Async messages and events delivered to the replica's app, by route. */
  delivered?: Map<string, number>;
}

export interface LinkReport {
  from: string;
  to: string;
  state: string;
  batches: number;
  envelopes: number;
}

export interface SidecarExit {
  replica: string;
  code: number | null;
  signal: string | null;
  killed: boolean;
}

export interface SidecarWarning {
  replica: string;
  level: number;
  code?: string;
  msg: string;
  duringShutdown: boolean;
}

/** Failed clients that got the same answer (a replica's name counts as the same answer). */
export interface McpFailure {
  /** HTTP status behind the SDK's error, when it reports one. */
  status?: number;
  /** The JSON-RPC error message of the first such answer, or the error's text. */
  message: string;
  count: number;
  /** Where the clients failed: connect, tool call, terminate → how many. */
  at: Record<string, number>;
}

/** One run: `clients` SDK clients over one transport through one client sidecar. */
export interface McpRunReport {
  transport: 'streamable' | 'sse';
  caller: string;
  affinity: boolean;
  ok: number;
  failed: number;
  /** whoami answers received, over all clients. */
  callsOk: number;
  /** Clients whose every call was answered in one app session, counted 1, 2, 3… */
  completeSessions: number;
  /** Number of replicas that answered a client's HTTP requests (x-replica) → clients. */
  replicasPerClient: Record<string, number>;
  /** Successful clients served by a single replica, by that replica. */
  sessionsPerReplica: Record<string, number>;
  failures: McpFailure[];
  /** "Session not found" answers the replicas gave during the run (their /stats). */
  notFoundAtApps: number;
  /** Sessions the replicas created during the run. */
  appSessions: number;
}

export interface McpReport {
  /** The MCP server's replicas, by name. */
  replicas: string[];
  /** The client sidecars, and whether they keep MCP session affinity. */
  callers: { replica: string; affinity: boolean }[];
  clients: number;
  calls: number;
  runs: McpRunReport[];
  /** Each client sidecar's admin GET /sessions answer. */
  sessions: Record<string, unknown>;
}

export interface DemoReport {
  replicas: ReplicaReport[];
  outcomes: Outcome[];
  links: LinkReport[];
  warnings: SidecarWarning[];
  exits: SidecarExit[];
  timings: { startMs: number; loadMs: number; asyncMs: number; mcpMs: number; stopMs: number; totalMs: number };
  /** Failures outside the calls themselves (start-up, time limit…). */
  failures: string[];
  /** The async section, when it ran. */
  async?: AsyncReport;
  /** The MCP section, when it ran; else why not. */
  mcp?: McpReport;
  mcpSkipped?: string;
}

/** Codes a sidecar may log as a warning because the demo provoked them on purpose. */
// The demo mesh runs on loopback without certificates: the plaintext warning is expected there.
const EXPECTED_WARNING_CODES = new Set(['UNKNOWN_SERVICE', 'TLS_PLAINTEXT']);

export function render(report: DemoReport): { text: string; problems: string[] } {
  const out: string[] = [];
  const problems = [...report.failures];
  const services = [...new Set(report.replicas.map((r) => r.service))];

  out.push('', `mcp-mesh demo: ${services.length} services, ${report.replicas.length} replicas, each an app plus its own sidecar process, on 127.0.0.1`);
  out.push(`  ${services.map((s) => `${s} ×${report.replicas.filter((r) => r.service === s).length}`).join(', ')}`);

  // Calls per service and replica: what each app answered, and what the callers saw in x-replica.
  out.push('', 'Calls per service and replica (served = answered by the app; seen = x-replica headers the callers got)');
  const seen = new Map<string, number>();
  for (const o of report.outcomes) {
    if (o.replica) seen.set(o.replica, (seen.get(o.replica) ?? 0) + 1);
    if (o.upstreamReplica) seen.set(o.upstreamReplica, (seen.get(o.upstreamReplica) ?? 0) + 1);
  }
  const rows: string[][] = [['service', 'replica', 'sidecar pid', 'served', 'seen', 'routes']];
  for (const service of services) {
    const replicas = report.replicas.filter((r) => r.service === service);
    const total = replicas.reduce((sum, r) => sum + sumOf(r.served), 0);
    for (const r of replicas) {
      const served = sumOf(r.served);
      rows.push([service, r.replica, String(r.pid), String(served), String(seen.get(r.replica) ?? 0),
        [...r.served].map(([route, n]) => `${route} ${n}`).join(', ') || '-']);
      if (served !== (seen.get(r.replica) ?? 0) && report.failures.length === 0) problems.push(`${r.replica}: app answered ${served} requests but callers saw ${seen.get(r.replica) ?? 0} answers from it`);
      if (service !== 'frontend' && served === 0 && report.failures.length === 0) problems.push(`${r.replica} received no calls: load is not spread over the replicas`);
    }
    if (replicas.length > 1) rows.push(['', `(all ${service})`, '', String(total), '', '']);
  }
  out.push(...table(rows, [0, 0, 1, 1, 1, 0]));

  // Latency per call kind, measured by the caller (the frontend app), from send to last byte.
  out.push('', 'Latency by call kind (ms, from the frontend app: app → sidecar ⇒ MCP/gRPC ⇒ sidecar → app and back)');
  const kinds = [...new Set(report.outcomes.map((o) => o.kind))];
  const latency: string[][] = [['call', 'n', 'ok', 'p50', 'p90', 'p99', 'max']];
  for (const kind of kinds) {
    const all = report.outcomes.filter((o) => o.kind === kind);
    const ms = all.map((o) => o.ms).sort((a, b) => a - b);
    latency.push([kind, String(all.length), String(all.filter((o) => !o.problem).length),
      fmt(pct(ms, 50)), fmt(pct(ms, 90)), fmt(pct(ms, 99)), fmt(ms[ms.length - 1] ?? 0)]);
  }
  out.push(...table(latency, [0, 1, 1, 1, 1, 1, 1]));
  out.push('  (chained calls cross two MCP hops: frontend → orders, then orders → payments)');

  // Batching on each link, from the sending sidecar's admin /endpoints counters.
  out.push('', 'MCP links and batch sizes (sender side, from each sidecar\'s admin /endpoints; envelopes include idle heartbeats)');
  const links: string[][] = [['from', 'to', 'state', 'batches', 'envelopes', 'per batch']];
  let batches = 0;
  let envelopes = 0;
  for (const l of report.links) {
    batches += l.batches;
    envelopes += l.envelopes;
    links.push([l.from, l.to, l.state, String(l.batches), String(l.envelopes), l.batches ? (l.envelopes / l.batches).toFixed(2) : '-']);
  }
  links.push(['all links', '', '', String(batches), String(envelopes), batches ? (envelopes / batches).toFixed(2) : '-']);
  out.push(...table(links, [0, 0, 0, 1, 1, 1]));

  // Errors by code: the mesh's own (mcp-mesh-error) apart from the apps'.
  out.push('', 'Errors by code (mesh = mcp-mesh-error header; app = an error status the app itself returned)');
  const errors = new Map<string, { n: number; expected: number }>();
  for (const o of report.outcomes) {
    if (o.status >= 200 && o.status < 400 && !o.problem) continue;
    const key = o.meshError ? `mesh ${o.meshError} (${o.status})` : o.status === 0 ? 'no answer' : o.status < 400 ? `wrong answer (${o.status})` : `app ${o.status}`;
    const entry = errors.get(key) ?? { n: 0, expected: 0 };
    entry.n++;
    if (o.expectedError && !o.problem) entry.expected++;
    errors.set(key, entry);
  }
  if (errors.size === 0) out.push('  none');
  const errorRows: string[][] = [['code', 'count', 'expected', 'unexpected']];
  for (const [key, e] of errors) errorRows.push([key, String(e.n), String(e.expected), String(e.n - e.expected)]);
  if (errors.size) out.push(...table(errorRows, [0, 1, 1, 1]));
  const expectedNote = report.outcomes.filter((o) => o.expectedError && !o.problem).length;
  if (expectedNote) out.push('  (expected = provoked on purpose: a service nobody runs, a card the payments app declines)');

  const bad = report.outcomes.filter((o) => o.problem);
  for (const o of bad.slice(0, 10)) problems.push(`${o.kind}: ${o.problem}`);
  if (bad.length > 10) problems.push(`… and ${bad.length - 10} more failed calls`);

  if (report.async) {
    const section = renderAsync(report.async, report.replicas);
    out.push(...section.lines);
    problems.push(...section.problems);
  }

  const mcp = renderMcp(report.mcp, report.mcpSkipped);
  out.push(...mcp.lines);
  problems.push(...mcp.problems);

  // What the sidecars logged at warning level or above.
  const warnings = new Map<string, number>();
  for (const w of report.warnings) {
    const expected = (w.level < 50 && (w.duringShutdown || (w.code !== undefined && EXPECTED_WARNING_CODES.has(w.code))));
    const key = `${w.level >= 50 ? 'error' : 'warn'} ${w.code ?? ''} ${w.msg}`.replace(/\s+/g, ' ').slice(0, 140);
    warnings.set(key, (warnings.get(key) ?? 0) + 1);
    if (!expected) problems.push(`sidecar ${w.replica} logged: ${w.msg}${w.code ? ` (${w.code})` : ''}`);
  }
  out.push('', `Sidecar log lines at warning level or above: ${report.warnings.length}`);
  for (const [key, n] of [...warnings].slice(0, 8)) out.push(`  ${n} × ${key}`);

  // Shutdown.
  const clean = report.exits.filter((e) => e.code === 0 && !e.killed);
  out.push('', `Shutdown: SIGTERM to ${report.exits.length} sidecars; ${clean.length} exited with code 0`);
  for (const e of report.exits) {
    if (e.code !== 0 || e.killed) problems.push(`sidecar ${e.replica} ${e.killed ? 'did not stop on SIGTERM and was killed' : `exited with code ${e.code} (signal ${e.signal})`}`);
  }

  const t = report.timings;
  out.push('', `Time: start ${secs(t.startMs)}, load ${secs(t.loadMs)}, async ${secs(t.asyncMs)}, MCP section ${secs(t.mcpMs)}, stop ${secs(t.stopMs)}, total ${secs(t.totalMs)}`);
  out.push(`Calls: ${report.outcomes.length}; unexpected errors: ${bad.length}`);
  if (problems.length) {
    out.push('', `FAILED: ${problems.length} unexpected problem(s):`);
    for (const p of problems) out.push(`  - ${p}`);
  } else {
    out.push('', 'OK: every call got the answer it should have; every sidecar stopped cleanly.');
  }
  return { text: `${out.join('\n')}\n`, problems };
}

/** Async calls and events: every 202 delivered, and every app received exactly what it should. */
function renderAsync(report: AsyncReport, replicas: readonly ReplicaReport[]): { lines: string[]; problems: string[] } {
  const problems = [...report.failures];
  const delivered = (service: string, route: string) => replicas.filter((r) => r.service === service).map((r) => ({ replica: r.replica, n: r.delivered?.get(route) ?? 0 }));
  const paymentsReplicas = replicas.filter((r) => r.service === 'payments').length;
  const lines = ['', `Async (Prefer: respond-async, and pub/sub on one topic): ${report.accepted} messages accepted on disk, 202 after p50 ${report.acceptP50Ms.toFixed(1)} ms (max ${report.acceptMaxMs.toFixed(1)} ms); all settled after ${secs(report.allDeliveredMs)}`];
  lines.push(`  final states: ${Object.entries(report.states).map(([state, n]) => `${state} ${n}`).join(', ') || '-'}`);
  const charges = delivered('payments', 'POST /charge');
  const competing = delivered('events', 'POST /events/order-created');
  const broadcast = delivered('payments', 'POST /events/orders-seen');
  lines.push(`  ${report.calls} charges → payments: ${charges.map((c) => `${c.replica} ${c.n}`).join(', ')}`);
  lines.push(`  ${report.events} events → events (one replica each): ${competing.map((c) => `${c.replica} ${c.n}`).join(', ')}`);
  lines.push(`  ${report.events} events → payments (broadcast, every replica): ${broadcast.map((c) => `${c.replica} ${c.n}`).join(', ')}`);
  const expected = report.calls + report.events * (1 + paymentsReplicas);
  if (report.failures.length === 0) {
    if (report.accepted !== expected) problems.push(`async: ${report.accepted} messages accepted, expected ${expected}`);
    if ((report.states.delivered ?? 0) !== report.accepted) problems.push(`async: ${report.states.delivered ?? 0} of ${report.accepted} messages delivered`);
    if (sum(charges) !== report.calls) problems.push(`async: payments received ${sum(charges)} of ${report.calls} charges`);
    if (sum(competing) !== report.events) problems.push(`async: events received ${sum(competing)} of ${report.events} events (each exactly once)`);
    for (const b of broadcast) if (b.n !== report.events) problems.push(`async: ${b.replica} received ${b.n} of ${report.events} broadcast events`);
  }
  return { lines, problems };
}

function sum(counts: { n: number }[]): number {
  return counts.reduce((total, c) => total + c.n, 0);
}

const TRANSPORT_NAMES = { streamable: 'Streamable HTTP', sse: 'HTTP+SSE' } as const;
const TRANSPORT_ORDER = Object.keys(TRANSPORT_NAMES);

/** The section's lines, and the problems that fail the demo (only runs with affinity can have them). */
function renderMcp(report: McpReport | undefined, skipped: string | undefined): { lines: string[]; problems: string[] } {
  const out: string[] = [];
  const problems: string[] = [];
  if (!report) {
    out.push('', `MCP session affinity: ${skipped ?? 'not run (the demo stopped before it)'}`);
    return { lines: out, problems };
  }
  const names = report.replicas;
  out.push('', `MCP session affinity: ${names.length} replicas of an MCP server built with the official SDK (${names.join(', ')}), each with its own sidecar;`,
    `the same SDK clients (${report.clients} per run, ${report.calls} whoami tool calls each) through two client sidecars:`);
  for (const c of report.callers) out.push(`  ${c.replica.padEnd(20)} ${c.affinity ? 'defaults: MCP session affinity on, learned from the traffic' : 'policy: loadBalancer round-robin, mcp: { affinity: false }'}`);

  const runs = [...report.runs].sort((a, b) => TRANSPORT_ORDER.indexOf(a.transport) - TRANSPORT_ORDER.indexOf(b.transport) || Number(b.affinity) - Number(a.affinity));
  const rows: string[][] = [['transport', 'through', 'clients ok', 'failed', 'calls ok', 'replicas per client', 'typical failure']];
  for (const r of runs) {
    rows.push([TRANSPORT_NAMES[r.transport], r.affinity ? 'with affinity' : 'without (round-robin)', String(r.ok), String(r.failed),
      `${r.callsOk}/${report.clients * report.calls}`, histogram(r.replicasPerClient), r.failures[0] ? describeFailure(r.failures[0], report.clients) : '-']);
  }
  out.push('', ...table(rows, [0, 0, 1, 1, 1, 0, 0]));
  out.push('  (replicas per client: how many replicas answered a client\'s HTTP requests, by their x-replica header; "N ×M": M clients reached N replicas)');

  // Where the sessions went with affinity: spread by the balancer, each kept on its replica.
  const withAffinity = runs.filter((r) => r.affinity);
  out.push('', 'MCP sessions per replica with affinity (clients whose whole session one replica served)');
  const spread: string[][] = [['transport', ...names]];
  for (const r of withAffinity) spread.push([TRANSPORT_NAMES[r.transport], ...names.map((n) => String(r.sessionsPerReplica[n] ?? 0))]);
  out.push(...table(spread, [0, ...names.map(() => 1)]));

  const notFound = (affinity: boolean) => runs.filter((r) => r.affinity === affinity).reduce((n, r) => n + r.notFoundAtApps, 0);
  out.push('', `"Session not found" answered by the replicas (their own counts): with affinity ${notFound(true)}, without ${notFound(false)}`);
  for (const c of report.callers) {
    const created = runs.filter((r) => r.caller === c.replica).reduce((n, r) => n + r.appSessions, 0);
    out.push(`Admin /sessions of ${c.replica}: ${sessionCounts(report.sessions[c.replica], c.affinity)}; the replicas created ${created} sessions for its clients`);
  }

  for (const r of withAffinity) {
    const label = `MCP ${TRANSPORT_NAMES[r.transport]} with affinity`;
    if (r.failed > 0) problems.push(`${label}: ${r.failed} of ${report.clients} clients failed${r.failures[0] ? `, e.g. ${r.failures[0].status ?? ''} ${r.failures[0].message}` : ''}`);
    else if (r.completeSessions !== report.clients) problems.push(`${label}: ${report.clients - r.completeSessions} clients' calls were not all counted in one session`);
    const split = Object.entries(r.replicasPerClient).filter(([n]) => n !== '1').reduce((sum, [, clients]) => sum + clients, 0);
    if (split > 0) problems.push(`${label}: ${split} clients' requests did not all reach one replica`);
    if (r.notFoundAtApps > 0) problems.push(`${label}: the replicas answered "session not found" ${r.notFoundAtApps} times`);
  }
  const without = runs.filter((r) => !r.affinity);
  const failedWithout = without.reduce((n, r) => n + r.failed, 0);
  out.push('', problems.length === 0
    ? `With affinity: all ${withAffinity.length * report.clients} clients ok, every session served by one replica.`
    : `With affinity: FAILED (see below).`);
  out.push(failedWithout > 0
    ? `Without affinity: ${failedWithout} of ${without.length * report.clients} clients failed, as expected: a session's requests are spread over the replicas, and one that did not create it answers "session not found" (not counted as a demo failure).`
    : `Without affinity: no client failed this time (round-robin happened to keep each session on one replica); it usually breaks most of them. Not counted as a demo failure.`);
  return { lines: out, problems };
}

/** 404 "Session not found on mcp-2" from a replica (10 of 10: 7 at connect, 3 at tool call) */
function describeFailure(f: McpFailure, clients: number): string {
  const where = Object.entries(f.at).sort(([, a], [, b]) => b - a).map(([at, n]) => `${n} at ${at}`).join(', ');
  const from = /session not found/i.test(f.message) ? ' from a replica' : '';
  return `${f.status ?? ''} "${f.message}"${from} (${f.count} of ${clients}: ${where})`.trim();
}

/** {"1": 10} → "1 ×10"; {"2": 9, "3": 1} → "2 ×9, 3 ×1". */
function histogram(counts: Record<string, number>): string {
  return Object.entries(counts).sort(([a], [b]) => Number(a) - Number(b)).map(([n, clients]) => `${n} ×${clients}`).join(', ') || '-';
}

/** An admin /sessions answer ({ "<service>": { bound, routed, ownerGone } }) on one line. */
function sessionCounts(answer: unknown, affinity: boolean): string {
  const services = Object.entries((answer ?? {}) as Record<string, Record<string, unknown>>);
  if (services.length === 0) return `no sessions bound${affinity ? '' : ' (affinity off)'}`;
  return services.map(([service, counts]) => `${service}: ${Object.entries(counts).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`).join('; ');
}

function sumOf(map: Map<string, number>): number {
  let sum = 0;
  for (const n of map.values()) sum += n;
  return sum;
}

/** Nearest-rank percentile of sorted values. */
export function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function fmt(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms.toFixed(2);
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Left-aligned text columns, right-aligned numeric ones (align[i] = 1). */
function table(rows: string[][], align: number[]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => `  ${r.map((cell, i) => (align[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd()}`);
}
