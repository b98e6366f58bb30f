// `npm run bench`: the end-to-end benchmark, direct vs through two sidecars vs through two HAProxies
// vs through two plain Node proxies, in one run. See README.md.
//
//   direct:  generator ─────────────────────────────────────────▶ app
//   mesh:    generator ─▶ sidecar A (outbound) ══MCP/gRPC══▶ sidecar B (inbound) ─▶ app
//   haproxy: generator ─▶ haproxy 1 ─▶ haproxy 2 ─▶ app          (the peer to compare with; skipped without haproxy)
//   node:    generator ─▶ node 1 ─▶ node 2 ─▶ app                (the floor of a Node proxy: node-pair.ts)
//
// Every process is separate (app, sidecars, HAProxies, generator), on 127.0.0.1, ports picked by the
// kernel. The same load goes to every target, interleaved in short slices whose order rotates (direct,
// mesh, haproxy; mesh, haproxy, direct; …) so drift in the machine (other load, CPU frequency, GC) hits
// all alike. CPU is read from /proc around every slice, so each target is charged only for its own slices.
//
// Then the report's other sections (SECTIONS below: the durable async scenario of async.ts, …), each
// with its own part of the --out file, kept from the previous file when it did not run this time.
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { SidecarProcess, waitForLinks } from '../sidecar/src/demo/sidecar-process.ts';
import { metricsText, runAsyncBench } from './async.ts';
import { asSection, mergeReport } from './report-sections.ts';
import { parseMcpOptions, runMcpBench } from './mcp.ts';
import { MICRO_DEFAULTS, runMicroBench } from './micro.ts';
import { runSeedBench, SEED_DEFAULTS } from './seed.ts';
import type { RunResult, RunSpec } from './generator.ts';
import { startListeningChild, type ListeningChild } from './children.ts';
import { ForkedChild } from './child-ipc.ts';
import { findHaproxy, startHaproxyChain, type HaproxyBinary, type HaproxyChain } from './haproxy.ts';
import { startNodePair, type NodePair } from './node-pair.ts';
import { TraceSink } from './trace-sink.ts';
import { latencyPng, percentilePoints, type Panel } from './plot.ts';
import { mark, ms, plus, times } from './format.ts';
import { cpuSeconds, machine, machineBusySeconds, memoryMiB } from './proc.ts';
import { parseSamples } from '../test/helpers/prometheus.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
type Log = (line: string) => void;

const USAGE_SYNC = `usage: npm run bench -- [options]   (or node bench/run.ts [options])
  --rate LIST           open-loop rates in requests/s, comma-separated   (BENCH_RATE, default 1000,5000)
  --duration S          seconds per target at each rate                   (BENCH_DURATION, default 10)
  --max-duration S      seconds per target in the closed-loop run         (BENCH_MAX_DURATION, default 5; 0 skips it)
  --max-connections N   connections in the closed-loop run                (BENCH_MAX_CONNECTIONS, default 32)
  --connections N       connection pool of the open-loop generator        (BENCH_CONNECTIONS, default 16)
  --body BYTES          request and response body size                    (BENCH_BODY, default 1024)
  --slice S             length of one interleaved slice                   (BENCH_SLICE, default 2)
  --no-haproxy          leave out the HAProxy target                      (BENCH_NO_HAPROXY=1)
  --no-node-pair        leave out the plain Node pair target              (BENCH_NO_NODE_PAIR=1)
  --bare-mesh           sidecars with their default config: no policy, no tracing (BENCH_BARE_MESH=1)
  --out FILE            where the Markdown results go                     (default bench/results/latest.md; "-" for none);
                        the latency plot goes next to it (latency.png for latest.md, else <name>-latency.png)
  --sidecar-node-args A Node options for both sidecars, e.g. --sidecar-node-args="--trace-gc" (note the =);
                        their non-log output goes to bench/results/raw/sidecar-{a,b}.log
Other sections, run after the rest: --no-NAME skips one (the --out file keeps its previous text),
--NAME-only runs only that one (several may be given) and keeps the rest of the --out file.`;

// ---------------------------------------------------------------------------------------------------
// The report's sections. The direct/mesh/HAProxy scenarios make the main part of the report; every
// other part is a section of its own between `<!-- NAME:begin -->` and `<!-- NAME:end -->`. Adding a
// section is one entry in SECTIONS.

interface SectionResult {
  /** Its Markdown, markers included (they are added when missing). */
  markdown: string;
  ok: boolean;
}

/** What every section may use from the common options. */
interface CommonOptions {
  connections: number;
  body: number;
  sidecarNodeArgs: string[];
  /** A HAProxy target beside the mesh (not with --no-haproxy). */
  haproxy: boolean;
  /** Where a sidecar's non-log output goes (with --sidecar-node-args), by file name. */
  rawLog: (name: string) => ((line: string) => void) | undefined;
}

type FlagValues = Record<string, string | boolean | undefined>;

interface Section {
  name: string;
  /** Its own flags (besides --no-NAME and --NAME-only), for parseArgs, and their lines in the usage text. */
  flags: Record<string, { type: 'string' | 'boolean' }>;
  usage: string;
  /** Reads its flags (then BENCH_* variables, then defaults); throws on a bad one, before anything runs. */
  prepare(values: FlagValues, common: CommonOptions): (log: Log) => Promise<SectionResult>;
  /** Logged when it ends not ok. */
  failure: string;
}

