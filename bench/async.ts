// The durable async scenario of `npm run bench` (run.ts calls runAsyncBench; `--async-only` runs just
// this): what `Prefer: respond-async` costs, from the 202 to the message reaching the app.
//
//   generator ─▶ sidecar A (outbound, Prefer: respond-async) ─▶ outbox on disk (fsync) ─▶ 202
//                sidecar A's dispatcher ══MCP/gRPC══▶ sidecar B ─▶ app ─▶ B records the id (fsync) ─▶ ack
//
// Processes of their own (app, sidecar B, sidecar A, generator), started the way run.ts starts them;
// each sidecar gets its own data directory in a fresh temporary folder on a real filesystem (deleted
// afterwards). The app (async-app.ts) notes when each message arrives and counts copies; this file
// also holds the async load generator (`node bench/async.ts generator`, forked, driven over IPC).
//
// Clock: both the generator's send times and the app's arrival times are process.hrtime() readings,
// CLOCK_MONOTONIC, which all processes on one machine share (nanosecond resolution, kept in µs), so
// "arrival − send" needs no clock alignment between the two processes.
import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { request } from 'undici';
import { SidecarProcess, waitForLinks } from '../sidecar/src/demo/sidecar-process.ts';
import { nowUs, type AppCount, type AppReport } from './async-app.ts';
import { cpuSeconds, machine, machineBusySeconds, memoryMiB, threadCpu } from './proc.ts';
import { ForkedChild, PoolCache, serveSpecs } from './child-ipc.ts';
import { markers } from './report-sections.ts';
import { msOrS } from './format.ts';
import { metricSum, parseSamples } from '../test/helpers/prometheus.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { begin: SECTION_BEGIN, end: SECTION_END } = markers('async');

export interface AsyncOptions {
  /** Closed loop: connections, at most `messages` messages, at most `maxDurationS` seconds. */
  connections: number;
  messages: number;
  maxDurationS: number;
  /** Open loop: `rate` messages/s for `durationS` seconds (0 skips it), over a pool of `openConnections`. */
  rate: number;
  durationS: number;
  openConnections: number;
  body: number;
  /** Unrecorded closed-loop messages first (JIT, database pages, connections). */
  warmUpMessages: number;
  /** The folder the temporary data directories go in (default os.tmpdir()). */
  dataParent: string;
  sidecarNodeArgs: string[];
  /** Where a sidecar's non-log output goes (with sidecarNodeArgs such as --trace-gc), by name. */
  rawLog?: (name: 'sidecar-a' | 'sidecar-b') => ((line: string) => void) | undefined;
}

export interface AsyncOutcome {
  markdown: string;
  /** Every message accepted, delivered exactly once, no errors. */
  ok: boolean;
}

// ---------------------------------------------------------------------------------------------------
// The generator's protocol

interface GenSpec {
  id: number;
  /** Goes into every body ("<run>:<seq>\n…"), so the app can tell runs apart. */
  run: string;
  origin: string;
  host: string;
  mode: 'open' | 'closed';
  rate: number;
  durationMs: number;
  /** closed: stop after this many messages (or durationMs, whichever first). */
  messages: number;
  connections: number;
  bodyBytes: number;
}

interface GenResult {
  id: number;
  sent: number;
  accepted: number;
  errors: number;
  outcomes: Record<string, number>;
  /** First intended send and last actual send, µs (CLOCK_MONOTONIC). */
  firstUs: number;
  lastSendUs: number;
  elapsedMs: number;
  /** Accept latency (→ 202) from the intended send time (open) or the send (closed), µs, compressed. */
  accept: string;
  /** Accept latency from the moment the request actually left, µs, compressed. */
  acceptService: string;
  /** open: how late each request left after its due time, µs, compressed. */
  lag: string;
  /** Per sequence number: intended send time, actual send time (µs), and whether it got its 202. */
  intended: number[];
  left: number[];
  ok: number[];
}

const newHistogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });

