// Micro-benchmarks of the sidecar's hot paths (issue 9), with tinybench, on the real modules:
//
//   envelope      encode/decode of a Batch (mcp/codec.ts): one request envelope with a 1 KiB body, and 16
//   headers       the app's raw request headers → the pipeline's Header[] (http/headers.ts)
//   balancer      pick() of each balancer over 3 and 100 endpoints; consistent-hash ring lookup and build
//   hash key      the affinity key of a request (affinity/hash-key.ts): header, cookie, query
//   policy        the effective policy of a request (policy/resolve.ts) with 1 and 50 routes, and the
//                 per-service state lookup that follows it (call/service-state.ts)
//   affinity      owner-token wrap/unwrap (affinity/token.ts), and routeSession on a tokened request
//   observer      what reporting one call costs (telemetry/observer.ts): no observer, the status page's
//                 live stats (admin/live-stats.ts), tracing not sampling and sampling (spans exported
//                 over OTLP/HTTP to a sink on loopback, trace-sink.ts); calling and called side
//
// Inputs are built as the sidecar builds them: policies compiled from YAML text with compilePolicies
// (what PolicyStore does), balancer settings from the compiled defaults, envelopes shaped like
// mcp/transport.ts requestEnvelope.
//
// Most operations take well under a microsecond, less than a timer read costs, so each tinybench
// sample is a batch of operations timed together: a sample's value is the batch's mean per
// operation (tinybench's overriddenDuration), and p99 is the 99th percentile of those batch means.
//
//   node bench/micro.ts [--time MS] [--out FILE]
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Bench, type FnReturnedObject } from 'tinybench';
import { hashKey } from '../sidecar/src/affinity/hash-key.ts';
import { routeSession } from '../sidecar/src/affinity/mcp-session.ts';
import { OwnerTokens } from '../sidecar/src/affinity/token.ts';
import type { Balancer } from '../sidecar/src/balancer/balancer.ts';
import { createBalancer } from '../sidecar/src/balancer/create.ts';
import { createLiveStats } from '../sidecar/src/admin/live-stats.ts';
import { ServiceStates } from '../sidecar/src/call/service-state.ts';
import type { Endpoint } from '../sidecar/src/discovery/resolver.ts';
import { endToEndRequestHeaders } from '../sidecar/src/http/headers.ts';
import { decodeBatch, encodeBatch, MessageType, Priority, type Envelope } from '../sidecar/src/mcp/codec.ts';
import { newMessageId } from '../sidecar/src/mcp/ids.ts';
import { parsePolicyText } from '../sidecar/src/policy/load.ts';
import { compilePolicies, type PolicyDefaults } from '../sidecar/src/policy/resolve.ts';
import type { LoadBalancerPolicy, LoadBalancerSettings } from '../sidecar/src/policy/types.ts';
import { NO_OBSERVER, type CallObserver, type InboundStart, type OutboundStart } from '../sidecar/src/telemetry/observer.ts';
import { createTracing } from '../sidecar/src/telemetry/tracing.ts';
import pino from 'pino';
import { markers, writeSection } from './report-sections.ts';
import { machine } from './proc.ts';
import { TraceSink } from './trace-sink.ts';

const { begin: MICRO_BEGIN, end: MICRO_END } = markers('micro');

export interface MicroOptions {
  /** Time budget per case, ms (tinybench `time`); warm-up is a quarter of it. */
  timeMs: number;
  /** Only cases whose group or name contains this (case-insensitive). */
  filter?: string;
}

export const MICRO_DEFAULTS: MicroOptions = { timeMs: 500 };

export interface MicroOutcome {
  markdown: string;
  ok: boolean;
}

interface Case {
  group: string;
  name: string;
  /** Operations per tinybench sample. */
  batch: number;
  /** One operation; returns something so the work is not optimised away. */
  op: () => unknown;
}

interface Row {
  group: string;
  name: string;
  meanNs: number;
  p99Ns: number;
  opsPerS: number;
  samples: number;
  error?: string;
}