const SECTIONS: Section[] = [
  {
    name: 'async',
    flags: {
      'async-messages': { type: 'string' }, 'async-connections': { type: 'string' }, 'async-max-duration': { type: 'string' },
      'async-rate': { type: 'string' }, 'async-duration': { type: 'string' }, 'async-warm-up': { type: 'string' }, 'async-data-dir': { type: 'string' },
    },
    usage: `Durable async calls (Prefer: respond-async), section "async" (--async-only, --no-async):
  --async-messages N    closed loop: at most N messages                   (BENCH_ASYNC_MESSAGES, default 20000)
  --async-connections N closed loop: connections                          (BENCH_ASYNC_CONNECTIONS, default 64)
  --async-max-duration S closed loop: at most S seconds of sending         (BENCH_ASYNC_MAX_DURATION, default 15)
  --async-rate R        open loop: messages/s                             (BENCH_ASYNC_RATE, default 1000)
  --async-duration S    open loop: seconds; 0 skips it                    (BENCH_ASYNC_DURATION, default 10)
  --async-warm-up N     unrecorded messages first                         (BENCH_ASYNC_WARM_UP, default 2000)
  --async-data-dir DIR  where the sidecars' temporary data dirs go        (BENCH_ASYNC_DATA_DIR, default the OS temp dir)`,
    prepare: (values, common) => {
      const env = process.env;
      const options = {
        messages: Math.round(num('async-messages', str(values['async-messages']) ?? env['BENCH_ASYNC_MESSAGES'], 20_000, 0)),
        connections: Math.round(num('async-connections', str(values['async-connections']) ?? env['BENCH_ASYNC_CONNECTIONS'], 64, 1)),
        maxDurationS: num('async-max-duration', str(values['async-max-duration']) ?? env['BENCH_ASYNC_MAX_DURATION'], 15, 0),
        rate: num('async-rate', str(values['async-rate']) ?? env['BENCH_ASYNC_RATE'], 1000, 1),
        durationS: num('async-duration', str(values['async-duration']) ?? env['BENCH_ASYNC_DURATION'], 10, 0),
        warmUpMessages: Math.round(num('async-warm-up', str(values['async-warm-up']) ?? env['BENCH_ASYNC_WARM_UP'], 2000, 0)),
        openConnections: common.connections,
        // A message carries its sequence number at the start of its body.
        body: Math.max(32, common.body),
        dataParent: path.resolve(str(values['async-data-dir']) ?? env['BENCH_ASYNC_DATA_DIR'] ?? tmpdir()),
        sidecarNodeArgs: common.sidecarNodeArgs,
        rawLog: (name: string) => common.rawLog(`async-${name}`),
      };
      return (log) => runAsyncBench(options, log);
    },
    failure: 'ASYNC: MESSAGES WERE REFUSED, LOST OR DELIVERED TWICE (see the "Delivered exactly once?" table)',
  },
  {
    name: 'mcp',
    flags: { 'mcp-clients': { type: 'string' }, 'mcp-duration': { type: 'string' }, 'mcp-transport': { type: 'string' } },
    usage: `MCP sessions through affinity (bench/mcp.ts; alone: node bench/mcp.ts --help), section "mcp" (--mcp-only, --no-mcp):
  --mcp-clients N       concurrent clients / open sessions                (BENCH_MCP_CLIENTS, default 16)
  --mcp-duration S      seconds per target in each loop                   (BENCH_MCP_DURATION, default 6)
  --mcp-transport LIST  streamable, sse                                   (default streamable,sse)
  (--no-haproxy leaves out its HAProxy column too)`,
    prepare: (values, common) => {
      // --mcp-X is mcp.ts's own --X.
      const argv = [
        ...['clients', 'duration', 'transport'].flatMap((flag) => {
          const value = str(values[`mcp-${flag}`]);
          return value ? [`--${flag}`, value] : [];
        }),
        ...(common.haproxy ? [] : ['--no-haproxy']),
      ];
      const options = { ...parseMcpOptions(argv), sidecarNodeArgs: common.sidecarNodeArgs };
      return (log) => runMcpBench(options, log);
    },
    failure: 'MCP: CLIENT ERRORS, OR A SESSION LEFT ITS REPLICA (see the MCP section)',
  },
  {
    name: 'seed',
    flags: { 'seed-calls': { type: 'string' }, 'seed-batch': { type: 'string' }, 'seed-slices': { type: 'string' } },
    usage: `The seed scenario, two hosts 5 ms apart (bench/seed.ts; alone: node bench/seed.ts --help), section "seed" (--seed-only, --no-seed):
  --seed-calls N        calls per mode                                    (BENCH_SEED_CALLS, default 10000)
  --seed-batch LIST     calls per batch, one row each                     (default 25,100)
  --seed-slices N       slices per mode, the modes taking turns           (default 5)`,
    prepare: (values, common) => {
      const batch = str(values['seed-batch']);
      const options = {
        ...SEED_DEFAULTS,
        calls: Math.round(num('seed-calls', str(values['seed-calls']) ?? process.env['BENCH_SEED_CALLS'], SEED_DEFAULTS.calls, 1)),
        batchSizes: batch === undefined ? SEED_DEFAULTS.batchSizes : batch.split(',').map((b) => Math.round(num('seed-batch', b.trim(), 100, 1))),
        slices: Math.round(num('seed-slices', str(values['seed-slices']), SEED_DEFAULTS.slices, 1)),
        sidecarNodeArgs: common.sidecarNodeArgs,
      };
      return (log) => runSeedBench(options, log);
    },
    failure: 'SEED: CALLS FAILED, OR ASYNC MESSAGES WERE LOST OR DELIVERED TWICE (see the seed section)',
  },
  {
    name: 'micro',
    flags: { 'micro-time': { type: 'string' }, 'micro-filter': { type: 'string' } },
    usage: `Micro-benchmarks of the hot paths (bench/micro.ts), section "micro" (--micro-only, --no-micro):
  --micro-time MS       time per case                                     (BENCH_MICRO_TIME, default 500)
  --micro-filter TEXT   only cases whose group or name contains it`,
    prepare: (values) => {
      const options = {
        timeMs: num('micro-time', str(values['micro-time']) ?? process.env['BENCH_MICRO_TIME'], MICRO_DEFAULTS.timeMs, 10),
        filter: str(values['micro-filter']),
      };
      return (log) => runMicroBench(options, log);
    },
    failure: 'MICRO: A CASE FAILED (see the micro-benchmark section)',
  },
];

// ---------------------------------------------------------------------------------------------------
// Batch sizes from sidecar A's Prometheus histogram

/** A Prometheus histogram summed over its label sets: cumulative counts per upper bound (`le`). */
export interface Buckets {
  /** Upper bounds, ascending; the last is Infinity (`+Inf`). */
  le: number[];
  /** Cumulative: observations ≤ le[i]. */
  counts: number[];
  sum: number;
  count: number;
}

export const NO_BUCKETS: Buckets = { le: [], counts: [], sum: 0, count: 0 };

/** Reads histogram `name` from a Prometheus text exposition, adding up every label set. */
export function parseHistogram(text: string, name: string): Buckets {
  const byLe = new Map<number, number>();
  let sum = 0;
  let count = 0;
  for (const { name: series, labels, value } of parseSamples(text)) {
    if (series === `${name}_bucket`) {
      if (labels.le === undefined) continue;
      const bound = labels.le === '+Inf' ? Infinity : Number(labels.le);
      byLe.set(bound, (byLe.get(bound) ?? 0) + value);
    } else if (series === `${name}_sum`) {
      sum += value;
    } else if (series === `${name}_count`) {
      count += value;
    }
  }
  const le = [...byLe.keys()].sort((a, b) => a - b);
  return { le, counts: le.map((b) => byLe.get(b)!), sum, count };
}

