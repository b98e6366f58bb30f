// The seed scenario of issue 9: two hosts 5 ms apart (round trip), the same small calls made three ways.
//
//   host 1 (callers, sidecar A)                 the link            host 2 (app, sidecar B)
//   a. sync:   8 workers ─────────────────────▶ relay 2.5 ms each way ─▶ app
//   b. async:  caller ─▶ sidecar A (Prefer: respond-async, 202 once on disk)
//                        A's outbox ══MCP/gRPC══▶ relay ══▶ sidecar B ─▶ app
//   c. batch:  8 workers ─▶ sidecar A (POST /mesh/v1/batch, N calls) ══▶ relay ══▶ B ─▶ app, answers back
//              (one row per batch size, 25 and 100 by default: latency against throughput)
//
// The kernel here has no netem, so the link is delay-relay.ts in its own process: 127.0.0.2 is host 2
// as host 1 sees it, and every port there is a relay port, so every byte between the hosts (the direct
// calls, the MCP link's gRPC connection) crosses the relay. Host 2's own processes (app, sidecar B)
// talk on 127.0.0.1, without delay, as processes on one host do.
//
// Processes: the app (async-app.ts: notes each call's arrival, counts copies), sidecar B, the relay,
// sidecar A (real `mcp-mesh sidecar` processes via SidecarProcess), and a generator (this file with
// `generator`, forked, driven over IPC). Each mode sends the same number of ~100-byte POSTs whose body
// starts with "<run>:<seq>\n"; a warm-up of every mode comes first and is not reported. The calls of
// each mode are cut into slices and the modes take turns (sync, async, batch, sync, …), so other load
// on the machine hits them alike; a slice ends when all its calls have reached the app.
//
// QPS = completed calls per second, from the first send to the last completion: for sync the answer,
// for batches the batch's answer (every call in it 200), for async the arrival at the app (delivered)
// — accepted/s (202s) is given too, but a 202 is a promise, not a completed call. Latency: per call
// (sync), per call = its batch's round trip (batch), send → 202 and send → arrival at the app (async;
// both clocks are process.hrtime(), CLOCK_MONOTONIC, shared by all processes on the machine).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { SidecarProcess, waitForLinks } from '../sidecar/src/demo/sidecar-process.ts';
import { nowUs, type AppCount, type AppReport } from './async-app.ts';
import { metricsText, outboxQueued } from './async.ts';
import { ForkedChild, PoolCache, serveSpecs } from './child-ipc.ts';
import { sumStats, type RelayStats } from './delay-relay.ts';
import { msOrS } from './format.ts';
import { cpuSeconds, machine, machineBusySeconds, mainThreadCpuSeconds } from './proc.ts';
import { markers, writeSection } from './report-sections.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { begin: SEED_BEGIN, end: SEED_END } = markers('seed');

/** Host 2 as host 1 sees it: only relay ports listen here. */
const HOST2 = '127.0.0.2';

export interface SeedOptions {
  /** Calls per mode. */
  calls: number;
  /** Sync workers. */
  workers: number;
  /** Callers sending batches, each its next batch when the last one's answer is in (default: as many as sync workers). */
  batchWorkers: number;
  /** Connections from the async caller to sidecar A (it does not wait for answers, only for the 202). */
  asyncConnections: number;
  /**
   * Calls per batch (at most 1,000; they all run at once, the batch's concurrency, up to 256): one
   * batch row per size, so the trade between throughput and latency shows.
   */
  batchSizes: number[];
  /** Round trip between the hosts, ms (half each way). */
  rttMs: number;
  bodyBytes: number;
  /** Unreported calls per mode first (JIT, connections, database pages); 0 for none. */
  warmUpCalls: number;
  /** Most seconds of sending per mode (the call count usually ends it first). */
  maxDurationS: number;
  /**
   * Extra sidecar YAML for both sidecars (e.g. link settings), and A's storage.deliveryConcurrency:
   * each delivery holds a slot for a round trip plus B's record (fsync) and A's settle, so the 5 ms
   * link needs more slots than the default 64 to keep thousands of messages a second moving
   * (slots ≥ rate × hold time); undefined keeps the sidecar's default.
   */
  sidecarYaml: string;
  deliveryConcurrency: number | undefined;
  sidecarNodeArgs: string[];
  /** Where the sidecars' temporary data dirs go. */
  dataParent: string;
  /** Each mode's calls are cut into this many slices, the modes taking turns. */
  slices: number;
  /** The mesh modes to run (sync always runs: it is the baseline). */
  modes: ('async' | 'batch')[];
}