const DEFAULTS: PolicyDefaults = { namespace: 'default', timeouts: { connectMs: 1000, requestMs: 15_000, streamIdleMs: 300_000 } };

// ---------------------------------------------------------------------------------------------------
// Inputs

/** The app's request as Node hands it to the outbound listener (rawHeaders). */
const RAW_HEADERS = [
  'Host', 'target', 'Content-Type', 'application/json', 'Content-Length', '1024', 'Connection', 'keep-alive',
  'Accept', 'application/json, text/event-stream', 'User-Agent', 'undici', 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  'Mcp-Session-Id', 'mm1.MTI3LjAuMC4xOjQ0MzIx.N2YzYjQ2ZTAtNjNkYy00YjQ4LWE4YTAtNWZiZDc3ZWU2Yzk0.0123456789abcdefghijkl', 'Cookie', 'lang=en; user="u-1842"',
];

function requestEnvelope(body: Buffer): Envelope {
  const headers = endToEndRequestHeaders(RAW_HEADERS);
  headers.push({ name: 'forwarded', value: 'for=127.0.0.1;host="target";proto=http' }, { name: 'x-forwarded-for', value: '127.0.0.1' });
  return {
    id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: 'client.default', destination: 'target.default',
    priority: Priority.MEDIUM, deadlineMs: 15_000, headers, payload: body, http: { method: 'POST', path: '/bench?user=u-1842', authority: 'target' },
  };
}

function endpoints(n: number): Endpoint[] {
  return Array.from({ length: n }, (_, i) => ({ address: `10.0.${i >> 8}.${i & 255}:15002`, labels: {}, weight: 1 }));
}

/** A policy file: a service-wide policy for `target` and `routes` route policies, each its own path prefix. */
function policyYaml(routes: number): string {
  const docs = [[
    'apiVersion: mcp-mesh.io/v1', 'kind: Policy', 'metadata: { name: target }', 'spec:', '  service: target',
    '  timeouts: { request: 5s }', '  retries: { attempts: 3 }',
  ].join('\n')];
  for (let i = 0; i < routes; i++) {
    docs.push([
      'apiVersion: mcp-mesh.io/v1', 'kind: Policy', `metadata: { name: target-r${i} }`, 'spec:', '  service: target',
      `  route: { name: r${i}, match: { path: { prefix: /api/v1/resource-${i} }, methods: [GET, POST] } }`,
      `  timeouts: { request: ${i + 1}s }`,
    ].join('\n'));
  }
  return `${docs.join('\n---\n')}\n`;
}

function compiled(routes: number) {
  const { policies, problems } = parsePolicyText(policyYaml(routes), `bench-${routes}-routes.yaml`);
  const result = compilePolicies({ policies }, DEFAULTS);
  const all = [...problems, ...result.problems];
  if (all.length) throw new Error(`bench policy set is invalid: ${all.map((p) => p.message).join('; ')}`);
  return result.table;
}

// ---------------------------------------------------------------------------------------------------
// Cases