/** a + sign × b, bound by bound (a bound missing on one side counts 0 there: a series not yet born). */
export function combineBuckets(a: Buckets, b: Buckets, sign: 1 | -1): Buckets {
  const le = [...new Set([...a.le, ...b.le])].sort((x, y) => x - y);
  const at = (h: Buckets, bound: number) => {
    // Cumulative counts: a bound the histogram lacks holds what the next lower bound holds.
    let value = 0;
    for (let i = 0; i < h.le.length && h.le[i]! <= bound; i++) value = h.counts[i]!;
    return value;
  };
  return { le, counts: le.map((bound) => at(a, bound) + sign * at(b, bound)), sum: a.sum + sign * b.sum, count: a.count + sign * b.count };
}

/** One row per bucket (not cumulative) from the first to the last that holds anything: "1", "3–4", "> 1024". */
export function bucketRows(h: Buckets): { label: string; n: number; share: number }[] {
  const rows = h.le.map((bound, i) => {
    const below = i === 0 ? undefined : h.le[i - 1]!;
    const n = h.counts[i]! - (i === 0 ? 0 : h.counts[i - 1]!);
    // Batch sizes are whole numbers: the bucket (below, bound] holds below+1 … bound.
    const label = bound === Infinity ? `> ${below}` : below === undefined || below + 1 >= bound ? `${bound}` : `${below + 1}–${bound}`;
    return { label, n, share: h.count ? n / h.count : 0 };
  });
  const first = rows.findIndex((r) => r.n > 0);
  if (first < 0) return [];
  const last = rows.length - 1 - [...rows].reverse().findIndex((r) => r.n > 0);
  return rows.slice(first, last + 1);
}

/** The order of the targets in slice `i`: rotated, so that each target gets each position in turn. */
export function sliceOrder<T>(targets: readonly T[], i: number): T[] {
  const k = i % targets.length;
  return [...targets.slice(k), ...targets.slice(0, k)];
}

// ---------------------------------------------------------------------------------------------------
// The direct / mesh / HAProxy scenarios

interface Options extends CommonOptions {
  rates: number[];
  durationS: number;
  maxDurationS: number;
  maxConnections: number;
  sliceS: number;
  /** The plain Node pair (node-pair.ts) as a third way through. */
  nodePair: boolean;
  /** The sidecars' default config only: no policy, no tracing. */
  bareMesh: boolean;
  out: string | undefined;
  /** The direct/mesh/HAProxy scenarios run (not with --NAME-only, nor with both durations 0). */
  sync: boolean;
  /** The sections to run, in SECTIONS order. */
  sections: { name: string; failure: string; run: (log: Log) => Promise<SectionResult> }[];
}

type TargetName = 'direct' | 'mesh' | 'haproxy' | 'node';
/** How the report names a target: in its table row, in short (lists, the plot), in a sentence. */
const TARGETS: Record<TargetName, { row: string; short: string; name: string; colour: string }> = {
  direct: { row: 'direct', short: 'direct', name: 'direct', colour: '#4c78a8' },
  mesh: { row: 'mesh (A → B)', short: 'mesh', name: 'mesh', colour: '#e45756' },
  haproxy: { row: 'HAProxy (1 → 2)', short: 'HAProxy', name: 'HAProxy', colour: '#54a24b' },
  node: { row: 'plain Node pair (1 → 2)', short: 'Node pair', name: 'plain Node pair', colour: '#b279a2' },
};
/** The processes in the path of a request besides the app: two sidecars, two HAProxies, or two plain Node proxies. */
type Hop = 'sidecarA' | 'sidecarB' | 'haproxy1' | 'haproxy2' | 'node1' | 'node2';
type ProcName = Hop | 'app' | 'generator';
const HOPS: Record<Hop, { target: TargetName; row: string }> = {
  sidecarA: { target: 'mesh', row: 'sidecar A (client side)' },
  sidecarB: { target: 'mesh', row: 'sidecar B (server side)' },
  haproxy1: { target: 'haproxy', row: 'haproxy 1 (client side)' },
  haproxy2: { target: 'haproxy', row: 'haproxy 2 (server side)' },
  node1: { target: 'node', row: 'plain Node 1 (client side)' },
  node2: { target: 'node', row: 'plain Node 2 (server side)' },
};
type Memory = Partial<Record<Hop, { peak: number; current: number }>>;
/** The hops of target `t` (client side first); none for direct. */
const hopsOf = (t: TargetName) => (Object.keys(HOPS) as Hop[]).filter((hop) => HOPS[hop].target === t);
/** The targets the mesh is read against, and what the report calls their hops ("haproxy 1"). */
const PEERS = [
  { target: 'haproxy', hopName: 'haproxy' },
  { target: 'node', hopName: 'node' },
] as const;

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
  cpu: Record<ProcName | 'machine', number>;
  batches: number;
  envelopes: number;
  /** Sidecar A's mcp_link_batch_size over this target's slices (mesh only). */
  batchSizes: Buckets;
}

interface Scenario {
  title: string;
  mode: 'open' | 'closed';
  rate: number;
  connections: number;
  perTargetS: number;
  tallies: Record<TargetName, Tally>;
  /** VmHWM and VmRSS of each hop (MiB) right after this scenario. */
  memory: Memory;
}

/** The HAProxy that ran, or why the HAProxy column is missing. */
interface Peer {
  binary: HaproxyBinary | undefined;
  skipped: string | undefined;
}

