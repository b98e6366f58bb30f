// Turns what the demo saw into the printed summary, and decides whether anything unexpected happened.
// Pure functions over plain data, so the report reads top to bottom like the printed text.
import type { Outcome } from './load.ts';

export interface ReplicaReport {
  service: string;
  replica: string;
  pid: number;
  inbound: number;
  /** Requests the replica's app answered, by route. */
  served: Map<string, number>;
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

export interface DemoReport {
  replicas: ReplicaReport[];
  outcomes: Outcome[];
  links: LinkReport[];
  warnings: SidecarWarning[];
  exits: SidecarExit[];
  timings: { startMs: number; loadMs: number; stopMs: number; totalMs: number };
  /** Failures outside the calls themselves (start-up, time limit…). */
  failures: string[];
}

/** Codes a sidecar may log as a warning because the demo provoked them on purpose. */
const EXPECTED_WARNING_CODES = new Set(['UNKNOWN_SERVICE']);

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

  // What the sidecars logged at warning level or above.
  const warnings = new Map<string, number>();
  for (const w of report.warnings) {
    const expected = w.level < 50 && (w.duringShutdown || (w.code !== undefined && EXPECTED_WARNING_CODES.has(w.code)));
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
  out.push('', `Time: start ${secs(t.startMs)}, load ${secs(t.loadMs)}, stop ${secs(t.stopMs)}, total ${secs(t.totalMs)}`);
  out.push(`Calls: ${report.outcomes.length}; unexpected errors: ${bad.length}`);
  if (problems.length) {
    out.push('', `FAILED: ${problems.length} unexpected problem(s):`);
    for (const p of problems) out.push(`  - ${p}`);
  } else {
    out.push('', 'OK: every call got the answer it should have; every sidecar stopped cleanly.');
  }
  return { text: `${out.join('\n')}\n`, problems };
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