async function cases(): Promise<{ list: Case[]; close: () => Promise<void> }> {
  const list: Case[] = [];
  const add = (group: string, name: string, batch: number, op: () => unknown) => list.push({ group, name, batch, op });
  // No policy file: the compiled defaults (the balancer settings below start from them).
  const none = compiled(0);
  const balancerSettings = (policy: LoadBalancerPolicy): LoadBalancerSettings => ({ ...none.defaults.loadBalancer, policy });

  // Envelopes: what the link encodes per batch and the peer decodes.
  const body = Buffer.alloc(1024, 'b');
  const one = { envelopes: [requestEnvelope(body)] };
  const sixteen = { envelopes: Array.from({ length: 16 }, () => requestEnvelope(body)) };
  const oneBytes = encodeBatch(one);
  const sixteenBytes = encodeBatch(sixteen);
  add('envelope', `encode 1 request (1 KiB body; ${oneBytes.length.toLocaleString('en')} B)`, 50, () => encodeBatch(one));
  add('envelope', '  decode 1 request', 50, () => decodeBatch(oneBytes));
  add('envelope', `encode batch of 16 (${sixteenBytes.length.toLocaleString('en')} B)`, 5, () => encodeBatch(sixteen));
  add('envelope', '  decode batch of 16', 5, () => decodeBatch(sixteenBytes));
  add('envelope', 'new message id (ULID)', 200, () => newMessageId());
  add('headers', `raw request headers → Header[] (${RAW_HEADERS.length / 2} headers)`, 100, () => endToEndRequestHeaders(RAW_HEADERS));

  // Balancers: candidates as the pipeline passes them (a fresh array per call is its filter's output).
  for (const n of [3, 100]) {
    const list = endpoints(n);
    for (const policy of ['round-robin', 'least-request', 'p2c-ewma'] as const) {
      const balancer = createBalancer(balancerSettings(policy));
      prime(balancer, list);
      add('balancer', `${policy}, ${n} endpoints`, 200, () => balancer.pick(list));
    }
    const settings = balancerSettings('consistent-hash');
    const ring = createBalancer(settings);
    prime(ring, list);
    const keys = Array.from({ length: 1024 }, (_, i) => `user-${i * 7919}`);
    let k = 0;
    add('balancer', `consistent-hash ring lookup, ${n} endpoints`, 200, () => ring.pick(list, { hashKey: keys[k++ & 1023]! }));
    add('balancer', `consistent-hash without a key (P2C), ${n} endpoints`, 200, () => ring.pick(list));
    add('balancer', `consistent-hash ring build, ${n} endpoints × ${settings.consistentHash.virtualNodes} points`, 1, () => createBalancer(settings).pick(list, { hashKey: 'k' }));
  }

  // The affinity key, when the policy hashes: the header source, then a cookie (second source).
  const headers = endToEndRequestHeaders(RAW_HEADERS);
  const request = { headers, path: '/bench?user=u-1842', source: 'client-7d9f-x2' };
  add('hash key', 'header source', 500, () => hashKey([{ header: 'x-user' }, { header: 'traceparent' }], request));
  add('hash key', 'cookie source (after a missing header)', 200, () => hashKey([{ header: 'x-user' }, { cookie: 'user' }], request));
  add('hash key', 'query source', 200, () => hashKey([{ query: 'user' }], request));

  // Policies: what the pipeline does per call (PolicyStore.resolve is PolicyTable.resolve).
  const services = new ServiceStates();
  for (const routes of [1, 50]) {
    const table = compiled(routes);
    // Routes are tried most specific first: aim at the one tried last, the longest walk to a match.
    const order = table.dump().services.find((s) => s.service === 'target')!.routes;
    const last = `${order.at(-1)!.match.path!.prefix!}/items/7?x=1`;
    add('policy', `resolve, ${routes} route${routes > 1 ? 's' : ''}: request matches the route tried last`, 200,
      () => table.resolve('target', 'default', { method: 'POST', path: last, headers }));
    add('policy', `resolve, ${routes} route${routes > 1 ? 's' : ''}: no route matches (service-wide)`, 200,
      () => table.resolve('target', 'default', { method: 'POST', path: '/other', headers }));
    const policy = table.resolve('target', 'default', { method: 'POST', path: last, headers });
    add('policy', `per-service state for the resolved policy, ${routes} route${routes > 1 ? 's' : ''}`, 200, () => services.get('target.default', policy));
  }
  add('policy', 'resolve, service without a policy (defaults)', 500, () => none.resolve('payments', 'default', { method: 'GET', path: '/x', headers }));

  // MCP session affinity: the response's session id is wrapped; each later request's token unwrapped.
  const tokens = new OwnerTokens('0123456789abcdef0123456789abcdef');
  const owner = { address: '10.0.0.12:15002', sessionId: '7f3b46e0-63dc-4b48-a8a0-5fbd77ee6c94' };
  const token = tokens.wrap(owner);
  const tokened = { headers: headers.map((h) => (h.name === 'mcp-session-id' ? { name: h.name, value: token } : h)), path: '/mcp' };
  add('affinity', 'owner token wrap (HMAC-SHA256)', 20, () => tokens.wrap(owner));
  add('affinity', 'owner token unwrap + verify', 20, () => tokens.unwrap(token));
  add('affinity', 'routeSession: a request with a token header', 20, () => routeSession(tokens, tokened));
  const close = await observerCases(add);
  return { list, close };
}