export async function main(argv: string[]): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${usage()}\n`);
    return 2;
  }
  if (!options.sync && options.sections.length === 0) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }

  const log: Log = (line) => process.stderr.write(`[bench] ${line}\n`);
  const loadBefore = os.loadavg()[0]!;
  if (loadBefore > 0.5) log(`note: the machine is already busy (1-minute load average ${loadBefore.toFixed(2)}); figures will be noisier`);
  let main: string | undefined;
  const sections = new Map<string, string>();
  let ok = true;
  if (options.sync) {
    const result = await runSync(options, log);
    main = result.markdown;
    ok = result.errors === 0;
  }
  for (const section of options.sections) {
    const result = await section.run(log);
    sections.set(section.name, asSection(section.name, result.markdown));
    if (!result.ok) {
      ok = false;
      log(section.failure);
    }
  }
  process.stdout.write([main, ...sections.values()].filter(Boolean).join('\n'));
  if (options.out) {
    const previous = existsSync(options.out) ? readFileSync(options.out, 'utf8') : undefined;
    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, mergeReport(previous, { main, sections }, SECTIONS.map((s) => s.name)));
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

/** Where the latency plot of a report goes: results/latency.png beside latest.md, else <name>-latency.png. */
export function plotFile(out: string): string {
  const base = path.basename(out, path.extname(out));
  return path.join(path.dirname(out), base === 'latest' ? 'latency.png' : `${base}-latency.png`);
}

/** The direct-vs-mesh-vs-HAProxy scenarios (open loop, closed loop): their Markdown report and the error count. */
async function runSync(options: Options, log: Log): Promise<{ markdown: string; errors: number }> {
  const loadBefore = os.loadavg()[0]!;
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-bench-'));
  const children: { stop(): Promise<unknown> }[] = [];
  try {
    // The processes: app, sidecar B next to it, sidecar A next to the generator, the HAProxy chain, the generator.
    const app = await startApp(options.body);
    children.push(app);
    const nodeArgs = options.sidecarNodeArgs;
    const setup = options.bareMesh ? undefined : await meshSetup(dir);
    if (setup) children.push(setup.sink);
    const extraYaml = setup?.extraYaml;
    const env = setup?.env;
    const sidecarB = await SidecarProcess.start({ service: 'target', replica: 'sidecar-b', appPort: app.port, peers: {}, nodeArgs, extraYaml, env, onOtherLine: options.rawLog('sidecar-b') }, dir);
    children.unshift(sidecarB);
    const sidecarA = await SidecarProcess.start({ service: 'client', replica: 'sidecar-a', appPort: app.port, peers: { target: [`127.0.0.1:${sidecarB.ports!.inbound}`] }, nodeArgs, extraYaml, env, onOtherLine: options.rawLog('sidecar-a') }, dir);
    children.unshift(sidecarA);
    const peer: Peer = { binary: undefined, skipped: options.haproxy ? undefined : 'left out with --no-haproxy' };
    let chain: HaproxyChain | undefined;
    if (options.haproxy) {
      const found = findHaproxy(log);
      if (found.ok) {
        peer.binary = found.binary;
        try {
          chain = await startHaproxyChain(found.binary, app.port);
          children.unshift(chain);
        } catch (err) {
          peer.skipped = `HAProxy did not start: ${(err as Error).message.split('\n')[0]}`;
        }
      } else {
        peer.skipped = found.why;
      }
      if (peer.skipped) log(`no HAProxy column: ${peer.skipped}`);
    }
    let nodePair: NodePair | undefined;
    if (options.nodePair) {
      nodePair = await startNodePair(app.port);
      children.unshift(nodePair);
    }
    const generator = await ForkedChild.start(path.join(HERE, 'generator.ts'));
    children.unshift(generator);
    await waitForLinks([sidecarA], 10_000);
    const pids: Partial<Record<ProcName, number>> = { sidecarA: sidecarA.pid, sidecarB: sidecarB.pid, app: app.pid, generator: generator.pid };
    if (chain) Object.assign(pids, { haproxy1: chain.first.pid, haproxy2: chain.second.pid });
    if (nodePair) Object.assign(pids, { node1: nodePair.first.pid, node2: nodePair.second.pid });
    log(`app pid ${app.pid} :${app.port}; sidecar A pid ${sidecarA.pid} outbound :${sidecarA.ports!.outbound}; sidecar B pid ${sidecarB.pid} inbound :${sidecarB.ports!.inbound}; ${chain ? `haproxy 1 pid ${chain.first.pid} :${chain.port}; haproxy 2 pid ${chain.second.pid} :${chain.second.port}; ` : ''}${nodePair ? `plain Node 1 pid ${nodePair.first.pid} :${nodePair.port}; plain Node 2 pid ${nodePair.second.pid} :${nodePair.second.port}; ` : ''}generator pid ${generator.pid}`);

    const targets: TargetName[] = ['direct', 'mesh', ...(chain ? ['haproxy' as const] : []), ...(nodePair ? ['node' as const] : [])];
    const origins: Record<TargetName, string> = {
      direct: `http://127.0.0.1:${app.port}`,
      mesh: `http://127.0.0.1:${sidecarA.ports!.outbound}`,
      haproxy: `http://127.0.0.1:${chain?.port ?? 0}`,
      node: `http://127.0.0.1:${nodePair?.port ?? 0}`,
    };
    const batchSizes = async () => parseHistogram(await metricsText(sidecarA), 'mcp_link_batch_size');
    const slice = async (scenario: Scenario, target: TargetName, ms: number, record: boolean) => {
      const mesh = record && target === 'mesh';
      const linkBefore = mesh ? await sidecarA.linkTotals() : undefined;
      const sizesBefore = mesh ? await batchSizes() : undefined;
      const before = readCpu(pids);
      const result = await generator.call<RunResult>({
        origin: origins[target], host: 'target', mode: scenario.mode,
        rate: scenario.rate, durationMs: ms, connections: scenario.connections, bodyBytes: options.body,
      } satisfies Omit<RunSpec, 'id'>);
      const after = readCpu(pids);
      if (!record) return;
      const tally = scenario.tallies[target];
      for (const [into, encoded] of [[tally.histogram, result.histogram], [tally.service, result.service], [tally.lag, result.sendLag]] as const) {
        const decoded = hdr.decodeFromCompressedBase64(encoded);
        into.add(decoded);
        decoded.destroy();
      }
      tally.sent += result.sent;
      tally.ok += result.ok;
      tally.errors += result.errors;
      tally.elapsedMs += result.elapsedMs;
      for (const [outcome, n] of Object.entries(result.outcomes)) tally.outcomes[outcome] = (tally.outcomes[outcome] ?? 0) + n;
      for (const name of Object.keys(after) as (keyof Tally['cpu'])[]) tally.cpu[name] += after[name] - before[name];
      if (linkBefore && sizesBefore) {
        const linkAfter = await sidecarA.linkTotals();
        tally.batches += linkAfter.batches - linkBefore.batches;
        tally.envelopes += linkAfter.envelopes - linkBefore.envelopes;
        tally.batchSizes = combineBuckets(tally.batchSizes, combineBuckets(await batchSizes(), sizesBefore, -1), 1);
      }
    };
    const memory = (): Memory => {
      const out: Memory = {};
      for (const hop of Object.keys(HOPS) as Hop[]) if (pids[hop]) out[hop] = memoryMiB(pids[hop]);
      return out;
    };
    const runScenario = async (scenario: Scenario) => {
      const slices = Math.max(1, Math.round(scenario.perTargetS / options.sliceS));
      const sliceMs = (scenario.perTargetS * 1000) / slices;
      log(`${scenario.title}: ${slices} × ${(sliceMs / 1000).toFixed(1)} s per target, interleaved`);
      for (let i = 0; i < slices; i++) {
        for (const target of sliceOrder(targets, i)) await slice(scenario, target, sliceMs, true);
      }
      scenario.memory = memory();
      log(`  ${targets.map((t) => {
        const tally = scenario.tallies[t];
        return `${TARGETS[t].short} p50 ${ms(tally.histogram.getValueAtPercentile(50))} p99 ${ms(tally.histogram.getValueAtPercentile(99))}, ${rps(tally)}, errors ${tally.errors}`;
      }).join('; ')}`);
    };

    // Warm-up (not recorded) before each kind of run, so the JIT has compiled the hot paths of every
    // process before anything is measured. The closed-loop warm-up comes only after the open-loop runs:
    // VmHWM only grows, and the open-loop figures must not carry the flat-out run's peak memory.
    const warmUp = async (mode: 'open' | 'closed') => {
      log(`warm-up (${mode} loop)`);
      const warm = newScenario('warm-up', mode, 1000, mode === 'open' ? options.connections : options.maxConnections, 0);
      for (const target of targets) await slice(warm, target, mode === 'open' ? 1500 : 1000, false);
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
    const final = memory();
    // Warnings a sidecar logged (a refused policy, a failing trace export…) would change what was measured.
    for (const sidecar of [sidecarA, sidecarB]) {
      // TLS_PLAINTEXT is expected: the bench runs the link without TLS (the report says so).
      for (const problem of sidecar.problems.filter((p) => p.code !== 'TLS_PLAINTEXT').slice(0, 5)) log(`${sidecar.name} logged: ${problem.code ?? ''} ${problem.msg}`);
    }

    let plot: string | undefined;
    if (options.out) {
      const file = plotFile(options.out);
      try {
        writeFileSync(file, await latencyPng(panels(scenarios, targets), Object.fromEntries(targets.map((t) => [TARGETS[t].short, TARGETS[t].colour]))));
        plot = path.basename(file);
        log(`latency plot written to ${path.relative(process.cwd(), file) || file}`);
      } catch (err) {
        log(`no latency plot: ${(err as Error).message}`);
      }
    }
    const traces = setup ? { exports: setup.sink.exports, bytes: setup.sink.bytes } : undefined;
    const markdown = report(options, scenarios, targets, final, peer, traces, plot, { before: loadBefore, after: os.loadavg()[0]! });
    const errors = scenarios.reduce((n, s) => n + targets.reduce((m, t) => m + s.tallies[t].errors, 0), 0);
    return { markdown, errors };
  } finally {
    for (const child of children) await child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The mesh as issue 9 runs it: a policy for the target service in both sidecars (timeouts, retries with a
 * budget, circuit breaker, outlier detection, P2C-EWMA balancing, an access rule), metrics (always on),
 * and tracing with the default sampler (1% of new traces) exported over OTLP/HTTP to a sink in this
 * process that only counts what it gets.
 */
async function meshSetup(dir: string): Promise<{ extraYaml: string; env: Record<string, string>; sink: TraceSink }> {
  const policy = path.join(dir, 'bench-policy.yaml');
  writeFileSync(policy, BENCH_POLICY);
  const sink = await TraceSink.start();
  return {
    extraYaml: `policies: [${JSON.stringify(policy)}]`,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' },
    sink,
  };
}

const BENCH_POLICY = `apiVersion: mcp-mesh.io/v1
kind: Policy
metadata:
  name: bench-target
spec:
  service: target
  timeouts: { connect: 1s, perTry: 5s, request: 15s }
  retries:
    attempts: 2
    backoff: { base: 25ms, max: 250ms }
    retryOn: [connect-failure, refused-stream, reset]
    budget: { ratio: 0.2, minPerSecond: 10, window: 10s }
  circuitBreaker: { enabled: true, errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindow: 10s, resetTimeout: 5s }
  outlierDetection: { enabled: true, consecutiveFailures: 5 }
  loadBalancer: { policy: p2c-ewma }
  access: { allow: [client] }
`;

function newScenario(title: string, mode: 'open' | 'closed', rate: number, connections: number, perTargetS: number): Scenario {
  const histogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  const tally = (): Tally => ({
    histogram: histogram(), service: histogram(), lag: histogram(),
    sent: 0, ok: 0, errors: 0, outcomes: {}, elapsedMs: 0,
    cpu: noCpu(0),
    batches: 0, envelopes: 0, batchSizes: NO_BUCKETS,
  });
  return { title, mode, rate, connections, perTargetS, tallies: { direct: tally(), mesh: tally(), haproxy: tally(), node: tally() }, memory: {} };
}

/** Every process at 0 CPU seconds, the whole machine at `machine`. */
function noCpu(machine: number): Tally['cpu'] {
  return { sidecarA: 0, sidecarB: 0, haproxy1: 0, haproxy2: 0, node1: 0, node2: 0, app: 0, generator: 0, machine };
}

function readCpu(pids: Partial<Record<ProcName, number>>): Tally['cpu'] {
  const cpu = noCpu(machineBusySeconds());
  for (const [name, pid] of Object.entries(pids) as [ProcName, number][]) cpu[name] = cpuSeconds(pid);
  return cpu;
}

/** The plot's panels: one per scenario, one line per target. */
function panels(scenarios: Scenario[], targets: TargetName[]): Panel[] {
  return scenarios.map((s) => ({
    title: s.mode === 'open' ? s.title : `closed loop, ${s.connections} connections`,
    series: targets.map((t) => {
      const h = s.tallies[t].histogram;
      return { target: TARGETS[t].short, points: percentilePoints((p) => h.getValueAtPercentile(p), h.totalCount) };
    }),
  }));
}

// ---------------------------------------------------------------------------------------------------
// The report

function report(options: Options, scenarios: Scenario[], targets: TargetName[], final: Memory, peer: Peer, traces: { exports: number; bytes: number } | undefined, plot: string | undefined, load: { before: number; after: number }): string {
  const m = machine();
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: HERE, encoding: 'utf8' }).trim();
  } catch { /* not a git checkout */ }
  const withPeer = targets.includes('haproxy');
  const out: string[] = [];
  out.push('# mcp-mesh benchmark: latest run', '');
  out.push(`${new Date().toISOString()} · commit ${commit} · \`npm run bench\``, '');
  out.push(`**Machine:** ${m.cpus} CPUs (nproc), ${m.model}, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.kernel}, Node ${m.node}. 1-minute load average ${load.before.toFixed(2)} before the run (other work on the machine), ${load.after.toFixed(2)} after.`, '');
  out.push(`**Setup:** separate processes on 127.0.0.1: a plain \`node:http\` app, the load generator (undici Pool), and ${['', 'one way', 'two ways', 'three ways', 'four ways'][targets.length]} to reach the app:`,
    '*direct*: generator → app. *mesh*: generator → sidecar A (outbound, HTTP/1.1, `Host: target`) ⇒ MCP/gRPC link ⇒',
    'sidecar B (inbound) → app; default sidecar config (batching on, no linger, no TLS between the sidecars, log level info, no per-request logs)',
    traces
      ? `plus, in both sidecars, a policy for \`target\` (timeouts, retries with a budget, circuit breaker, outlier detection, P2C-EWMA, an access rule: \`BENCH_POLICY\` in run.ts), metrics on, and tracing with the default sampler (1% of new traces) exported over OTLP/HTTP to a sink in the orchestrator (${traces.exports.toLocaleString('en')} exports, ${(traces.bytes / 1024).toFixed(0)} KiB by the end of the last scenario).`
      : 'with nothing added (`--bare-mesh`: no policy, no tracing).',
    withPeer
      ? `*HAProxy*: generator → haproxy 1 → haproxy 2 → app, HAProxy ${peer.binary!.version} (Debian's package), \`mode http\`, keep-alive on both sides, \`http-reuse always\` to the next hop, no logging, \`nbthread 1\` in each process (our sidecars are single-threaded Node processes too).`
      : `*HAProxy*: **skipped in this run** (${peer.skipped}); the HAProxy columns and ratios are missing.`,
    targets.includes('node')
      ? '*plain Node pair*: generator → node 1 → node 2 → app, two of the plainest reverse proxies Node can run (`node-pair.ts`: a `node:http` server that reads the body and sends it on with an undici Pool, keep-alive; no policy, metrics, tracing, logs or gRPC; Node\'s default flags): the floor of any proxy written in Node on this machine.'
      : '*plain Node pair*: left out in this run (`--no-node-pair`).',
    `Each request is a \`POST\` with a ${options.body.toLocaleString('en')}-byte body; the app answers with ${options.body.toLocaleString('en')} bytes. Every target gets the same load,`,
    `interleaved in slices of about ${options.sliceS} s whose order rotates (${sliceOrder(targets, 0).map((t) => TARGETS[t].short).join(', ')}; ${sliceOrder(targets, 1).map((t) => TARGETS[t].short).join(', ')}; …), after a warm-up of each.`,
    'Open loop: evenly paced at a constant rate, latency measured from each request\'s *intended* send time',
    '(no coordinated omission), into an HDR histogram. Closed loop: N connections, each sending as soon as its',
    'last answer is in. CPU = utime + stime from `/proc/<pid>/stat` over the slices of that target only.', '');
  if (plot) out.push(`![Latency by percentile, one panel per scenario, one line per target](${plot})`, '');

  for (const s of scenarios) out.push(...scenarioReport(s, targets));
  out.push(...targetsReport(scenarios, targets));
  const peaks = (Object.keys(HOPS) as Hop[]).filter((hop) => final[hop]).map((hop) => `${HOPS[hop].row.replace(/ \(.*/, '')} ${final[hop]!.peak.toFixed(1)} MiB (now ${final[hop]!.current.toFixed(1)})`);
  out.push('', `Peak RSS at the end of the run (after the maximum-throughput run): ${peaks.join(', ')}.`, '');
  return `${out.join('\n')}\n`;
}