export const SEED_DEFAULTS: SeedOptions = {
  calls: 10_000, workers: 8, batchWorkers: 8, asyncConnections: 64, batchSizes: [25, 100], rttMs: 5, bodyBytes: 100, warmUpCalls: 2_000,
  maxDurationS: 60, sidecarYaml: '', deliveryConcurrency: 512, sidecarNodeArgs: [], dataParent: os.tmpdir(),
  slices: 5, modes: ['async', 'batch'],
};

type Mode = 'sync' | 'async' | 'batch';

/** One row of the report: a mode, and for batches the batch size. */
interface Variant {
  mode: Mode;
  batchSize: number;
  label: string;
}

// ---------------------------------------------------------------------------------------------------
// The generator (a forked process)

interface GenSpec {
  id: number;
  mode: Mode;
  /** Goes into every body ("<run>:<seq>\n…"), so the app can tell runs apart. */
  run: string;
  origin: string;
  calls: number;
  connections: number;
  batchSize: number;
  bodyBytes: number;
  maxDurationMs: number;
}

interface GenResult {
  sent: number;
  /** Calls answered as they should be: 200 (sync, each batch entry) or 202 + Location (async). */
  ok: number;
  outcomes: Record<string, number>;
  /** First send, last send, last answer: µs, CLOCK_MONOTONIC. */
  firstUs: number;
  lastSendUs: number;
  lastDoneUs: number;
  /** Per call: sync round trip, batch round trip, or async send → 202; µs, compressed. */
  latency: string;
  /** async: when each call left (µs), and 1 where it got its 202. */
  left: number[];
  accepted: number[];
}

const newHistogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });

function bodyOf(run: string, seq: number, bytes: number): string {
  const head = `${run}:${seq}\n`;
  return head + 'b'.repeat(Math.max(0, bytes - head.length));
}

function generatorMain(): void {
  const pools = new PoolCache();

  const run = async (spec: GenSpec): Promise<GenResult> => {
    const pool = pools.get(spec.origin, spec.connections);
    const latency = newHistogram();
    const outcomes: Record<string, number> = {};
    const left: number[] = [];
    const accepted: number[] = [];
    const tally = (outcome: string, n = 1) => { outcomes[outcome] = (outcomes[outcome] ?? 0) + n; };
    let ok = 0;
    let sent = 0;
    let lastSendUs = 0;
    let lastDoneUs = 0;
    const failure = (err: unknown) => `error ${(err as { code?: string }).code ?? (err as Error).message}`;

    /** One call (sync, or async to the local sidecar). */
    const one = async (seq: number): Promise<void> => {
      const headers: Record<string, string> = { host: 'target', 'content-type': 'text/plain' };
      if (spec.mode === 'async') headers['prefer'] = 'respond-async';
      sent++;
      const at = nowUs();
      lastSendUs = at;
      left[seq] = at;
      accepted[seq] = 0;
      try {
        const res = await pool.request({ path: '/seed', method: 'POST', headers, body: bodyOf(spec.run, seq, spec.bodyBytes) });
        await res.body.dump();
        const code = res.headers['mcp-mesh-error'];
        tally(code ? `${res.statusCode} ${String(code)}` : String(res.statusCode));
        const location = res.headers['location'];
        const good = spec.mode === 'async' ? res.statusCode === 202 && typeof location === 'string' : res.statusCode === 200;
        if (good) { ok++; accepted[seq] = 1; }
      } catch (err) {
        tally(failure(err));
      }
      lastDoneUs = nowUs();
      latency.recordValue(Math.max(1, Math.round(lastDoneUs - at)));
    };

    /** One batch of `n` calls from `first` on: every call of it is charged the batch's round trip. */
    const batch = async (first: number, n: number): Promise<void> => {
      const calls = Array.from({ length: n }, (_, i) => ({ service: 'target', method: 'POST', path: '/seed', headers: { 'content-type': 'text/plain' }, body: bodyOf(spec.run, first + i, spec.bodyBytes) }));
      sent += n;
      const at = nowUs();
      lastSendUs = at;
      let good = 0;
      try {
        const res = await pool.request({ path: '/mesh/v1/batch', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ concurrency: Math.min(n, 256), calls }) });
        if (res.statusCode !== 200) {
          await res.body.dump();
          tally(`batch ${res.statusCode} ${String(res.headers['mcp-mesh-error'] ?? '')}`.trim(), n);
        } else {
          const { results } = await res.body.json() as { results: { status?: number; error?: { code: string } }[] };
          for (const r of results) {
            tally(r.error ? `error ${r.error.code}` : String(r.status));
            if (r.status === 200) good++;
          }
        }
      } catch (err) {
        tally(failure(err), n);
      }
      ok += good;
      lastDoneUs = nowUs();
      latency.recordValueWithCount(Math.max(1, Math.round(lastDoneUs - at)), n);
    };

    const firstUs = nowUs();
    const end = firstUs + spec.maxDurationMs * 1000;
    let next = 0;
    // Each worker sends its next call (or batch) when the previous answer is in; bounded in count and time.
    await Promise.all(Array.from({ length: spec.connections }, async () => {
      while (next < spec.calls && nowUs() < end) {
        if (spec.mode !== 'batch') { await one(next++); continue; }
        const first = next;
        const n = Math.min(spec.batchSize, spec.calls - first);
        next += n;
        await batch(first, n);
      }
    }));
    const result: GenResult = { sent, ok, outcomes, firstUs, lastSendUs, lastDoneUs, latency: hdr.encodeIntoCompressedBase64(latency), left, accepted };
    latency.destroy();
    return result;
  };

  serveSpecs(run, () => pools.closeAll());
}