/** The async load generator (a forked process): POSTs with `Prefer: respond-async`, expects 202 + Location. */
function generatorMain(): void {
  const pools = new PoolCache();
  const poolFor = (spec: GenSpec) => pools.get(spec.origin, spec.connections);

  const run = async (spec: GenSpec): Promise<GenResult> => {
    const pool = poolFor(spec);
    const template = Buffer.alloc(spec.bodyBytes, 'b');
    const headers = { host: spec.host, 'content-type': 'application/octet-stream', prefer: 'respond-async' };
    const accept = newHistogram();
    const service = newHistogram();
    const lag = newHistogram();
    const outcomes: Record<string, number> = {};
    const intended: number[] = [];
    const left: number[] = [];
    const ok: number[] = [];
    let accepted = 0;
    let errors = 0;
    let sent = 0;
    let lastSendUs = 0;

    const one = async (seq: number, due: number): Promise<void> => {
      sent++;
      const body = Buffer.from(template);
      body.write(`${spec.run}:${seq}\n`, 0, 'latin1');
      const leftAt = nowUs();
      intended[seq] = due;
      left[seq] = leftAt;
      ok[seq] = 0;
      lastSendUs = leftAt;
      let outcome: string;
      try {
        const res = await pool.request({ path: '/bench/async', method: 'POST', headers, body });
        await res.body.dump();
        const code = res.headers['mcp-mesh-error'];
        const location = res.headers['location'];
        outcome = code ? `${res.statusCode} ${String(code)}` : String(res.statusCode);
        if (res.statusCode === 202 && typeof location === 'string' && location.startsWith('/mesh/v1/messages/')) {
          accepted++;
          ok[seq] = 1;
        } else {
          if (res.statusCode === 202) outcome = '202 without a Location';
          errors++;
        }
      } catch (err) {
        outcome = `error ${(err as { code?: string }).code ?? (err as Error).message}`;
        errors++;
      }
      const done = nowUs();
      accept.recordValue(Math.max(1, Math.round(done - due)));
      service.recordValue(Math.max(1, Math.round(done - leftAt)));
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    };

    const started = nowUs();
    let firstUs = started;
    if (spec.mode === 'open') {
      // Request i is due at t0 + i/rate; its latency counts from then (see generator.ts).
      const interval = 1e6 / spec.rate;
      const total = Math.round((spec.rate * spec.durationMs) / 1000);
      const inFlight: Promise<void>[] = [];
      const t0 = nowUs() + 1000;
      firstUs = t0;
      let i = 0;
      await new Promise<void>((resolve) => {
        const tick = () => {
          const now = nowUs();
          for (; i < total && t0 + i * interval <= now; i++) {
            const due = t0 + i * interval;
            lag.recordValue(Math.max(1, Math.round(now - due)));
            inFlight.push(one(i, due));
          }
          if (i >= total) { resolve(); return; }
          setTimeout(tick, Math.max(0, (t0 + i * interval - nowUs()) / 1000));
        };
        setTimeout(tick, 1);
      });
      await Promise.all(inFlight);
    } else {
      const end = started + spec.durationMs * 1000;
      let next = 0;
      await Promise.all(Array.from({ length: spec.connections }, async () => {
        while (next < spec.messages && nowUs() < end) await one(next++, nowUs());
      }));
    }
    const result: GenResult = {
      id: spec.id, sent, accepted, errors, outcomes, firstUs, lastSendUs, elapsedMs: (nowUs() - started) / 1000,
      accept: hdr.encodeIntoCompressedBase64(accept), acceptService: hdr.encodeIntoCompressedBase64(service), lag: hdr.encodeIntoCompressedBase64(lag),
      intended, left, ok,
    };
    accept.destroy();
    service.destroy();
    lag.destroy();
    return result;
  };

  serveSpecs(run, () => pools.closeAll());
}

// ---------------------------------------------------------------------------------------------------
// The orchestrator

type ProcName = 'sidecarA' | 'sidecarB' | 'app' | 'generator';

/** One measured run (or the warm-up) and everything learnt about it. */
interface Measured {
  title: string;
  mode: 'open' | 'closed';
  gen: GenResult;
  app: AppReport;
  /** Messages the app had not yet received when the generator stopped sending. */
  backlogAtEnd: number;
  /** From the last send to the last arrival at the app, ms. */
  drainMs: number;
  /** Messages that reached the app while the generator was still sending. */
  arrivedWhileSending: number;
  /** Whether the app got every accepted message before the deadline. */
  drained: boolean;
  /** Accepted messages that never reached the app. */
  lost: number;
  /** Arrivals of messages that were not answered 202 (a request that failed after its write). */
  arrivedUnaccepted: number;
  /** Copies beyond the first, by sequence number. */
  extraCopies: number;
  /** Arrival before the send: a clock problem (should be 0). */
  clockAnomalies: number;
  e2e: hdr.Histogram;
  e2eService: hdr.Histogram;
  accept: hdr.Histogram;
  acceptService: hdr.Histogram;
  lag: hdr.Histogram;
  lastArrivalUs: number;
  /** CPU seconds over the run, from the first send until sidecar A's outbox had settled everything. */
  cpu: Record<ProcName, number>;
  machineBusy: number;
  windowS: number;
  threads: { sidecarA: Record<string, number>; sidecarB: Record<string, number> };
  peakMiB: { sidecarA: number; sidecarB: number };
  /** Sidecar A's delivery attempts by outcome, and sidecar B's duplicates answered from its record, during the run. */
  deliveries: Record<string, number>;
  duplicatesDropped: number;
  outboxSettled: boolean;
}