const pct = (t: Tally, q: number) => t.histogram.getValueAtPercentile(q);
const PERCENTILES = [50, 90, 99, 99.9];
/** CPU seconds of `proc` per 1,000 requests answered in `t`'s slices. */
const perK = (t: Tally, proc: ProcName) => (t.ok ? (t.cpu[proc] / t.ok) * 1000 : 0);
const vcpu = (t: Tally, proc: ProcName | 'machine') => t.cpu[proc] / (t.elapsedMs / 1000);

function scenarioReport(s: Scenario, targets: TargetName[]): string[] {
  const out: string[] = [];
  const d = s.tallies.direct;
  const me = s.tallies.mesh;
  const h = s.tallies.haproxy;
  const n = s.tallies.node;
  const withPeer = targets.includes('haproxy');
  const withNode = targets.includes('node');
  const added = (t: Tally, q: number) => pct(t, q) - pct(d, q);
  const list = (f: (t: Tally) => string) => targets.map((t) => f(s.tallies[t])).join(' / ');
  const names = targets.map((t) => TARGETS[t].short).join(' / ');
  out.push(`## ${capitalise(s.title)}, ${s.perTargetS} s per target`, '');
  out.push('| target | requests | errors | req/s | p50 | p90 | p99 | p99.9 | max |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of targets) {
    const tally = s.tallies[t];
    out.push(`| ${TARGETS[t].row} | ${tally.sent.toLocaleString('en')} | ${tally.errors} | ${Math.round(rate(tally)).toLocaleString('en')} | ${PERCENTILES.map((q) => ms(pct(tally, q))).join(' | ')} | ${ms(tally.histogram.maxValue)} |`);
  }
  out.push(`| **mesh added** | | | | **${plus(added(me, 50))}** | ${plus(added(me, 90))} | **${plus(added(me, 99))}** | ${plus(added(me, 99.9))} | |`);
  const peers = PEERS.filter((p) => targets.includes(p.target));
  for (const { target } of peers) {
    const t = s.tallies[target];
    const { name } = TARGETS[target];
    out.push(`| ${name} added | | | | ${PERCENTILES.map((q) => plus(added(t, q))).join(' | ')} | |`);
    out.push(`| mesh added ÷ ${name} added | | | | ${PERCENTILES.map((q) => times(added(me, q), added(t, q))).join(' | ')} | |`);
  }
  out.push('');
  if (s.mode === 'open') {
    const q = (t: Tally, x: number) => t.service.getValueAtPercentile(x);
    out.push(`Generator health: requests left on average ${list((t) => ms(t.lag.mean))} after their due time (${names}), p99 ${list((t) => ms(t.lag.getValueAtPercentile(99)))}, max ${ms(Math.max(...targets.map((t) => s.tallies[t].lag.maxValue)))}; Node timers tick in whole milliseconds, so at ${s.rate.toLocaleString('en')} req/s about ${Math.max(1, Math.round(s.rate / 1000))} request${s.rate >= 1500 ? 's leave' : ' leaves'} per tick. That lag is inside the latencies above and hits every target alike. Measured from the moment each request actually left instead (service time): ${targets.map((t) => `${TARGETS[t].short} p50 ${ms(q(s.tallies[t], 50))} / p99 ${ms(q(s.tallies[t], 99))}`).join(', ')}; ${targets.filter((t) => t !== 'direct').map((t) => `${TARGETS[t].name} added ${plus(q(s.tallies[t], 50) - q(d, 50))} / ${plus(q(s.tallies[t], 99) - q(d, 99))}`).join(', ')}.`, '');
  } else {
    const share = (a: Tally, b: Tally) => `${(rate(a) / rate(b) * 100).toFixed(1)}%`;
    out.push(`**Throughput: mesh ${rps(me)}, ${share(me, d)} of direct (${rps(d)})${withPeer ? `; HAProxy chain ${rps(h)}, ${share(h, d)} of direct; mesh ÷ HAProxy ${share(me, h)}** (target ≥ 35%)` : '**'}${withNode ? `; plain Node pair ${rps(n)}, ${share(n, d)} of direct; mesh ÷ plain Node pair ${share(me, n)}` : ''}.`, '');
  }
  out.push('| process | CPU s per 1,000 requests | vCPU used | peak RSS so far (VmHWM) | RSS after (VmRSS) |', '|---|---:|---:|---:|---:|');
  for (const hop of Object.keys(HOPS) as Hop[]) {
    const mem = s.memory[hop];
    if (!mem) continue;
    const t = s.tallies[HOPS[hop].target];
    out.push(`| ${HOPS[hop].row} | ${perK(t, hop).toFixed(3)} | ${vcpu(t, hop).toFixed(2)} | ${mem.peak.toFixed(1)} MiB | ${mem.current.toFixed(1)} MiB |`);
  }
  out.push(`| app, ${names} | ${list((t) => perK(t, 'app').toFixed(3))} | ${list((t) => vcpu(t, 'app').toFixed(2))} | | |`);
  out.push(`| generator, ${names} | ${list((t) => perK(t, 'generator').toFixed(3))} | ${list((t) => vcpu(t, 'generator').toFixed(2))} | | |`, '');
  const hop = (a: Hop, peer: Tally, b: Hop) => `${times(perK(me, a), perK(peer, b))} CPU per request, ${times(s.memory[a]!.peak, s.memory[b]!.peak)} peak RSS`;
  for (const { target, hopName } of peers) {
    const [first, second] = hopsOf(target) as [Hop, Hop];
    if (!s.memory[first] || !s.memory[second]) continue;
    const t = s.tallies[target];
    out.push(`Per hop, mesh ÷ ${TARGETS[target].name}: sidecar A ÷ ${hopName} 1 ${hop('sidecarA', t, first)}; sidecar B ÷ ${hopName} 2 ${hop('sidecarB', t, second)}.`, '');
  }
  const ours = (t: TargetName) => {
    const tally = s.tallies[t];
    return hopsOf(t).reduce((sum, hop) => sum + tally.cpu[hop], tally.cpu.app + tally.cpu.generator);
  };
  const others = (t: TargetName) => Math.max(0, s.tallies[t].cpu.machine - ours(t)) / (s.tallies[t].elapsedMs / 1000);
  out.push(`Whole machine (\`/proc/stat\`): ${list((t) => vcpu(t, 'machine').toFixed(2))} of ${machine().cpus} vCPU busy during the ${names} slices; everything other than the benchmark's own processes for that target (kernel work not charged to them, other programs) took ${targets.map((t) => others(t).toFixed(2)).join(' / ')} vCPU.`, '');
  out.push(`Batching on the A → B link (sidecar A's admin \`/endpoints\`): ${me.envelopes.toLocaleString('en')} envelopes in ${me.batches.toLocaleString('en')} batches, **${me.batches ? (me.envelopes / me.batches).toFixed(2) : '-'} per batch** on average.`, '');
  const rows = bucketRows(me.batchSizes);
  if (rows.length) {
    out.push(`Batch sizes from sidecar A's \`mcp_link_batch_size\` histogram (admin \`/metrics\`, before and after each mesh slice; ${me.batchSizes.count.toLocaleString('en')} batches, ${me.batchSizes.count ? (me.batchSizes.sum / me.batchSizes.count).toFixed(2) : '-'} envelopes per batch):`, '');
    out.push('| envelopes per batch | batches | share |', '|---|---:|---:|');
    for (const r of rows) out.push(`| ${r.label} | ${r.n.toLocaleString('en')} | ${(r.share * 100).toFixed(1)}% |`);
    out.push('');
  }
  const odd = targets.flatMap((t) => Object.entries(s.tallies[t].outcomes).filter(([k]) => k !== '200').map(([k, n]) => `${TARGETS[t].short} ${k}: ${n}`));
  if (odd.length) out.push(`Non-200 outcomes: ${odd.join('; ')}.`, '');
  return out;
}