// ---------------------------------------------------------------------------------------------------
// Helper processes




/** Polls `check` every 20 ms until it returns true, or nothing changed in `quietMs`. */
async function waitUntil(check: () => Promise<{ done: boolean; progress: number }>, quietMs: number): Promise<boolean> {
  let last = -1;
  let since = Date.now();
  for (;;) {
    const { done, progress } = await check();
    if (done) return true;
    if (progress !== last) { last = progress; since = Date.now(); }
    if (Date.now() - since > quietMs) return false;
    await sleep(20);
  }
}

// ---------------------------------------------------------------------------------------------------
// The scenario

type ProcName = 'app' | 'sidecarA' | 'sidecarB' | 'relay' | 'generator';
const PROCS: ProcName[] = ['generator', 'sidecarA', 'relay', 'sidecarB', 'app'];

/** What a slice costs: read before and after it, the difference charged to the slice. */
interface Usage {
  cpu: Record<ProcName, number>;
  /** CPU seconds of each sidecar's main thread (its event loop; the rest: SQLite, GC, compiler threads). */
  mainCpu: { sidecarA: number; sidecarB: number };
  /** The machine's busy CPU seconds. */
  busy: number;
  /** Sidecar A's link to B: MCP batches and envelopes sent. */
  link: { batches: number; envelopes: number };
}

/** `into` += `sign` × `u`, counter by counter. */
function addUsage(into: Usage, u: Usage, sign = 1): void {
  for (const p of PROCS) into.cpu[p] += sign * u.cpu[p];
  into.mainCpu.sidecarA += sign * u.mainCpu.sidecarA;
  into.mainCpu.sidecarB += sign * u.mainCpu.sidecarB;
  into.busy += sign * u.busy;
  into.link.batches += sign * u.link.batches;
  into.link.envelopes += sign * u.link.envelopes;
}

/** One mode's figures: one slice, or several merged (sums; histograms added). */
interface Measured extends Usage {
  mode: Mode;
  /** "sync", "async", "batch of 100". */
  label: string;
  batchSize: number;
  slices: number;
  sent: number;
  /** Answered as they should be: 200 (sync, batch entries), 202 + Location (async). */
  ok: number;
  /** Distinct calls that reached the app. */
  unique: number;
  outcomes: Record<string, number>;
  /** Seconds from the first send to the last completion (answer; arrival at the app for async), summed over slices. */
  spanS: number;
  /** async: from the first send to the last 202, summed over slices. */
  acceptSpanS: number;
  latency: hdr.Histogram;
  /** async: send → arrival at the app. */
  e2e: hdr.Histogram | undefined;
  /** Calls answered ok that never reached the app; copies beyond the first. */
  lost: number;
  copies: number;
  settled: boolean;
  windowS: number;
}

function merge(slices: Measured[]): Measured {
  const [first, ...rest] = slices;
  const m: Measured = { ...first!, outcomes: { ...first!.outcomes }, cpu: { ...first!.cpu }, mainCpu: { ...first!.mainCpu }, link: { ...first!.link } };
  for (const s of rest) {
    m.slices += s.slices;
    for (const k of ['sent', 'ok', 'unique', 'spanS', 'acceptSpanS', 'lost', 'copies', 'windowS'] as const) m[k] += s[k];
    for (const [k, v] of Object.entries(s.outcomes)) m.outcomes[k] = (m.outcomes[k] ?? 0) + v;
    addUsage(m, s);
    m.settled &&= s.settled;
    m.latency.add(s.latency);
    if (s.e2e) m.e2e!.add(s.e2e);
    s.latency.destroy();
    s.e2e?.destroy();
  }
  return m;
}

/** Completed calls per second: answered (sync, batch) or delivered to the app (async). */
const qps = (m: Measured) => completed(m) / (m.spanS || 1);

const acceptedPerS = (m: Measured) => m.ok / (m.acceptSpanS || 1);

