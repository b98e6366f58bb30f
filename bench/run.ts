// `npm run bench`: the end-to-end benchmark, direct vs through two sidecars, in one run. See README.md.
//
//   direct: generator ─────────────────────────────────────────▶ app
//   mesh:   generator ─▶ sidecar A (outbound) ══MCP/gRPC══▶ sidecar B (inbound) ─▶ app
//
// Every process is separate (app, sidecar A, sidecar B, generator), on 127.0.0.1, ports picked by the
// kernel. The same load goes to both targets, interleaved in short slices (direct, mesh, mesh, direct…)
// so drift in the machine (other load, CPU frequency, GC) hits both alike. CPU is read from /proc around
// every slice, so each target is charged only for its own slices.
//
// Then (unless --no-async; alone with --async-only) the durable async scenario of async.ts: the same
// two sidecars, fresh, with data dirs on disk, `Prefer: respond-async` calls, accept and end-to-end latency.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { request } from 'undici';
import { SidecarProcess } from '../sidecar/src/demo/sidecar-process.ts';
import { runAsyncBench, SECTION_BEGIN, SECTION_END, type AsyncOptions } from './async.ts';
import type { RunResult, RunSpec } from './generator.ts';
import { cpuSeconds, machine, machineBusySeconds, memoryMiB } from './proc.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const USAGE = `usage: npm run bench -- [options]   (or node bench/run.ts [options])
  --rate LIST           open-loop rates in requests/s, comma-separated   (BENCH_RATE, default 1000)
  --duration S          seconds per target at each rate                   (BENCH_DURATION, default 10)
  --max-duration S      seconds per target in the closed-loop run         (BENCH_MAX_DURATION, default 5; 0 skips it)
  --max-connections N   connections in the closed-loop run                (BENCH_MAX_CONNECTIONS, default 32)
  --connections N       connection pool of the open-loop generator        (BENCH_CONNECTIONS, default 16)
  --body BYTES          request and response body size                    (BENCH_BODY, default 1024)
  --slice S             length of one interleaved slice                   (BENCH_SLICE, default 2)
  --out FILE            where the Markdown results go                     (default bench/results/latest.md; "-" for none)
  --sidecar-node-args A Node options for both sidecars, e.g. --sidecar-node-args="--trace-gc" (note the =);
                        their non-log output goes to bench/results/raw/sidecar-{a,b}.log
Durable async calls (Prefer: respond-async), run after the rest unless --no-async:
  --async-only          only the async scenario; its section of the --out file is replaced, the rest kept
  --no-async            skip it
  --async-messages N    closed loop: at most N messages                   (BENCH_ASYNC_MESSAGES, default 20000)
  --async-connections N closed loop: connections                          (BENCH_ASYNC_CONNECTIONS, default 64)
  --async-max-duration S closed loop: at most S seconds of sending         (BENCH_ASYNC_MAX_DURATION, default 15)
  --async-rate R        open loop: messages/s                             (BENCH_ASYNC_RATE, default 1000)
  --async-duration S    open loop: seconds; 0 skips it                    (BENCH_ASYNC_DURATION, default 10)
  --async-warm-up N     unrecorded messages first                         (BENCH_ASYNC_WARM_UP, default 2000)
  --async-data-dir DIR  where the sidecars' temporary data dirs go        (BENCH_ASYNC_DATA_DIR, default the OS temp dir)`;

interface Options {
  rates: number[];
  durationS: number;
  maxDurationS: number;
  maxConnections: number;
  connections: number;
  body: number;
  sliceS: number;
  out: string | undefined;
  sidecarNodeArgs: string[];
  /** The durable async scenario: undefined with --no-async. */
  async: AsyncOptions | undefined;
  asyncOnly: boolean;
}

type TargetName = 'direct' | 'mesh';
type ProcName = 'sidecarA' | 'sidecarB' | 'app' | 'generator' | 'machine';