function targetsReport(scenarios: Scenario[], targets: TargetName[]): string[] {
  const withPeer = targets.includes('haproxy');
  const withNode = targets.includes('node');
  const out: string[] = ['## Against the targets of issue 9 (1,000 req/s, 1 KiB)', ''];
  const at = (r: number) => scenarios.find((s) => s.mode === 'open' && s.rate === r);
  const at1000 = at(1000);
  const at5000 = at(5000);
  const max = scenarios.find((s) => s.mode === 'closed');
  out.push('| figure | mesh | target | HAProxy, same run | mesh ÷ HAProxy | plain Node pair, same run | mesh ÷ plain Node pair | for reference |', '|---|---:|---:|---:|---:|---:|---:|---|');
  /** One row: the mesh's figure, the target, then each peer's figure and the mesh ÷ peer ratio. */
  const row = (figure: string, value: (t: TargetName) => number, target: string, show: (v: number) => string, reference: string) => {
    const mesh = value('mesh');
    const peer = (t: TargetName) => (targets.includes(t) ? `${show(value(t))} | ${times(mesh, value(t))}` : 'skipped | skipped');
    out.push(`| ${figure} | ${show(mesh)} | ${target} | ${PEERS.map((p) => peer(p.target)).join(' | ')} | ${reference} |`);
  };
  if (at1000) {
    const d = at1000.tallies.direct;
    const added = (t: TargetName, q: number) => pct(at1000.tallies[t], q) - pct(d, q);
    row('added latency, p50', (t) => added(t, 50), `≤ +0.50 ms ${mark(added('mesh', 50) <= 500)}`, plus, 'Dapr +1.06 ms');
    row('added latency, p99', (t) => added(t, 99), `≤ +2.00 ms ${mark(added('mesh', 99) <= 2000)}`, plus, 'Dapr +2.90 ms');
    const busier = (t: TargetName) => Math.max(...hopsOf(t).map((hop) => perK(at1000.tallies[t], hop)));
    const cpu = busier('mesh');
    row('CPU per 1,000 requests, busier hop', busier, `≤ 0.20 s ${mark(cpu <= 0.2)}`, (v) => `${v.toFixed(3)} s`, 'Dapr 0.20–0.48 s, Istio 0.20 s');
    const mb = (t: TargetName) => Math.max(...hopsOf(t).map((hop) => at1000.memory[hop]?.peak ?? 0)) * 1.048576;
    const rss = mb('mesh');
    row('peak RSS, bigger hop', mb, `≤ 100 MB ${mark(rss <= 100)}`, (v) => `${v.toFixed(0)} MB`, 'Dapr 51 MB, Istio 60 MB');
    if (at5000) {
      // Per-request CPU at 5,000 req/s as a share of that at 1,000, for the hop where it fell least.
      const scaling = (t: TargetName) => Math.max(...hopsOf(t).map((hop) => perK(at5000.tallies[t], hop) / perK(at1000.tallies[t], hop)));
      const mesh = scaling('mesh');
      const percent = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(0)}%` : '—');
      out.push(`| CPU per request at 5,000 req/s ÷ at 1,000, worse hop | ${percent(mesh)} | ≤ 80% ${mark(mesh <= 0.8)} | ${PEERS.map((p) => `${targets.includes(p.target) ? percent(scaling(p.target)) : 'skipped'} | |`).join(' ')} batching should make a busier sidecar cheaper per request |`);
    }
  }
  if (max) {
    const { direct: d, mesh: me, haproxy: h, node: n } = max.tallies;
    const ratio = rate(me) / rate(h);
    const share = (t: Tally) => `${(rate(t) / rate(d) * 100).toFixed(1)}%`;
    const ofDirect = targets.filter((t) => t !== 'direct').map((t) => `${TARGETS[t].name} ${share(max.tallies[t])}`).join(', ');
    out.push(`| max throughput | ${rps(me)} | ≥ 35% of HAProxy's${withPeer ? ` ${mark(ratio >= 0.35)}` : ''} | ${withPeer ? rps(h) : 'skipped'} | ${withPeer ? `**${(ratio * 100).toFixed(1)}%**` : 'skipped'} | ${withNode ? rps(n) : 'skipped'} | ${withNode ? `${(rate(me) / rate(n) * 100).toFixed(1)}%` : 'skipped'} | direct ${rps(d)}: ${ofDirect} of it |`);
  }
  return out;
}