const TRACEPARENT = (flags: string) => ({ name: 'traceparent', value: `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-${flags}` });

/**
 * One call as the pipeline reports it (calling side: outbound, route, one attempt, ends) and as the
 * app forwarder does (called side: inbound, app call, ends), under each observer. Returns what stops
 * the tracing SDKs and the sink.
 */
async function observerCases(add: (group: string, name: string, batch: number, op: () => unknown) => void): Promise<() => Promise<void>> {
  const sink = await TraceSink.start();
  const identity = { service: 'client', namespace: 'default', instance: 'micro', logger: pino({ level: 'silent' }) };
  // Sampled spans leave in batches of up to 512 every 200 ms, as a busy sidecar exports them.
  const env = (sampling: Record<string, string>) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_BSP_SCHEDULE_DELAY: '200', ...sampling });
  const unsampled = await createTracing({ ...identity, env: env({ OTEL_TRACES_SAMPLER_ARG: '0' }) });
  const sampled = await createTracing({ ...identity, env: env({ OTEL_TRACES_SAMPLER: 'always_on' }) });
  const liveStats = createLiveStats().observer;
  const outbound = (headers: OutboundStart['headers']): OutboundStart => ({ service: 'target.default', method: 'POST', path: '/bench', headers, kind: 'call' });
  const callingSide = (observer: CallObserver, start: OutboundStart) => {
    const observed = observer.outbound(start);
    observed.route('default');
    const attempt = observed.attempt(1, '127.0.0.1:15002', 'closed');
    attempt.end({ status: 200 });
    observed.end({ status: 200 }, 1);
    return attempt.trace;
  };
  const calledSide = (observer: CallObserver, start: InboundStart) => {
    const observed = observer.inbound(start);
    const app = observed.appCall();
    app.end({ status: 200 });
    observed.end({ status: 200 });
    return app.headers;
  };
  const rows: [string, CallObserver, OutboundStart][] = [
    ['none (NO_OBSERVER)', NO_OBSERVER, outbound([])],
    ['live stats (status page)', liveStats, outbound([])],
    ['tracing on, not sampled (ratio 0, no parent)', unsampled.observer, outbound([])],
    ['tracing on, not sampled (parent flags 00)', unsampled.observer, outbound([TRACEPARENT('00')])],
    ['tracing on, sampled (always_on)', sampled.observer, outbound([TRACEPARENT('01')])],
  ];
  for (const [name, observer, start] of rows) {
    const inbound: InboundStart = { service: 'target.default', source: 'client.default', method: 'POST', path: '/bench', headers: [], trace: callingSide(observer, start), messageId: undefined };
    add('observer', `${name}: calling side`, 50, () => callingSide(observer, start));
    add('observer', `  ${name}: called side`, 50, () => calledSide(observer, inbound));
  }
  return async () => {
    await Promise.all([unsampled.shutdown(), sampled.shutdown()]);
    await sink.stop();
  };
}

/** Each endpoint answered once (p2c-ewma then has estimates, not only defaults), nothing in flight. */
function prime(balancer: Balancer, list: readonly Endpoint[]): void {
  for (const [i, e] of list.entries()) {
    balancer.onStart(e.address);
    balancer.onEnd(e.address, 1 + (i % 5) * 0.1, true);
  }
}

// ---------------------------------------------------------------------------------------------------
// Running and reporting