/** Everything measured for one target in one scenario, summed over its slices. */
interface Tally {
  /** Latency from the intended send time (the figure reported). */
  histogram: hdr.Histogram;
  /** Latency from the actual send time: what the target alone took. */
  service: hdr.Histogram;
  lag: hdr.Histogram;
  sent: number;
  ok: number;
  errors: number;
  outcomes: Record<string, number>;
  elapsedMs: number;
  cpu: Record<ProcName, number>;
  batches: number;
  envelopes: number;
}

interface Scenario {
  title: string;
  mode: 'open' | 'closed';
  rate: number;
  connections: number;
  perTargetS: number;
  tallies: Record<TargetName, Tally>;
  /** VmHWM of each sidecar (MiB) right after this scenario. */
  peakMiB: { sidecarA: number; sidecarB: number };
  /** VmRSS of each sidecar (MiB) right after this scenario. */
  currentMiB: { sidecarA: number; sidecarB: number };
}

export async function main(argv: string[]): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const sync = !options.asyncOnly && (options.durationS > 0 || options.maxDurationS > 0);
  if (!sync && !options.async) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  const loadBefore = os.loadavg()[0]!;
  if (loadBefore > 0.5) log(`note: the machine is already busy (1-minute load average ${loadBefore.toFixed(2)}); figures will be noisier`);
  let syncPart: string | undefined;
  let asyncPart: string | undefined;
  let ok = true;
  if (sync) {
    const result = await runSync(options, log);
    syncPart = result.markdown;
    ok = result.errors === 0;
  }
  if (options.async) {
    const result = await runAsyncBench(options.async, log);
    asyncPart = result.markdown;
    if (!result.ok) {
      ok = false;
      log('ASYNC: MESSAGES WERE REFUSED, LOST OR DELIVERED TWICE (see the "Delivered exactly once?" table)');
    }
  }
  process.stdout.write([syncPart, asyncPart].filter(Boolean).join('\n'));
  if (options.out) {
    // The part that did not run this time (sync with --async-only, async with --no-async) is kept from the file.
    const previous = existsSync(options.out) ? splitReport(readFileSync(options.out, 'utf8')) : { sync: undefined, async: undefined };
    const text = [syncPart ?? previous.sync, asyncPart ?? previous.async].filter(Boolean).join('\n');
    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, text);
    log(`written to ${path.relative(process.cwd(), options.out) || options.out}`);
  }
  return ok ? 0 : 1;
}