const rate = (t: Tally) => (t.elapsedMs ? t.ok / (t.elapsedMs / 1000) : 0);
const rps = (t: Tally) => `${Math.round(rate(t)).toLocaleString('en')} req/s`;
function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// ---------------------------------------------------------------------------------------------------
// Processes

function startApp(bodyBytes: number): Promise<ListeningChild> {
  return startListeningChild(path.join(HERE, 'app.ts'), { BENCH_BODY_BYTES: String(bodyBytes) }, 'bench app');
}

/** Batches and envelopes a sidecar has sent on its links so far (admin /endpoints). */

// ---------------------------------------------------------------------------------------------------
// Options: flags, then BENCH_* environment variables, then defaults.

function usage(): string {
  return [USAGE_SYNC, ...SECTIONS.map((s) => s.usage)].join('\n');
}

function str(value: string | boolean | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function num(flag: string, value: string | undefined, fallback: number, min: number): number {
  const n = Number(value ?? fallback);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${flag} must be a number ≥ ${min}, got ${JSON.stringify(value)}`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const sectionFlags = Object.fromEntries(SECTIONS.flatMap((s) => [
    [`no-${s.name}`, { type: 'boolean' as const }], [`${s.name}-only`, { type: 'boolean' as const }], ...Object.entries(s.flags),
  ]));
  const { values: parsed } = parseArgs({
    args: argv, strict: true,
    options: {
      rate: { type: 'string' }, duration: { type: 'string' }, 'max-duration': { type: 'string' },
      'max-connections': { type: 'string' }, connections: { type: 'string' }, body: { type: 'string' },
      slice: { type: 'string' }, out: { type: 'string' }, 'sidecar-node-args': { type: 'string' }, 'no-haproxy': { type: 'boolean' }, 'no-node-pair': { type: 'boolean' }, 'bare-mesh': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...sectionFlags,
    },
  });
  const values = parsed as FlagValues;
  const env = process.env;
  /** A switch: its flag, or its variable set to 1 or true. */
  const on = (flag: string, variable: string) => values[flag] === true || ['1', 'true'].includes(env[variable] ?? '');
  const connections = Math.round(num('connections', str(values['connections']) ?? env['BENCH_CONNECTIONS'], 16, 1));
  const body = Math.round(num('body', str(values['body']) ?? env['BENCH_BODY'], 1024, 0));
  const sidecarNodeArgs = (str(values['sidecar-node-args']) ?? '').split(/\s+/).filter(Boolean);
  const common: CommonOptions = { connections, body, sidecarNodeArgs, haproxy: !on('no-haproxy', 'BENCH_NO_HAPROXY'), rawLog: (name) => rawLog(sidecarNodeArgs, name) };
  const out = str(values['out']) ?? path.join(HERE, 'results', 'latest.md');
  const options: Options = {
    ...common,
    rates: (str(values['rate']) ?? env['BENCH_RATE'] ?? '1000,5000').split(',').map((r) => num('rate', r.trim(), 1000, 1)),
    durationS: num('duration', str(values['duration']) ?? env['BENCH_DURATION'], 10, 0),
    maxDurationS: num('max-duration', str(values['max-duration']) ?? env['BENCH_MAX_DURATION'], 5, 0),
    maxConnections: Math.round(num('max-connections', str(values['max-connections']) ?? env['BENCH_MAX_CONNECTIONS'], 32, 1)),
    sliceS: num('slice', str(values['slice']) ?? env['BENCH_SLICE'], 2, 0.1),
    nodePair: !on('no-node-pair', 'BENCH_NO_NODE_PAIR'),
    bareMesh: on('bare-mesh', 'BENCH_BARE_MESH'),
    out: out === '-' ? undefined : path.resolve(out),
    sync: false,
    sections: [],
  };
  if (values['help']) return options;
  for (const s of SECTIONS) {
    if (values[`no-${s.name}`] && values[`${s.name}-only`]) throw new Error(`--${s.name}-only and --no-${s.name} exclude each other`);
  }
  const only = SECTIONS.filter((s) => values[`${s.name}-only`]);
  options.sync = only.length === 0 && (options.durationS > 0 || options.maxDurationS > 0);
  // Each section reads its flags now, so a bad one stops the bench before anything runs.
  options.sections = (only.length ? only : SECTIONS.filter((s) => !values[`no-${s.name}`]))
    .map((s) => ({ name: s.name, failure: s.failure, run: s.prepare(values, common) }));
  return options;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => { console.error(err); process.exitCode = 1; },
  );
}