export async function runAsyncBench(options: AsyncOptions, log: (line: string) => void): Promise<AsyncOutcome> {
  const dir = mkdtempSync(path.join(options.dataParent, 'mcp-mesh-bench-async-'));
  const children: { stop(): Promise<unknown> }[] = [];
  const loadBefore = os.loadavg()[0]!;
  try {
    const fs = filesystemOf(dir);
    const fsync = fsyncProbe(dir);
    log(`async: data dirs in ${dir} (${fs.type} on ${fs.device}); fsync probe p50 ${msOrS(fsync.p50)} p99 ${msOrS(fsync.p99)}`);

    const app = await ForkedChild.start(path.join(HERE, 'async-app.ts'));
    children.push(app);
    const nodeArgs = options.sidecarNodeArgs;
    // Default configuration; SidecarProcess puts each sidecar's storage.dir in `dir` (data-<replica>).
    const sidecarB = await SidecarProcess.start({ service: 'target', replica: 'sidecar-b', appPort: app.port, peers: {}, nodeArgs, onOtherLine: options.rawLog?.('sidecar-b') }, dir);
    children.unshift(sidecarB);
    const sidecarA = await SidecarProcess.start({ service: 'client', replica: 'sidecar-a', appPort: app.port, peers: { target: [`127.0.0.1:${sidecarB.ports!.inbound}`] }, nodeArgs, onOtherLine: options.rawLog?.('sidecar-a') }, dir);
    children.unshift(sidecarA);
    const generator = await ForkedChild.start(fileURLToPath(import.meta.url), ['generator']);
    children.unshift(generator);
    await waitForLinks([sidecarA], 10_000);
    const dataDirs = readdirSync(dir).filter((f) => f.startsWith('data-'));
    const pids: Record<ProcName, number> = { sidecarA: sidecarA.pid, sidecarB: sidecarB.pid, app: app.pid, generator: generator.pid };
    const idle = { sidecarA: memoryMiB(sidecarA.pid), sidecarB: memoryMiB(sidecarB.pid) };
    log(`async: app pid ${app.pid}; sidecar A pid ${sidecarA.pid}; sidecar B pid ${sidecarB.pid}; generator pid ${generator.pid}; data dirs ${dataDirs.join(', ')}`);

    const origin = `http://127.0.0.1:${sidecarA.ports!.outbound}`;
    let runNo = 0;
    const measure = async (title: string, spec: Omit<GenSpec, 'id' | 'run' | 'origin' | 'host' | 'bodyBytes'>): Promise<Measured> => {
      const run = `r${++runNo}`;
      const cpuBefore = readCpu(pids);
      const busyBefore = machineBusySeconds();
      const threadsBefore = { sidecarA: threadCpu(sidecarA.pid), sidecarB: threadCpu(sidecarB.pid) };
      const metricsBefore = await asyncMetrics(sidecarA, sidecarB);
      const t0 = nowUs();
      const gen = await generator.call<GenResult>({ ...spec, run, origin, host: 'target', bodyBytes: options.body });
      const atEnd = await app.call<AppCount>({ cmd: 'count', run });
      const backlogAtEnd = Math.max(0, gen.accepted - atEnd.unique);
      // Wait for the app to have every accepted message: until no progress for 10 s.
      let last = atEnd.unique;
      let lastProgress = Date.now();
      let drained = last >= gen.accepted;
      while (!drained && Date.now() - lastProgress < 10_000) {
        await sleep(20);
        const count = await app.call<AppCount>({ cmd: 'count', run });
        if (count.unique > last) { last = count.unique; lastProgress = Date.now(); }
        drained = count.unique >= gen.accepted;
      }
      // Then until sidecar A's outbox has recorded every delivery (nothing queued, nothing left to retry).
      const outboxSettled = await waitForOutbox(sidecarA, 10_000);
      await sleep(200); // a late duplicate would show up here
      const cpuAfter = readCpu(pids);
      const busyAfter = machineBusySeconds();
      const windowS = (nowUs() - t0) / 1e6;
      const threadsAfter = { sidecarA: threadCpu(sidecarA.pid), sidecarB: threadCpu(sidecarB.pid) };
      const metricsAfter = await asyncMetrics(sidecarA, sidecarB);
      const report = await app.call<AppReport>({ cmd: 'report', run });

      const e2e = newHistogram();
      const e2eService = newHistogram();
      let lost = 0;
      let arrivedUnaccepted = 0;
      let clockAnomalies = 0;
      let lastArrivalUs = 0;
      let arrivedWhileSending = 0;
      for (let seq = 0; seq < gen.sent; seq++) {
        const at = report.arrivals[seq] ?? -1;
        if (at >= 0 && at <= gen.lastSendUs) arrivedWhileSending++;
        if (gen.ok[seq] !== 1) { if (at >= 0) arrivedUnaccepted++; continue; }
        if (at < 0) { lost++; continue; }
        if (at < gen.left[seq]!) clockAnomalies++;
        lastArrivalUs = Math.max(lastArrivalUs, at);
        e2e.recordValue(Math.max(1, Math.round(at - gen.intended[seq]!)));
        e2eService.recordValue(Math.max(1, Math.round(at - gen.left[seq]!)));
      }
      const extraCopies = report.duplicateSeqs.reduce((n, [, copies]) => n + copies - 1, 0);
      const deliveries: Record<string, number> = {};
      for (const [k, v] of Object.entries(metricsAfter.deliveries)) {
        const d = v - (metricsBefore.deliveries[k] ?? 0);
        if (d) deliveries[k] = d;
      }
      const cpu = {} as Record<ProcName, number>;
      for (const name of Object.keys(pids) as ProcName[]) cpu[name] = cpuAfter[name] - cpuBefore[name];
      const memA = memoryMiB(sidecarA.pid);
      const memB = memoryMiB(sidecarB.pid);
      const m: Measured = {
        title, mode: spec.mode, gen, app: report, backlogAtEnd, arrivedWhileSending, drainMs: Math.max(0, (lastArrivalUs - gen.lastSendUs) / 1000), drained,
        lost, arrivedUnaccepted, extraCopies, clockAnomalies, e2e, e2eService,
        accept: hdr.decodeFromCompressedBase64(gen.accept), acceptService: hdr.decodeFromCompressedBase64(gen.acceptService), lag: hdr.decodeFromCompressedBase64(gen.lag),
        lastArrivalUs, cpu, machineBusy: busyAfter - busyBefore, windowS,
        threads: { sidecarA: diffThreads(threadsBefore.sidecarA, threadsAfter.sidecarA), sidecarB: diffThreads(threadsBefore.sidecarB, threadsAfter.sidecarB) },
        peakMiB: { sidecarA: memA.peak, sidecarB: memB.peak },
        deliveries, duplicatesDropped: metricsAfter.duplicatesDropped - metricsBefore.duplicatesDropped, outboxSettled,
      };
      const verdict = verdictOf(m);
      const others = Math.max(0, m.machineBusy - Object.values(cpu).reduce((a, b) => a + b, 0)) / windowS;
      log(`async ${title}: others ${others.toFixed(2)} vCPU; ${gen.sent} sent, ${gen.accepted} accepted (${Math.round(acceptRate(m))}/s), ${report.unique} at the app (${Math.round(deliveredRate(m))}/s), accept p50 ${msOrS(m.accept.getValueAtPercentile(50))} p99 ${msOrS(m.accept.getValueAtPercentile(99))}, end-to-end p50 ${msOrS(e2e.getValueAtPercentile(50))} p99 ${msOrS(e2e.getValueAtPercentile(99))}; ${verdict.text}`);
      if (!verdict.ok) log(`async ${title}: WARNING ${verdict.text}`);
      return m;
    };

    const runs: Measured[] = [];
    if (options.warmUpMessages > 0) {
      log(`async: warm-up, ${options.warmUpMessages.toLocaleString('en')} messages, closed loop (not in the latency figures)`);
      runs.push(await measure('warm-up', { mode: 'closed', rate: 0, durationMs: 10_000, messages: options.warmUpMessages, connections: options.connections }));
    }
    // Open loop before the closed loop: VmHWM only grows, and the flat-out run's backlog must not be
    // charged to the open-loop figures.
    if (options.durationS > 0) {
      log(`async: open loop, ${options.rate.toLocaleString('en')} msg/s for ${options.durationS} s`);
      runs.push(await measure(`open loop, ${options.rate.toLocaleString('en')} msg/s`, { mode: 'open', rate: options.rate, durationMs: options.durationS * 1000, messages: 0, connections: options.openConnections }));
    }
    if (options.messages > 0 && options.maxDurationS > 0) {
      log(`async: closed loop, ${options.connections} connections, up to ${options.messages.toLocaleString('en')} messages or ${options.maxDurationS} s`);
      runs.push(await measure(`closed loop, ${options.connections} connections`, { mode: 'closed', rate: 0, durationMs: options.maxDurationS * 1000, messages: options.messages, connections: options.connections }));
    }
    const final = { sidecarA: memoryMiB(sidecarA.pid), sidecarB: memoryMiB(sidecarB.pid) };
    const markdown = section(options, runs, { dir, fs, fsync, idle, final, load: { before: loadBefore, after: os.loadavg()[0]! } });
    const ok = runs.every((r) => verdictOf(r).ok);
    for (const r of runs) { r.e2e.destroy(); r.e2eService.destroy(); r.accept.destroy(); r.acceptService.destroy(); r.lag.destroy(); }
    return { markdown, ok };
  } finally {
    for (const child of children) await child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function verdictOf(m: Measured): { ok: boolean; text: string } {
  const problems: string[] = [];
  if (m.gen.errors) problems.push(`${m.gen.errors} not accepted`);
  if (m.lost) problems.push(`${m.lost} accepted but NEVER DELIVERED`);
  if (m.extraCopies) problems.push(`${m.extraCopies} DUPLICATE deliveries`);
  if (m.app.duplicateIds) problems.push(`${m.app.duplicateIds} message ids seen twice`);
  if (m.arrivedUnaccepted) problems.push(`${m.arrivedUnaccepted} delivered without a 202`);
  if (m.app.withoutId) problems.push(`${m.app.withoutId} without mcp-mesh-message-id`);
  if (m.clockAnomalies) problems.push(`${m.clockAnomalies} arrived before they were sent (clock)`);
  if (!m.outboxSettled) problems.push('outbox not settled within 10 s');
  if (problems.length === 0) return { ok: true, text: `all ${m.gen.accepted.toLocaleString('en')} delivered exactly once` };
  return { ok: false, text: problems.join(', ') };
}

const acceptRate = (m: Measured) => m.gen.accepted / ((m.gen.lastSendUs - m.gen.firstUs) / 1e6 || 1);
/** Messages arriving at the app per second, from the first (intended) send to the last arrival. */
const deliveredRate = (m: Measured) => m.app.unique / ((m.lastArrivalUs - m.gen.firstUs) / 1e6 || 1);

// ---------------------------------------------------------------------------------------------------
// The report section

interface Context {
  dir: string;
  fs: Filesystem;
  fsync: { p50: number; p99: number; count: number };
  idle: { sidecarA: { peak: number; current: number }; sidecarB: { peak: number; current: number } };
  final: { sidecarA: { peak: number; current: number }; sidecarB: { peak: number; current: number } };
  load: { before: number; after: number };
}

function section(options: AsyncOptions, runs: Measured[], c: Context): string {
  const m = machine();
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: HERE, encoding: 'utf8' }).trim();
  } catch { /* not a git checkout */ }
  const out: string[] = [SECTION_BEGIN, '## Durable async calls (`Prefer: respond-async`)', ''];
  out.push(`${new Date().toISOString()} · commit ${commit} · \`npm run bench\` (\`--async-only\` runs just this) · ${m.cpus} CPUs (nproc), ${m.model}, Node ${m.node}; 1-minute load average ${c.load.before.toFixed(2)} before, ${c.load.after.toFixed(2)} after.`, '');
  out.push('**Setup:** generator → sidecar A (outbound, `Host: target`, `Prefer: respond-async`, `POST` with a',
    `${options.body.toLocaleString('en')}-byte body) → SQLite outbox in A's data dir (WAL, \`synchronous=FULL\`: fsync, group commit, on a worker`,
    'thread) → **202** + `Location`. A\'s dispatcher then delivers over the MCP/gRPC link to sidecar B, which passes it to',
    'the app, records the message id on its own disk (fsync) and acknowledges; A marks it delivered (another commit).',
    'The app notes the arrival time of each message (by the sequence number at the start of its body), counts copies',
    'per sequence number and per `mcp-mesh-message-id`, and answers 200 with an empty body. Default sidecar config',
    '(`storage.deliveryConcurrency` 64). Fresh processes and data dirs for this scenario, deleted afterwards.', '');
  out.push(`**Disk:** the data dirs were in \`${path.dirname(c.dir)}\`: **${c.fs.type}** on ${c.fs.device}${c.fs.options ? ` (${c.fs.options})` : ''}${c.fs.note ? `; ${c.fs.note}` : ''}. A 4 KiB write + fdatasync there took p50 ${msOrS(c.fsync.p50)}, p99 ${msOrS(c.fsync.p99)} (${c.fsync.count} tries, just before the run).`, '');
  out.push('**Clock:** send times (generator) and arrival times (app) are both `process.hrtime()`, i.e. CLOCK_MONOTONIC, which',
    'every process on the machine shares: nanosecond resolution, kept in µs; no alignment between processes is needed.',
    'End-to-end = arrival at the app − the *intended* send time (open loop: no coordinated omission, as in',
    'the sync runs) or the send time (closed loop). Accept = the 202 is in − the same start.', '');

  out.push('### Delivered exactly once?', '');
  out.push('| run | sent | 202 | not accepted | reached the app | lost | duplicates | delivery attempts (A) | answered from B\'s record | verdict |', '|---|---:|---:|---:|---:|---:|---:|---|---:|---|');
  for (const r of runs) {
    const v = verdictOf(r);
    const attempts = Object.entries(r.deliveries).map(([k, n]) => `${k} ${n.toLocaleString('en')}`).join(', ') || '—';
    out.push(`| ${r.title} | ${r.gen.sent.toLocaleString('en')} | ${r.gen.accepted.toLocaleString('en')} | ${r.gen.errors} | ${r.app.unique.toLocaleString('en')} | ${r.lost ? `**${r.lost}**` : 0} | ${r.extraCopies ? `**${r.extraCopies}**` : 0} | ${attempts} | ${r.duplicatesDropped} | ${v.ok ? `✅ ${v.text}` : `❌ **${v.text}**`} |`);
  }
  out.push('');
  const failed = runs.filter((r) => !verdictOf(r).ok);
  if (failed.length) out.push(`> **⚠️ MESSAGES LOST, DUPLICATED OR REFUSED in ${failed.map((r) => r.title).join(', ')}: the figures below do not describe a working outbox.**`, '');
  for (const r of runs) {
    const odd = Object.entries(r.gen.outcomes).filter(([k]) => k !== '202');
    if (odd.length) out.push(`Answers other than 202 (${r.title}): ${odd.map(([k, n]) => `${k}: ${n}`).join('; ')}.`, '');
  }

  const measured = runs.filter((r) => r.title !== 'warm-up');
  const others = (r: Measured) => Math.max(0, r.machineBusy - (r.cpu.sidecarA + r.cpu.sidecarB + r.cpu.app + r.cpu.generator)) / r.windowS;
  const p = (h: hdr.Histogram) => [50, 90, 99, 99.9].map((q) => msOrS(h.getValueAtPercentile(q))).join(' | ');
  out.push('### Accept (send → 202, message on disk) and end-to-end (send → arrival at the app)', '');
  out.push('| run | messages | accepted msg/s | accept p50 | p90 | p99 | p99.9 | max | delivered msg/s | end-to-end p50 | p90 | p99 | p99.9 | max |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of measured) {
    out.push(`| ${r.title} | ${r.gen.sent.toLocaleString('en')} | ${Math.round(acceptRate(r)).toLocaleString('en')} | ${p(r.accept)} | ${msOrS(r.accept.maxValue)} | ${Math.round(deliveredRate(r)).toLocaleString('en')} | ${p(r.e2e)} | ${msOrS(r.e2e.maxValue)} |`);
  }
  out.push('');
  out.push('*accepted msg/s*: 202s per second over the sending; *delivered msg/s*: distinct messages reaching the app per',
    'second, from the first send to the last arrival.', '');
  const disturbed = measured.filter((r) => others(r) > 0.25);
  if (disturbed.length) out.push(`> ⚠️ Other work on the machine took ${disturbed.map((r) => `${others(r).toFixed(2)} vCPU during the ${r.title}`).join(' and ')} (the *others* column below: busy CPU not used by the benchmark's processes): on ${m.cpus} vCPUs that moves the figures a lot; repeat the run on a quiet machine.`, '');
  for (const r of measured) {
    if (r.mode === 'open') {
      out.push(`Open loop: requests left on average ${msOrS(r.lag.mean)} after their due time (p99 ${msOrS(r.lag.getValueAtPercentile(99))}, max ${msOrS(r.lag.maxValue)}; Node timers tick in whole ms), included above. From the moment each request actually left (service time): accept p50 ${msOrS(r.acceptService.getValueAtPercentile(50))} / p99 ${msOrS(r.acceptService.getValueAtPercentile(99))}, end-to-end p50 ${msOrS(r.e2eService.getValueAtPercentile(50))} / p99 ${msOrS(r.e2eService.getValueAtPercentile(99))}. Backlog when sending stopped: ${r.backlogAtEnd} message${r.backlogAtEnd === 1 ? '' : 's'}.`, '');
    } else {
      const sendingS = (r.gen.lastSendUs - r.gen.firstUs) / 1e6;
      const drainS = r.drainMs / 1000;
      out.push(`Closed loop: ${r.gen.sent.toLocaleString('en')} messages in ${sendingS.toFixed(2)} s of sending, during which ${r.arrivedWhileSending.toLocaleString('en')} reached the app (**${Math.round(r.arrivedWhileSending / (sendingS || 1)).toLocaleString('en')} msg/s delivered while accepting**); the other ${r.backlogAtEnd.toLocaleString('en')} waited in the outbox and reached the app in the ${drainS.toFixed(2)} s after the last send (**${Math.round((r.app.unique - r.arrivedWhileSending) / (drainS || 1)).toLocaleString('en')} msg/s delivered with nothing else to do**). End-to-end latency here is mostly time spent in that backlog: it grows with the length of the run as long as accepting outpaces delivering.`, '');
    }
  }

  out.push('### CPU and memory', '');
  out.push('CPU = utime + stime (`/proc/<pid>/stat`, all threads) from the first send until sidecar A had recorded every delivery,',
    'per 1,000 messages accepted and delivered; the split by thread is from `/proc/<pid>/task/*/stat`.', '');
  out.push('| run | sidecar A s/1,000 | sidecar B s/1,000 | app | generator | A vCPU | B vCPU | machine busy (of ' + m.cpus + ') | others | peak RSS A / B |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of measured) {
    const perK = (cpu: number) => (r.app.unique ? (cpu / r.app.unique) * 1000 : 0).toFixed(3);
    out.push(`| ${r.title} | ${perK(r.cpu.sidecarA)} | ${perK(r.cpu.sidecarB)} | ${perK(r.cpu.app)} | ${perK(r.cpu.generator)} | ${(r.cpu.sidecarA / r.windowS).toFixed(2)} | ${(r.cpu.sidecarB / r.windowS).toFixed(2)} | ${(r.machineBusy / r.windowS).toFixed(2)} | ${others(r).toFixed(2)} | ${r.peakMiB.sidecarA.toFixed(0)} / ${r.peakMiB.sidecarB.toFixed(0)} MiB |`);
  }
  out.push('');
  for (const r of measured) {
    const split = (t: Record<string, number>) => {
      const total = Object.values(t).reduce((a, b) => a + b, 0) || 1;
      return Object.entries(t).sort((a, b) => b[1] - a[1]).filter(([, v]) => v / total >= 0.02)
        .map(([k, v]) => `${k} ${Math.round((v / total) * 100)}%`).join(', ');
    };
    out.push(`Threads (${r.title}): sidecar A ${split(r.threads.sidecarA)}; sidecar B ${split(r.threads.sidecarB)}.`, '');
  }
  out.push(`RSS of the idle sidecars before the first message: A ${c.idle.sidecarA.current.toFixed(1)} MiB, B ${c.idle.sidecarB.current.toFixed(1)} MiB. Peak RSS at the end: sidecar A ${c.final.sidecarA.peak.toFixed(1)} MiB, sidecar B ${c.final.sidecarB.peak.toFixed(1)} MiB (current ${c.final.sidecarA.current.toFixed(1)} / ${c.final.sidecarB.current.toFixed(1)} MiB).`, '');
  out.push(SECTION_END);
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------------
// Processes and probes