/** The latency a mode is judged on: per call (sync, batch), send → arrival at the app (async). */
const judged = (m: Measured) => m.e2e ?? m.latency;

function problemsOf(m: Measured): string[] {
  const p: string[] = [];
  if (m.ok < m.sent) p.push(`${m.sent - m.ok} not ${m.mode === 'async' ? 'accepted' : '200'}`);
  if (m.lost) p.push(`${m.lost} answered but never reached the app`);
  if (m.copies) p.push(`${m.copies} duplicate arrivals`);
  if (m.mode === 'async' && !m.settled) p.push('outbox not settled');
  return p;
}

export async function runSeedBench(options: SeedOptions, log: (line: string) => void): Promise<{ markdown: string; ok: boolean; targetMet: boolean }> {
  const dir = mkdtempSync(path.join(options.dataParent, 'mcp-mesh-seed-'));
  const helpers: { stop(): Promise<unknown> }[] = [];
  const loadBefore = os.loadavg()[0]!;
  try {
    const nodeArgs = options.sidecarNodeArgs;
    const app = await ForkedChild.start(path.join(HERE, 'async-app.ts'));
    helpers.unshift(app);
    const extraYaml = options.sidecarYaml || undefined;
    const sidecarB = await SidecarProcess.start({ service: 'target', replica: 'seed-b', appPort: app.hello.port!, peers: {}, nodeArgs, extraYaml }, dir);
    helpers.unshift(sidecarB);
    const delay = String(options.rttMs / 2);
    const relay = await ForkedChild.start(path.join(HERE, 'delay-relay.ts'), ['--delay-ms', delay, '--route', `${HOST2}:0=127.0.0.1:${app.hello.port}`, '--route', `${HOST2}:0=127.0.0.1:${sidecarB.ports!.inbound}`]);
    helpers.unshift(relay);
    const [appVia, inboundVia] = relay.hello.ports!;
    const envA: Record<string, string> = options.deliveryConcurrency ? { MESH_STORAGE_DELIVERY_CONCURRENCY: String(options.deliveryConcurrency) } : {};
    const sidecarA = await SidecarProcess.start({ service: 'client', replica: 'seed-a', appPort: app.hello.port!, peers: { target: [`${HOST2}:${inboundVia}`] }, nodeArgs, extraYaml, env: envA }, dir);
    helpers.unshift(sidecarA);
    const generator = await ForkedChild.start(fileURLToPath(import.meta.url), ['generator']);
    helpers.unshift(generator);
    await waitForLinks([sidecarA], 10_000);
    const dump = await sidecarA.admin<{ config?: { storage?: { deliveryConcurrency?: number } } }>('/config_dump');
    const slots = dump.config?.storage?.deliveryConcurrency;
    if (options.deliveryConcurrency && slots !== options.deliveryConcurrency) throw new Error(`sidecar A runs with storage.deliveryConcurrency ${slots}, not ${options.deliveryConcurrency}`);
    const pids: Record<ProcName, number> = { app: app.pid, sidecarA: sidecarA.pid, sidecarB: sidecarB.pid, relay: relay.pid, generator: generator.pid };
    log(`seed: app pid ${app.pid}, sidecar B ${sidecarB.pid}, relay ${relay.pid} (${HOST2}:${appVia} → app, ${HOST2}:${inboundVia} → B inbound, ${delay} ms each way), sidecar A ${sidecarA.pid}, generator ${generator.pid}`);

    const origins: Record<Mode, string> = { sync: `http://${HOST2}:${appVia}`, async: sidecarA.outboundUrl, batch: sidecarA.outboundUrl };
    const connectionsOf = (mode: Mode) => ({ sync: options.workers, async: options.asyncConnections, batch: options.batchWorkers })[mode];
    const readUsage = async (): Promise<Usage> => ({
      cpu: Object.fromEntries(PROCS.map((p) => [p, cpuSeconds(pids[p])])) as Record<ProcName, number>,
      busy: machineBusySeconds(),
      mainCpu: { sidecarA: mainThreadCpuSeconds(pids.sidecarA), sidecarB: mainThreadCpuSeconds(pids.sidecarB) },
      link: await sidecarA.linkTotals(),
    });
    let runs = 0;
    const measure = async ({ mode, batchSize, label }: Variant, calls: number, title: string): Promise<Measured> => {
      const run = `s${++runs}`;
      const before = await readUsage();
      const t0 = nowUs();
      const gen = await generator.call<GenResult>({
        mode, run, origin: origins[mode], calls, connections: connectionsOf(mode), batchSize, bodyBytes: options.bodyBytes, maxDurationMs: options.maxDurationS * 1000,
      } satisfies Omit<GenSpec, 'id'>);
      // Every call answered ok must reach the app (async ones after their 202); wait while that progresses.
      await waitUntil(async () => {
        const count = await app.call<AppCount>({ cmd: 'count', run });
        return { done: count.unique >= gen.ok, progress: count.unique };
      }, 10_000);
      const settled = mode !== 'async' || await waitUntil(async () => {
        const queued = outboxQueued(await metricsText(sidecarA));
        return { done: queued === 0, progress: queued };
      }, 10_000);
      const used = await readUsage();
      addUsage(used, before, -1);
      const windowS = (nowUs() - t0) / 1e6;
      await sleep(200); // a late copy would show up here
      const report = await app.call<AppReport>({ cmd: 'report', run });
      const e2e = mode === 'async' ? newHistogram() : undefined;
      let lost = 0;
      let lastArrivalUs = 0;
      for (let seq = 0; seq < gen.sent; seq++) {
        const at = report.arrivals[seq] ?? -1;
        if (at >= 0) lastArrivalUs = Math.max(lastArrivalUs, at);
        if (mode === 'async') {
          if (gen.accepted[seq] !== 1) continue;
          if (at < 0) lost++;
          else e2e!.recordValue(Math.max(1, Math.round(at - gen.left[seq]!)));
        }
      }
      if (mode !== 'async') lost = Math.max(0, gen.ok - report.unique);
      const m: Measured = {
        mode, label, batchSize, slices: 1, sent: gen.sent, ok: gen.ok, unique: report.unique, outcomes: gen.outcomes,
        spanS: ((mode === 'async' ? lastArrivalUs : gen.lastDoneUs) - gen.firstUs) / 1e6, acceptSpanS: (gen.lastDoneUs - gen.firstUs) / 1e6,
        latency: hdr.decodeFromCompressedBase64(gen.latency), e2e, lost, copies: report.received - report.unique, settled, windowS, ...used,
      };
      const p = problemsOf(m);
      log(`seed ${label}${title}: ${gen.sent} sent, ${gen.ok} ok, ${report.unique} at the app; ${Math.round(qps(m))} calls/s${mode === 'async' ? ` delivered (${Math.round(acceptedPerS(m))}/s accepted)` : ''}; p50 ${msOrS(judged(m).getValueAtPercentile(50))} p99 ${msOrS(judged(m).getValueAtPercentile(99))}; others on the machine ${others(m).toFixed(2)} vCPU${p.length ? `; PROBLEMS: ${p.join(', ')}` : ''}`);
      return m;
    };

    const variants: Variant[] = [{ mode: 'sync', batchSize: 0, label: 'sync' }];
    if (options.modes.includes('async')) variants.push({ mode: 'async', batchSize: 0, label: 'async' });
    if (options.modes.includes('batch')) for (const n of options.batchSizes) variants.push({ mode: 'batch', batchSize: n, label: `batch of ${n}` });
    const warmUps: Measured[] = [];
    if (options.warmUpCalls > 0) {
      log(`seed: warm-up, ${options.warmUpCalls.toLocaleString('en')} calls per mode (not reported)`);
      for (const variant of variants) warmUps.push(await measure(variant, options.warmUpCalls, ' warm-up'));
    }
    // The modes take turns, slice by slice, so drift on the machine (other programs, CPU frequency)
    // hits them alike; each slice ends when its calls have all reached the app.
    log(`seed: ${options.calls.toLocaleString('en')} calls per mode in ${options.slices} slices, modes taking turns`);
    const sliced = variants.map((): Measured[] => []);
    for (let i = 0; i < options.slices; i++) {
      const calls = Math.floor(options.calls / options.slices) + (i < options.calls % options.slices ? 1 : 0);
      for (const [v, variant] of variants.entries()) if (calls > 0) sliced[v]!.push(await measure(variant, calls, ` slice ${i + 1}/${options.slices}`));
    }
    const measured = sliced.map(merge);
    const relayStats = sumStats(await relay.call<RelayStats[]>({ cmd: 'stats' }));
    const markdown = section(options, measured, relayStats, { before: loadBefore, after: os.loadavg()[0]! });
    const ok = [...warmUps, ...measured].every((m) => problemsOf(m).length === 0);
    const targetMet = measured.some((m) => m.mode !== 'sync' && verdict(m, measured[0]!).met);
    for (const m of [...warmUps, ...measured]) { m.latency.destroy(); m.e2e?.destroy(); }
    return { markdown, ok, targetMet };
  } finally {
    for (const helper of helpers) await helper.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Calls that completed (answered, or delivered for async): what CPU is charged per. */
const completed = (m: Measured) => (m.mode === 'async' ? m.unique : m.ok) || 1;

/** CPU seconds of all the scenario's processes together. */
const scenarioCpu = (m: Measured) => PROCS.reduce((sum, p) => sum + m.cpu[p], 0);

/** CPU seconds per completed call, all the scenario's processes together. */
const cpuPerCall = (m: Measured) => scenarioCpu(m) / completed(m);

/** vCPU busy on the machine but not in the scenario's processes. */
const others = (m: Measured) => Math.max(0, m.busy - scenarioCpu(m)) / m.windowS;

/** Against the target: ≥ 7× the sync QPS with a lower p99. */
function verdict(m: Measured, sync: Measured): { ratio: number; met: boolean } {
  const ratio = qps(m) / (qps(sync) || 1);
  return { ratio, met: ratio >= 7 && judged(m).getValueAtPercentile(99) < sync.latency.getValueAtPercentile(99) };
}

// ---------------------------------------------------------------------------------------------------
// The report section

const n0 = (v: number) => Math.round(v).toLocaleString('en');

function section(o: SeedOptions, runs: Measured[], relay: RelayStats, load: { before: number; after: number }): string {
  const mc = machine();
  const sync = runs.find((r) => r.mode === 'sync')!;
  const out: string[] = [SEED_BEGIN, '## Seed scenario: two hosts 5 ms apart, sync calls vs the mesh (async, batches)', ''];
  out.push(`${new Date().toISOString()} · \`node bench/seed.ts\` · ${mc.cpus} CPUs (nproc), ${mc.model}, Node ${mc.node}; 1-minute load average ${load.before.toFixed(2)} before, ${load.after.toFixed(2)} after.`, '');
  out.push(`**Setup:** host 1 (127.0.0.1: the callers, sidecar A) and host 2 (the app, sidecar B) joined by a userspace relay`,
    `(\`delay-relay.ts\`, its own process) that holds every chunk ${o.rttMs / 2} ms in each direction (${o.rttMs} ms round trip, no bandwidth`,
    `limit); host 1 reaches host 2 only through it (${HOST2}:*). ${o.calls.toLocaleString('en')} calls per mode, each a \`POST\` with a ${o.bodyBytes}-byte body`,
    `(the app answers 200, empty), in ${o.slices} slice${o.slices === 1 ? '' : 's'} with the modes taking turns so that drift on the machine hits them alike (figures summed over the slices). **sync**: ${o.workers} workers call the app directly across the relay, each sending its next call`,
    `when the answer is in. **async**: the caller sends each call to sidecar A with \`Prefer: respond-async\` over ${o.asyncConnections} connections`,
    `(a 202 means the message is on A's disk); A delivers it over the MCP link, across the relay, to B and the app.`,
    `**batch**: ${o.batchWorkers} workers each send \`POST /mesh/v1/batch\` with ${o.batchSizes.join(' / ')} calls (all at once), answers back across the relay.`,
    `A warm-up of ${o.warmUpCalls.toLocaleString('en')} calls per mode ran first. Sidecars: default config${o.sidecarYaml ? ` plus \`${o.sidecarYaml.replace(/\n/g, ' ')}\`` : ''}${o.deliveryConcurrency ? `, A's \`storage.deliveryConcurrency\` ${o.deliveryConcurrency}` : ''}.`, '');
  out.push(`**The link as measured:** the relay held chunks p50 ${msOrS(relay.holdP50Us)}, p99 ${msOrS(relay.holdP99Us)}, max ${msOrS(relay.holdMaxUs)} per direction`,
    `(never less than ${o.rttMs / 2} ms; the excess is wake-up latency and, under load, waiting for a CPU) — ${relay.chunks.toLocaleString('en')} chunks, ${(relay.bytes / 2 ** 20).toFixed(1)} MiB in ${relay.flushes.toLocaleString('en')} writes, ${relay.connections} connections.`, '');

  const pct = (h: hdr.Histogram) => [50, 90, 99, 99.9].map((q) => msOrS(h.getValueAtPercentile(q))).join(' | ');
  out.push('| mode | calls | completed calls/s | × sync | latency | p50 | p90 | p99 | p99.9 | max |', '|---|---:|---:|---:|---|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    const ratio = r === sync ? '1' : `**${verdict(r, sync).ratio.toFixed(2)}×**`;
    if (r.mode === 'async') {
      out.push(`| async (accepted) | ${r.sent.toLocaleString('en')} | ${n0(acceptedPerS(r))} accepted | | send → 202 | ${pct(r.latency)} | ${msOrS(r.latency.maxValue)} |`);
      out.push(`| async (delivered) | ${r.unique.toLocaleString('en')} | ${n0(qps(r))} | ${ratio} | send → at the app | ${pct(r.e2e!)} | ${msOrS(r.e2e!.maxValue)} |`);
    } else {
      out.push(`| ${r.mode === 'sync' ? `sync, ${o.workers} workers` : r.label} | ${r.sent.toLocaleString('en')} | ${n0(qps(r))} | ${ratio} | ${r.mode === 'sync' ? 'per call' : 'per call (its batch)'} | ${pct(r.latency)} | ${msOrS(r.latency.maxValue)} |`);
    }
  }
  out.push('', '*completed calls/s*: sync and batch, calls answered 200 per second from the first send to the last answer; async,',
    'distinct calls reaching the app per second from the first send to the last arrival (accepted/s counts 202s to the last 202).', '');

  out.push('**Against the target** (≥ 7× the sync QPS with a lower p99; the seed reports 8,500 vs 1,200):', '');
  for (const r of runs.filter((x) => x !== sync)) {
    const v = verdict(r, sync);
    const accept = r.mode === 'async' ? ` (the caller's wait, send → 202: p99 ${msOrS(r.latency.getValueAtPercentile(99))})` : '';
    out.push(`- ${r.mode === 'async' ? 'async (delivered, p99 send → at the app)' : `${r.label} (p99 per call)`}: ${v.ratio.toFixed(2)}× the sync QPS (${n0(qps(r))} vs ${n0(qps(sync))}), p99 ${msOrS(judged(r).getValueAtPercentile(99))} vs ${msOrS(sync.latency.getValueAtPercentile(99))}${accept} — ${v.met ? '✅ met' : '❌ not met'}. CPU ceiling: at ${(cpuPerCall(r) * 1000).toFixed(3)} CPU-s per 1,000 calls (all processes of this path), ${mc.cpus} fully busy cores would complete at most ${n0(mc.cpus / cpuPerCall(r))} calls/s = ${(mc.cpus / cpuPerCall(r) / (qps(sync) || 1)).toFixed(1)}× the sync QPS.`);
  }
  const inFlight = runs.map((r) => `${r.label} ${n0(qps(r) * judged(r).mean / 1e6)}`).join(', ');
  out.push('', `Calls in flight on average (Little's law: completed calls/s × mean latency): ${inFlight}. A mode that completes 7× the sync calls with a lower latency has to keep at most about 7× as many in flight and get each through in less than the sync round trip, i.e. spend almost no time queued.`, '');

  out.push('**Every call once?**', '', '| mode | sent | 200 / 202 | reached the app | lost | duplicates | other answers |', '|---|---:|---:|---:|---:|---:|---|');
  for (const r of runs) {
    const others = Object.entries(r.outcomes).filter(([k]) => k !== (r.mode === 'async' ? '202' : '200')).map(([k, v]) => `${k}: ${v}`).join('; ') || '—';
    const p = problemsOf(r);
    out.push(`| ${r.label} | ${r.sent.toLocaleString('en')} | ${r.ok.toLocaleString('en')} | ${r.unique.toLocaleString('en')} | ${r.lost ? `**${r.lost}**` : 0} | ${r.copies ? `**${r.copies}**` : 0} | ${others}${p.length ? ` ❌ **${p.join(', ')}**` : ''} |`);
  }
  out.push('');

  out.push('**CPU** (utime + stime from `/proc/<pid>/stat`, from the first send until every call had reached the app and, for async, A\'s outbox was settled): seconds per 1,000 calls, and vCPU in brackets; *main thread*: the sidecar\'s event loop alone (`/proc/<pid>/task/<pid>/stat`), in vCPU — near 1.00 it is the bottleneck.', '');
  const names: Record<ProcName, string> = { generator: 'callers', sidecarA: 'sidecar A', relay: 'relay', sidecarB: 'sidecar B', app: 'app' };
  out.push(`| mode | ${PROCS.map((p) => names[p]).join(' | ')} | main thread A / B | machine busy (of ${mc.cpus}) | others | A → B link: envelopes per batch |`, `|---|${PROCS.map(() => '---:').join('|')}|---:|---:|---:|---:|`);
  for (const r of runs) {
    const cells = PROCS.map((p) => `${((r.cpu[p] / completed(r)) * 1000).toFixed(3)} (${(r.cpu[p] / r.windowS).toFixed(2)})`);
    const main = (name: 'sidecarA' | 'sidecarB') => (r.mainCpu[name] / r.windowS).toFixed(2);
    out.push(`| ${r.label} | ${cells.join(' | ')} | ${main('sidecarA')} / ${main('sidecarB')} | ${(r.busy / r.windowS).toFixed(2)} | ${others(r).toFixed(2)} | ${r.link.batches ? `${(r.link.envelopes / r.link.batches).toFixed(1)} (${r.link.batches.toLocaleString('en')} batches)` : '—'} |`);
  }
  const disturbed = runs.filter((r) => others(r) > 0.25);
  if (disturbed.length) out.push('', `> ⚠️ Other work on the machine took ${disturbed.map((r) => `${others(r).toFixed(2)} vCPU during ${r.label}`).join(', ')} (*others*: busy CPU not used by the scenario's processes). On ${mc.cpus} vCPUs that moves every figure above; repeat on a quiet machine. The CPU per call and the ceiling move much less.`);
  out.push('', SEED_END);
  return `${out.join('\n')}\n`;
}

const USAGE = `usage: node bench/seed.ts [options]
  --calls N               calls per mode (default ${SEED_DEFAULTS.calls})
  --workers N             sync workers (default ${SEED_DEFAULTS.workers})
  --batch-workers N       callers sending batches (default: as many as --workers)
  --async-connections N   connections of the async caller to sidecar A (default ${SEED_DEFAULTS.asyncConnections})
  --batch LIST            calls per batch, comma-separated: one batch row each (default ${SEED_DEFAULTS.batchSizes.join(',')})
  --delay-ms X            round trip between the hosts, ms (default ${SEED_DEFAULTS.rttMs}: ${SEED_DEFAULTS.rttMs / 2} each way)
  --body BYTES            request body (default ${SEED_DEFAULTS.bodyBytes})
  --warm-up N             unreported calls per mode first (default ${SEED_DEFAULTS.warmUpCalls})
  --max-duration S        most seconds of sending per mode (default ${SEED_DEFAULTS.maxDurationS})
  --sidecar-yaml TEXT     extra YAML for both sidecars, e.g. "link: { linger: 1ms }"
  --delivery-concurrency N  sidecar A's storage.deliveryConcurrency (default ${SEED_DEFAULTS.deliveryConcurrency}; the sidecar's own default is 64)
  --sidecar-node-args A   Node options for both sidecars, e.g. --sidecar-node-args="--cpu-prof --cpu-prof-dir=DIR"
  --slices N              each mode's calls in N slices, the modes taking turns (default ${SEED_DEFAULTS.slices})
  --modes LIST           mesh modes besides sync: async,batch (default both)
  --out FILE              replace the seed section of FILE (the rest is kept), or append it`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      calls: { type: 'string' }, workers: { type: 'string' }, 'batch-workers': { type: 'string' }, 'async-connections': { type: 'string' }, batch: { type: 'string' },
      'delay-ms': { type: 'string' }, body: { type: 'string' }, 'warm-up': { type: 'string' }, 'max-duration': { type: 'string' },
      'sidecar-yaml': { type: 'string' }, 'delivery-concurrency': { type: 'string' }, 'sidecar-node-args': { type: 'string' },
      slices: { type: 'string' }, modes: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) { console.log(USAGE); return 0; }
  const int = (v: string | undefined, fallback: number, min: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`bad value ${v}\n${USAGE}`);
    return n;
  };
  const d = SEED_DEFAULTS;
  const options: SeedOptions = {
    calls: int(values.calls, d.calls, 1), workers: int(values.workers, d.workers, 1), batchWorkers: int(values['batch-workers'] ?? values.workers, d.batchWorkers, 1), asyncConnections: int(values['async-connections'], d.asyncConnections, 1),
    batchSizes: values.batch ? values.batch.split(',').map((n) => Math.min(1000, int(n, 100, 1))) : d.batchSizes, rttMs: int(values['delay-ms'], d.rttMs, 0), bodyBytes: int(values.body, d.bodyBytes, 16),
    warmUpCalls: int(values['warm-up'], d.warmUpCalls, 0), maxDurationS: int(values['max-duration'], d.maxDurationS, 1),
    sidecarYaml: values['sidecar-yaml'] ?? '', deliveryConcurrency: int(values['delivery-concurrency'], d.deliveryConcurrency ?? 64, 1),
    sidecarNodeArgs: values['sidecar-node-args']?.split(' ').filter(Boolean) ?? [], dataParent: d.dataParent,
    slices: int(values.slices, d.slices, 1),
    modes: values.modes ? values.modes.split(',').map((m) => {
      if (m !== 'async' && m !== 'batch') throw new Error(`bad mode ${m}\n${USAGE}`);
      return m;
    }) : d.modes,
  };
  const log = (line: string) => console.error(line);
  const { markdown, ok, targetMet } = await runSeedBench(options, log);
  process.stdout.write(markdown);
  if (values.out) {
    writeSection(values.out, markdown, SEED_BEGIN, SEED_END);
    log(`seed section written to ${values.out}`);
  }
  log(`seed: ${ok ? 'every call answered and delivered once' : 'PROBLEMS (see the report)'}; target ${targetMet ? 'met' : 'not met'}`);
  return ok ? 0 : 1;
}

if (import.meta.main) {
  if (process.argv[2] === 'generator') generatorMain();
  else process.exitCode = await main();
}