export async function runMicroBench(options: MicroOptions, log: (line: string) => void): Promise<MicroOutcome> {
  const filter = options.filter?.toLowerCase();
  const { list, close } = await cases();
  const selected = list.filter((c) => !filter || `${c.group} ${c.name}`.toLowerCase().includes(filter));
  const bench = new Bench({ time: options.timeMs, warmupTime: Math.max(10, options.timeMs / 4), iterations: 16, throws: false });
  let sink: unknown;
  for (const c of selected) {
    bench.add(`${c.group}: ${c.name}`, () => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < c.batch; i++) sink = c.op();
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      return { overriddenDuration: ms / c.batch, overriddenIterationCost: ms } satisfies FnReturnedObject;
    });
  }
  log(`micro: ${selected.length} cases, ${options.timeMs} ms each`);
  const started = performance.now();
  try {
    await bench.run();
  } finally {
    await close();
  }
  void sink;
  const rows: Row[] = bench.tasks.map((task, i) => {
    const c = selected[i]!;
    const result = task.result;
    if (result.state !== 'completed') {
      const error = 'error' in result ? String((result.error as Error)?.message ?? result.error) : result.state;
      return { group: c.group, name: c.name, meanNs: NaN, p99Ns: NaN, opsPerS: NaN, samples: 0, error };
    }
    return { group: c.group, name: c.name, meanNs: result.latency.mean * 1e6, p99Ns: result.latency.p99 * 1e6, opsPerS: 1e3 / result.latency.mean, samples: result.latency.samplesCount };
  });
  log(`micro: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const ok = rows.every((r) => !r.error);
  return { markdown: report(rows, options), ok };
}

function report(rows: Row[], options: MicroOptions): string {
  const m = machine();
  const out = [MICRO_BEGIN, '## Micro-benchmarks of the hot paths', ''];
  out.push(`${m.model}, ${m.cpus} vCPU, Node ${m.node}; tinybench, ${options.timeMs} ms per case after a warm-up. A sample is a batch of`,
    'operations timed together (most take less than a timer read); *mean* is time per operation, *p99* the 99th percentile of',
    'the batches\' per-operation means. Real modules, inputs built as the sidecar builds them (`bench/micro.ts`).', '');
  out.push('| group | case | mean | p99 | ops/s |', '|---|---|---:|---:|---:|');
  for (const r of rows) {
    if (r.error) out.push(`| ${r.group} | ${r.name} | **error: ${r.error}** | | |`);
    else out.push(`| ${r.group} | ${r.name.replace(/^ +/, '↳ ')} | ${ns(r.meanNs)} | ${ns(r.p99Ns)} | ${Math.round(r.opsPerS).toLocaleString('en')} |`);
  }
  out.push('', MICRO_END);
  return `${out.join('\n')}\n`;
}

/** ns → "84 ns" / "1.27 µs" / "3.4 ms". */
function ns(value: number): string {
  if (value < 1000) return `${value < 10 ? value.toFixed(1) : Math.round(value)} ns`;
  if (value < 1e6) return `${(value / 1000).toFixed(value < 1e4 ? 2 : 1)} µs`;
  return `${(value / 1e6).toFixed(2)} ms`;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, strict: true, options: { time: { type: 'string' }, out: { type: 'string' }, filter: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(`usage: node bench/micro.ts [--time MS (BENCH_MICRO_TIME, default ${MICRO_DEFAULTS.timeMs})] [--filter TEXT] [--out FILE]\n`);
    return 0;
  }
  const timeMs = Number(values.time ?? process.env['BENCH_MICRO_TIME'] ?? MICRO_DEFAULTS.timeMs);
  if (!Number.isFinite(timeMs) || timeMs < 10) throw new Error(`--time must be a number of ms ≥ 10, got ${JSON.stringify(values.time)}`);
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  const result = await runMicroBench({ timeMs, filter: values.filter }, log);
  process.stdout.write(result.markdown);
  if (values.out && values.out !== '-') {
    writeSection(path.resolve(values.out), result.markdown, MICRO_BEGIN, MICRO_END);
    log(`written to ${values.out}`);
  }
  return result.ok ? 0 : 1;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => { console.error(err); process.exitCode = 1; },
  );
}