function readCpu(pids: Record<ProcName, number>): Record<ProcName, number> {
  return { sidecarA: cpuSeconds(pids.sidecarA), sidecarB: cpuSeconds(pids.sidecarB), app: cpuSeconds(pids.app), generator: cpuSeconds(pids.generator) };
}

function diffThreads(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, v] of after) {
    const name = key.slice(0, key.indexOf('\u0000'));
    const label = name === 'V8Worker' ? 'GC/compiler (V8Worker)' : name === 'message-store' ? 'message-store (SQLite)' : name;
    out[label] = (out[label] ?? 0) + v - (before.get(key) ?? 0);
  }
  return out;
}

interface Filesystem {
  type: string;
  device: string;
  mount: string;
  options: string;
  note: string;
}

/** What `dir` is on: `df -PT`, the mount options, and for a block device whether it has a volatile write cache. */
function filesystemOf(dir: string): Filesystem {
  const fs: Filesystem = { type: 'unknown', device: 'unknown', mount: '', options: '', note: '' };
  try {
    const line = execFileSync('df', ['-PT', dir], { encoding: 'utf8' }).trim().split('\n')[1]!.split(/\s+/);
    fs.device = line[0]!;
    fs.type = line[1]!;
    fs.mount = line[6]!;
    const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).filter((f) => f[1] === fs.mount);
    fs.options = mounts.at(-1)?.[3] ?? '';
    const block = /^\/dev\/([a-z]+)\d*$/.exec(fs.device)?.[1];
    if (block) {
      const read = (f: string) => { try { return readFileSync(`/sys/block/${block}/${f}`, 'utf8').trim(); } catch { return ''; } };
      const cache = read('queue/write_cache');
      const virtio = read('device/vendor') === '0x1af4';
      fs.note = `${virtio ? 'a virtio disk (virtual machine)' : `block device ${block}`}${cache ? `, write cache "${cache}"${cache === 'write back' ? ' (fsync sends a flush)' : ''}` : ''}`;
    } else if (fs.type === 'tmpfs') {
      fs.note = 'memory: fsync is nearly free';
    }
  } catch { /* not Linux, or no df */ }
  return fs;
}