/** With --sidecar-node-args: where a sidecar's non-log output (GC traces…) goes, bench/results/raw/<name>.log. */
function rawLog(sidecarNodeArgs: string[], name: string): ((line: string) => void) | undefined {
  if (sidecarNodeArgs.length === 0) return undefined;
  const file = path.join(HERE, 'results', 'raw', `${name}.log`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  return (line: string) => appendFileSync(file, `${line}\n`);
}

/** A report file cut into its sync part and its async section (between the markers). */
function splitReport(text: string): { sync: string | undefined; async: string | undefined } {
  const begin = text.indexOf(SECTION_BEGIN);
  const end = text.indexOf(SECTION_END);
  if (begin < 0 || end < begin) return { sync: text.trim() ? text : undefined, async: undefined };
  const sync = `${text.slice(0, begin).trimEnd()}\n${text.slice(end + SECTION_END.length).replace(/^\n+/, '')}`;
  return { sync: sync.trim() ? sync : undefined, async: `${text.slice(begin, end + SECTION_END.length)}\n` };
}

/** The direct-vs-mesh scenarios (open loop, closed loop): their Markdown report and the error count. */
async function runSync(options: Options, log: (line: string) => void): Promise<{ markdown: string; errors: number }> {
  const loadBefore = os.loadavg()[0]!;
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-bench-'));
  const children: { stop(): Promise<unknown> }[] = [];
  try {
    // The processes: app, sidecar B next to it, sidecar A next to the generator, the generator.
    const app = await startApp(options.body);
    children.push(app);
    const raw = (name: string) => rawLog(options.sidecarNodeArgs, name);
    const nodeArgs = options.sidecarNodeArgs;
    const sidecarB = await SidecarProcess.start({ service: 'target', replica: 'sidecar-b', appPort: app.port, peers: {}, nodeArgs, onOtherLine: raw('sidecar-b') }, dir);
    children.unshift(sidecarB);
    const sidecarA = await SidecarProcess.start({ service: 'client', replica: 'sidecar-a', appPort: app.port, peers: { target: [`127.0.0.1:${sidecarB.ports!.inbound}`] }, nodeArgs, onOtherLine: raw('sidecar-a') }, dir);
    children.unshift(sidecarA);
    const generator = await Generator.start();
    children.unshift(generator);
    await waitForLink(sidecarA.ports!.admin);
    const pids: Record<Exclude<ProcName, 'machine'>, number> = { sidecarA: sidecarA.pid, sidecarB: sidecarB.pid, app: app.pid, generator: generator.pid };
    log(`app pid ${app.pid} :${app.port}; sidecar A pid ${sidecarA.pid} outbound :${sidecarA.ports!.outbound}; sidecar B pid ${sidecarB.pid} inbound :${sidecarB.ports!.inbound}; generator pid ${generator.pid}`);

    const targets: Record<TargetName, { origin: string; host: string }> = {
      direct: { origin: `http://127.0.0.1:${app.port}`, host: 'target' },
      mesh: { origin: `http://127.0.0.1:${sidecarA.ports!.outbound}`, host: 'target' },
    };
    const slice = async (scenario: Scenario, target: TargetName, ms: number, record: boolean) => {
      const before = readCpu(pids);
      const linkBefore = target === 'mesh' ? await linkStats(sidecarA.ports!.admin) : undefined;
      const result = await generator.run({
        origin: targets[target].origin, host: targets[target].host, mode: scenario.mode,
        rate: scenario.rate, durationMs: ms, connections: scenario.connections, bodyBytes: options.body,
      });
      const after = readCpu(pids);
      if (!record) return;
      const tally = scenario.tallies[target];
      const histogram = hdr.decodeFromCompressedBase64(result.histogram);
      const service = hdr.decodeFromCompressedBase64(result.service);
      const lag = hdr.decodeFromCompressedBase64(result.sendLag);
      tally.histogram.add(histogram);
      tally.service.add(service);
      tally.lag.add(lag);
      histogram.destroy();
      service.destroy();
      lag.destroy();
      tally.sent += result.sent;
      tally.ok += result.ok;
      tally.errors += result.errors;
      tally.elapsedMs += result.elapsedMs;
      for (const [outcome, n] of Object.entries(result.outcomes)) tally.outcomes[outcome] = (tally.outcomes[outcome] ?? 0) + n;
      for (const name of Object.keys(after) as ProcName[]) tally.cpu[name] += after[name] - before[name];
      if (linkBefore) {
        const linkAfter = await linkStats(sidecarA.ports!.admin);
        tally.batches += linkAfter.batches - linkBefore.batches;
        tally.envelopes += linkAfter.envelopes - linkBefore.envelopes;
      }
    };
    const runScenario = async (scenario: Scenario) => {
      const slices = Math.max(1, Math.round(scenario.perTargetS / options.sliceS));
      const sliceMs = (scenario.perTargetS * 1000) / slices;
      log(`${scenario.title}: ${slices} × ${(sliceMs / 1000).toFixed(1)} s per target, interleaved`);
      for (let i = 0; i < slices; i++) {
        const order: TargetName[] = i % 2 === 0 ? ['direct', 'mesh'] : ['mesh', 'direct'];
        for (const target of order) await slice(scenario, target, sliceMs, true);
      }
      const [memA, memB] = [memoryMiB(sidecarA.pid), memoryMiB(sidecarB.pid)];
      scenario.peakMiB = { sidecarA: memA.peak, sidecarB: memB.peak };
      scenario.currentMiB = { sidecarA: memA.current, sidecarB: memB.current };
      const d = scenario.tallies.direct;
      const m = scenario.tallies.mesh;
      log(`  direct p50 ${ms(d.histogram.getValueAtPercentile(50))} p99 ${ms(d.histogram.getValueAtPercentile(99))}, ${rps(d)}; mesh p50 ${ms(m.histogram.getValueAtPercentile(50))} p99 ${ms(m.histogram.getValueAtPercentile(99))}, ${rps(m)}; errors ${d.errors}/${m.errors}`);
    };

    // Warm-up (not recorded) before each kind of run, so the JIT has compiled the hot paths of every
    // process before anything is measured. The closed-loop warm-up comes only after the open-loop runs:
    // VmHWM only grows, and the open-loop figures must not carry the flat-out run's peak memory.
    const warmUp = async (mode: 'open' | 'closed') => {
      log(`warm-up (${mode} loop)`);
      const warm = newScenario('warm-up', mode, 1000, mode === 'open' ? options.connections : options.maxConnections, 0);
      for (const target of ['direct', 'mesh'] as const) await slice(warm, target, mode === 'open' ? 1500 : 1000, false);
    };

    const scenarios: Scenario[] = [];
    if (options.durationS > 0) {
      await warmUp('open');
      for (const rate of options.rates) {
        const scenario = newScenario(`open loop, ${rate.toLocaleString('en')} req/s`, 'open', rate, options.connections, options.durationS);
        await runScenario(scenario);
        scenarios.push(scenario);
      }
    }
    if (options.maxDurationS > 0) {
      await warmUp('closed');
      const scenario = newScenario(`closed loop, maximum throughput, ${options.maxConnections} connections`, 'closed', 0, options.maxConnections, options.maxDurationS);
      await runScenario(scenario);
      scenarios.push(scenario);
    }
    const final = { sidecarA: memoryMiB(sidecarA.pid), sidecarB: memoryMiB(sidecarB.pid) };

    const markdown = report(options, scenarios, final, { before: loadBefore, after: os.loadavg()[0]! });
    const errors = scenarios.reduce((n, s) => n + s.tallies.direct.errors + s.tallies.mesh.errors, 0);
    return { markdown, errors };
  } finally {
    for (const child of children) await child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function newScenario(title: string, mode: 'open' | 'closed', rate: number, connections: number, perTargetS: number): Scenario {
  const histogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  const tally = (): Tally => ({
    histogram: histogram(), service: histogram(), lag: histogram(),
    sent: 0, ok: 0, errors: 0, outcomes: {}, elapsedMs: 0,
    cpu: { sidecarA: 0, sidecarB: 0, app: 0, generator: 0, machine: 0 }, batches: 0, envelopes: 0,
  });
  return { title, mode, rate, connections, perTargetS, tallies: { direct: tally(), mesh: tally() }, peakMiB: { sidecarA: 0, sidecarB: 0 }, currentMiB: { sidecarA: 0, sidecarB: 0 } };
}

function readCpu(pids: Record<Exclude<ProcName, 'machine'>, number>): Record<ProcName, number> {
  return { sidecarA: cpuSeconds(pids.sidecarA), sidecarB: cpuSeconds(pids.sidecarB), app: cpuSeconds(pids.app), generator: cpuSeconds(pids.generator), machine: machineBusySeconds() };
}

// ---------------------------------------------------------------------------------------------------
// The report

function report(options: Options, scenarios: Scenario[], final: { sidecarA: { peak: number; current: number }; sidecarB: { peak: number; current: number } }, load: { before: number; after: number }): string {
  const m = machine();
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: HERE, encoding: 'utf8' }).trim();
  } catch { /* not a git checkout */ }
  const out: string[] = [];
  out.push('# mcp-mesh benchmark: latest run', '');
  out.push(`${new Date().toISOString()} · commit ${commit} · \`npm run bench\``, '');
  out.push(`**Machine:** ${m.cpus} CPUs (nproc), ${m.model}, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.kernel}, Node ${m.node}. 1-minute load average ${load.before.toFixed(2)} before the run (other work on the machine), ${load.after.toFixed(2)} after.`, '');
  out.push('**Setup:** four processes on 127.0.0.1: a plain `node:http` app, sidecar B next to it, sidecar A,',
    'and the load generator (undici Pool). *direct*: generator → app. *mesh*: generator → sidecar A (outbound,',
    'HTTP/1.1, `Host: target`) ⇒ MCP/gRPC link ⇒ sidecar B (inbound) → app. Default sidecar config (batching on,',
    'no linger, log level info, no per-request logs). Each request is a `POST` with a',
    `${options.body.toLocaleString('en')}-byte body; the app answers with ${options.body.toLocaleString('en')} bytes. Both targets get the same load,`,
    `interleaved in slices of about ${options.sliceS} s (direct, mesh, mesh, direct, …), after a warm-up of both.`,
    'Open loop: evenly paced at a constant rate, latency measured from each request\'s *intended* send time',
    '(no coordinated omission), into an HDR histogram. Closed loop: N connections, each sending as soon as its',
    'last answer is in. CPU = utime + stime from `/proc/<pid>/stat` over the slices of that target only.', '');

  for (const s of scenarios) {
    const d = s.tallies.direct;
    const me = s.tallies.mesh;
    const p = (t: Tally, q: number) => t.histogram.getValueAtPercentile(q);
    out.push(`## ${capitalise(s.title)}, ${s.perTargetS} s per target`, '');
    out.push('| target | requests | errors | req/s | p50 | p90 | p99 | p99.9 | max |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [name, t] of [['direct', d], ['mesh (A → B)', me]] as const) {
      out.push(`| ${name} | ${t.sent.toLocaleString('en')} | ${t.errors} | ${Math.round(t.ok / (t.elapsedMs / 1000)).toLocaleString('en')} | ${ms(p(t, 50))} | ${ms(p(t, 90))} | ${ms(p(t, 99))} | ${ms(p(t, 99.9))} | ${ms(t.histogram.maxValue)} |`);
    }
    out.push(`| **mesh added** | | | | **${plus(p(me, 50) - p(d, 50))}** | ${plus(p(me, 90) - p(d, 90))} | **${plus(p(me, 99) - p(d, 99))}** | ${plus(p(me, 99.9) - p(d, 99.9))} | |`, '');
    if (s.mode === 'open') {
      const q = (t: Tally, x: number) => t.service.getValueAtPercentile(x);
      out.push(`Generator health: requests left on average ${ms(d.lag.mean)} / ${ms(me.lag.mean)} after their due time (direct / mesh), p99 ${ms(d.lag.getValueAtPercentile(99))} / ${ms(me.lag.getValueAtPercentile(99))}, max ${ms(Math.max(d.lag.maxValue, me.lag.maxValue))} (Node timers tick in whole milliseconds); that lag is inside the latencies above and hits both targets alike. Measured from the moment each request actually left instead (service time): direct p50 ${ms(q(d, 50))} / p99 ${ms(q(d, 99))}, mesh p50 ${ms(q(me, 50))} / p99 ${ms(q(me, 99))}, added ${plus(q(me, 50) - q(d, 50))} / ${plus(q(me, 99) - q(d, 99))}.`, '');
    } else {
      out.push(`**Throughput ratio mesh / direct: ${(rate(me) / rate(d) * 100).toFixed(1)}%** (${Math.round(rate(me)).toLocaleString('en')} vs ${Math.round(rate(d)).toLocaleString('en')} req/s).`, '');
    }
    const perK = (cpu: number, t: Tally) => (t.ok ? (cpu / t.ok) * 1000 : 0);
    const vcpu = (cpu: number, t: Tally) => cpu / (t.elapsedMs / 1000);
    out.push('| process | CPU s per 1,000 requests | vCPU used | peak RSS so far (VmHWM) | RSS after (VmRSS) |', '|---|---:|---:|---:|---:|');
    out.push(`| sidecar A (client side) | ${perK(me.cpu.sidecarA, me).toFixed(3)} | ${vcpu(me.cpu.sidecarA, me).toFixed(2)} | ${s.peakMiB.sidecarA.toFixed(1)} MiB | ${s.currentMiB.sidecarA.toFixed(1)} MiB |`);
    out.push(`| sidecar B (server side) | ${perK(me.cpu.sidecarB, me).toFixed(3)} | ${vcpu(me.cpu.sidecarB, me).toFixed(2)} | ${s.peakMiB.sidecarB.toFixed(1)} MiB | ${s.currentMiB.sidecarB.toFixed(1)} MiB |`);
    out.push(`| app, direct / mesh | ${perK(d.cpu.app, d).toFixed(3)} / ${perK(me.cpu.app, me).toFixed(3)} | ${vcpu(d.cpu.app, d).toFixed(2)} / ${vcpu(me.cpu.app, me).toFixed(2)} | | |`);
    out.push(`| generator, direct / mesh | ${perK(d.cpu.generator, d).toFixed(3)} / ${perK(me.cpu.generator, me).toFixed(3)} | ${vcpu(d.cpu.generator, d).toFixed(2)} / ${vcpu(me.cpu.generator, me).toFixed(2)} | | |`, '');
    const ours = (t: Tally) => t.cpu.sidecarA * (t === me ? 1 : 0) + t.cpu.sidecarB * (t === me ? 1 : 0) + t.cpu.app + t.cpu.generator;
    const others = (t: Tally) => Math.max(0, t.cpu.machine - ours(t)) / (t.elapsedMs / 1000);
    out.push(`Whole machine (\`/proc/stat\`): ${vcpu(d.cpu.machine, d).toFixed(2)} / ${vcpu(me.cpu.machine, me).toFixed(2)} of ${machine().cpus} vCPU busy during the direct / mesh slices; everything other than the benchmark's own processes (kernel work not charged to them, other programs) took ${others(d).toFixed(2)} / ${others(me).toFixed(2)} vCPU.`, '');
    out.push(`Batching on the A → B link (sidecar A's admin \`/endpoints\`): ${me.envelopes.toLocaleString('en')} envelopes in ${me.batches.toLocaleString('en')} batches, **${me.batches ? (me.envelopes / me.batches).toFixed(2) : '-'} per batch** on average.`, '');
    const odd = [...Object.entries(d.outcomes).filter(([k]) => k !== '200').map(([k, n]) => `direct ${k}: ${n}`),
      ...Object.entries(me.outcomes).filter(([k]) => k !== '200').map(([k, n]) => `mesh ${k}: ${n}`)];
    if (odd.length) out.push(`Non-200 outcomes: ${odd.join('; ')}.`, '');
  }

  out.push('## Against the targets of issue 9 (1,000 req/s, 1 KiB)', '');
  const at1000 = scenarios.find((s) => s.mode === 'open' && s.rate === 1000);
  const max = scenarios.find((s) => s.mode === 'closed');
  out.push('| figure | measured | target | for reference |', '|---|---:|---:|---|');
  if (at1000) {
    const d = at1000.tallies.direct;
    const me = at1000.tallies.mesh;
    const added = (q: number) => me.histogram.getValueAtPercentile(q) - d.histogram.getValueAtPercentile(q);
    const cpu = Math.max(me.cpu.sidecarA, me.cpu.sidecarB) / me.ok * 1000;
    out.push(`| added latency, p50 | ${plus(added(50))} | ≤ +0.50 ms ${mark(added(50) <= 500)} | Dapr +1.06 ms, HAProxy pair +0.15–0.24 ms |`);
    out.push(`| added latency, p99 | ${plus(added(99))} | ≤ +2.00 ms ${mark(added(99) <= 2000)} | Dapr +2.90 ms, HAProxy pair +0.7–1.0 ms |`);
    out.push(`| CPU per 1,000 requests, busier sidecar | ${cpu.toFixed(3)} s | ≤ 0.20 s ${mark(cpu <= 0.2)} | Dapr 0.20–0.48, Istio 0.20, HAProxy ≈0.1 |`);
    const rss = Math.max(at1000.peakMiB.sidecarA, at1000.peakMiB.sidecarB) * 1.048576;
    out.push(`| peak RSS, bigger sidecar | ${rss.toFixed(0)} MB | ≤ 100 MB ${mark(rss <= 100)} | Dapr 51 MB, Istio 60 MB |`);
  }
  if (max) {
    const ratio = rate(max.tallies.mesh) / rate(max.tallies.direct);
    out.push(`| max throughput, mesh / direct | ${(ratio * 100).toFixed(1)}% | — | HAProxy chain ≈ 35–40% of direct here; target is ≥ 35% of HAProxy's |`);
  }
  out.push('', `Peak RSS at the end of the run (after the maximum-throughput run): sidecar A ${final.sidecarA.peak.toFixed(1)} MiB, sidecar B ${final.sidecarB.peak.toFixed(1)} MiB (current ${final.sidecarA.current.toFixed(1)} / ${final.sidecarB.current.toFixed(1)} MiB).`, '');
  return `${out.join('\n')}\n`;
}

const rate = (t: Tally) => t.ok / (t.elapsedMs / 1000);
const rps = (t: Tally) => `${Math.round(rate(t)).toLocaleString('en')} req/s`;
/** µs → "0.213 ms" / "12.4 ms". */
function ms(us: number): string {
  const v = us / 1000;
  return `${v < 10 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : v.toFixed(1)} ms`;
}
function plus(us: number): string {
  return `${us >= 0 ? '+' : '−'}${ms(Math.abs(us))}`;
}
function mark(ok: boolean): string {
  return ok ? '✅' : '❌';
}
function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// ---------------------------------------------------------------------------------------------------
// Processes

async function startApp(bodyBytes: number): Promise<{ pid: number; port: number; stop(): Promise<unknown> }> {
  const child = spawn(process.execPath, [path.join(HERE, 'app.ts')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_BODY_BYTES: String(bodyBytes) } });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench app exited early (code ${code})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });
  child.removeAllListeners('exit');
  return { pid: child.pid!, port, stop: () => stopChild(child) };
}

function stopChild(child: ChildProcess, timeoutMs = 10_000): Promise<unknown> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => { clearTimeout(timer); resolve(undefined); });
    child.kill('SIGTERM');
  });
}

/** The generator process, driven over IPC: one run at a time. */
class Generator {
  readonly #child: ChildProcess;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (r: RunResult) => void; reject: (e: Error) => void }>();

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (message: { result?: RunResult; id?: number; error?: string }) => {
      const id = message.result?.id ?? message.id ?? 0;
      const waiter = this.#waiting.get(id);
      if (!waiter) return;
      this.#waiting.delete(id);
      if (message.result) waiter.resolve(message.result);
      else waiter.reject(new Error(`generator: ${message.error}`));
    });
    child.once('exit', (code) => {
      for (const waiter of this.#waiting.values()) waiter.reject(new Error(`generator exited (code ${code})`));
      this.#waiting.clear();
    });
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  static async start(): Promise<Generator> {
    const child = fork(path.join(HERE, 'generator.ts'), [], { execPath: process.execPath, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`generator exited early (code ${code})`)));
    });
    child.removeAllListeners('exit');
    return new Generator(child);
  }

  run(spec: Omit<RunSpec, 'id'>): Promise<RunResult> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#child.send({ ...spec, id });
    });
  }

  stop(): Promise<unknown> {
    if (this.#child.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
      this.#child.once('exit', () => { clearTimeout(timer); resolve(undefined); });
      this.#child.send({ id: 0, stop: true });
    });
  }
}