/** p50/p99 of a 4 KiB append + fdatasync in `dir`, µs. */
function fsyncProbe(dir: string, count = 100): { p50: number; p99: number; count: number } {
  const file = path.join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t = nowUs();
      writeSync(fd, block);
      fsyncSync(fd);
      times.push(nowUs() - t);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(count * 0.5)]!, p99: times[Math.min(count - 1, Math.floor(count * 0.99))]!, count };
}

/** Sidecar A's delivery attempts by outcome; sidecar B's redeliveries answered from its record. */
async function asyncMetrics(a: SidecarProcess, b: SidecarProcess): Promise<{ deliveries: Record<string, number>; duplicatesDropped: number; queued: number }> {
  const [textA, textB] = await Promise.all([metricsText(a), metricsText(b)]);
  const deliveries: Record<string, number> = {};
  for (const { labels, value } of parseSamples(textA, 'mcp_async_deliveries_total')) {
    const outcome = labels.outcome ?? '?';
    deliveries[outcome] = (deliveries[outcome] ?? 0) + value;
  }
  const duplicatesDropped = metricSum(textB, 'mcp_async_duplicates_dropped_total');
  return { deliveries, duplicatesDropped, queued: outboxQueued(textA) };
}

/** Messages a sidecar's outbox still holds queued, from its /metrics text. */
export function outboxQueued(metrics: string): number {
  return metricSum(metrics, 'mcp_outbox_messages', { state: 'queued' });
}

/** A sidecar's Prometheus exposition (admin /metrics). */
export async function metricsText(sidecar: SidecarProcess): Promise<string> {
  const res = await request(`http://127.0.0.1:${sidecar.ports!.admin}/metrics`);
  return await res.body.text();
}

/** Until sidecar A's outbox holds nothing queued (every delivery recorded), or the timeout. */
async function waitForOutbox(sidecar: SidecarProcess, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (outboxQueued(await metricsText(sidecar)) === 0) return true;
    if (Date.now() > until) return false;
    await sleep(50);
  }
}

if (import.meta.main && process.argv[2] === 'generator') generatorMain();