async function linkStats(adminPort: number): Promise<{ batches: number; envelopes: number; state: string }> {
  const res = await request(`http://127.0.0.1:${adminPort}/endpoints`);
  const { links } = await res.body.json() as { links: { state: string; batches: number; envelopes: number }[] };
  return links.reduce((sum, l) => ({ batches: sum.batches + l.batches, envelopes: sum.envelopes + l.envelopes, state: l.state }), { batches: 0, envelopes: 0, state: 'none' });
}

async function waitForLink(adminPort: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while ((await linkStats(adminPort)).state !== 'ready') {
    if (Date.now() > until) throw new Error('the link from sidecar A to sidecar B did not become ready');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---------------------------------------------------------------------------------------------------
// Options: flags, then BENCH_* environment variables, then defaults.

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      rate: { type: 'string' }, duration: { type: 'string' }, 'max-duration': { type: 'string' },
      'max-connections': { type: 'string' }, connections: { type: 'string' }, body: { type: 'string' },
      slice: { type: 'string' }, out: { type: 'string' }, 'sidecar-node-args': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      'async-only': { type: 'boolean' }, 'no-async': { type: 'boolean' }, 'async-messages': { type: 'string' },
      'async-connections': { type: 'string' }, 'async-max-duration': { type: 'string' }, 'async-rate': { type: 'string' },
      'async-duration': { type: 'string' }, 'async-warm-up': { type: 'string' }, 'async-data-dir': { type: 'string' },
    },
  });
  if (values.help) return { rates: [], durationS: 0, maxDurationS: 0, maxConnections: 0, connections: 0, body: 0, sliceS: 1, out: undefined, sidecarNodeArgs: [], async: undefined, asyncOnly: false };
  if (values['async-only'] && values['no-async']) throw new Error('--async-only and --no-async exclude each other');
  const env = process.env;
  const num = (flag: string, value: string | undefined, fallback: number, min: number) => {
    const n = Number(value ?? fallback);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${flag} must be a number ≥ ${min}, got ${JSON.stringify(value)}`);
    return n;
  };
  const rates = (values.rate ?? env['BENCH_RATE'] ?? '1000').split(',').map((r) => num('rate', r.trim(), 1000, 1));
  const out = values.out ?? path.join(HERE, 'results', 'latest.md');
  const connections = Math.round(num('connections', values.connections ?? env['BENCH_CONNECTIONS'], 16, 1));
  const body = Math.round(num('body', values.body ?? env['BENCH_BODY'], 1024, 0));
  const sidecarNodeArgs = (values['sidecar-node-args'] ?? '').split(/\s+/).filter(Boolean);
  const asyncOptions: AsyncOptions | undefined = values['no-async'] ? undefined : {
    messages: Math.round(num('async-messages', values['async-messages'] ?? env['BENCH_ASYNC_MESSAGES'], 20_000, 0)),
    connections: Math.round(num('async-connections', values['async-connections'] ?? env['BENCH_ASYNC_CONNECTIONS'], 64, 1)),
    maxDurationS: num('async-max-duration', values['async-max-duration'] ?? env['BENCH_ASYNC_MAX_DURATION'], 15, 0),
    rate: num('async-rate', values['async-rate'] ?? env['BENCH_ASYNC_RATE'], 1000, 1),
    durationS: num('async-duration', values['async-duration'] ?? env['BENCH_ASYNC_DURATION'], 10, 0),
    warmUpMessages: Math.round(num('async-warm-up', values['async-warm-up'] ?? env['BENCH_ASYNC_WARM_UP'], 2000, 0)),
    openConnections: connections,
    // A message carries its sequence number at the start of its body.
    body: Math.max(32, body),
    dataParent: path.resolve(values['async-data-dir'] ?? env['BENCH_ASYNC_DATA_DIR'] ?? tmpdir()),
    sidecarNodeArgs,
    rawLog: (name) => rawLog(sidecarNodeArgs, `async-${name}`),
  };
  return {
    rates,
    durationS: num('duration', values.duration ?? env['BENCH_DURATION'], 10, 0),
    maxDurationS: num('max-duration', values['max-duration'] ?? env['BENCH_MAX_DURATION'], 5, 0),
    maxConnections: Math.round(num('max-connections', values['max-connections'] ?? env['BENCH_MAX_CONNECTIONS'], 32, 1)),
    connections,
    body,
    sliceS: num('slice', values.slice ?? env['BENCH_SLICE'], 2, 0.1),
    out: out === '-' ? undefined : path.resolve(out),
    sidecarNodeArgs,
    async: asyncOptions,
    asyncOnly: values['async-only'] ?? false,
  };
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => { console.error(err); process.exitCode = 1; },
  );
}
