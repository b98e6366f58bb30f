// The demo's load: what the frontend app would do, sent to the frontend's own sidecar (outbound) with
// `Host: <service>`. Bounded in count and in time. Every call becomes one Outcome; whether it is what
// the demo expected is decided here, next to the call, so the summary only has to count.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { DECLINED_AMOUNT } from './apps.ts';

export interface Outcome {
  kind: string;
  /** Service the call was addressed to (Host). */
  service: string;
  status: number;
  /** `mcp-mesh-error` of the answer, when the mesh (not the app) made it. */
  meshError?: string;
  ms: number;
  replica?: string;
  /** For chained calls: the replica of the second hop (orders → payments). */
  upstreamReplica?: string;
  /** An error status the demo asked for on purpose (declined card, unknown service). */
  expectedError: boolean;
  /** Set when the outcome is not what the demo expected; makes the demo fail. */
  problem?: string;
}

export interface LoadOptions {
  /** Plain calls in the mixed phase. */
  requests: number;
  concurrency: number;
  /** Calls fired at once in the burst phase (to show batching). */
  burst: number;
  streams: number;
  uploads: number;
  uploadBytes: number;
  /** Give up (and fail) on anything still running after this long. */
  deadlineMs: number;
}

interface Expect {
  status: number;
  service: string;
  meshError?: string;
  upstream?: string;
}

/** What every call of one run shares. */
interface Run {
  base: string;
  agent: Agent;
  /** Aborts on the load deadline or when the demo is interrupted. */
  signal: AbortSignal;
  outcomes: Outcome[];
}

/** Runs the load; every call's outcome is pushed to `outcomes` as it ends (kept if the load is cut short). */
export async function runLoad(outboundPort: number, options: LoadOptions, outcomes: Outcome[], log: (line: string) => void, stop?: AbortSignal): Promise<void> {
  const run: Run = {
    base: `http://127.0.0.1:${outboundPort}`,
    agent: new Agent({ keepAliveTimeout: 10_000, headersTimeout: options.deadlineMs, bodyTimeout: options.deadlineMs }),
    signal: AbortSignal.any([AbortSignal.timeout(options.deadlineMs), ...(stop ? [stop] : [])]),
    outcomes,
  };
  try {
    await phases(run, options, log);
  } finally {
    await run.agent.close();
  }
  run.signal.throwIfAborted();
}

async function phases(run: Run, options: LoadOptions, log: (line: string) => void): Promise<void> {
  // Phase 0: a few calls so every process has compiled its hot path (reported apart).
  log('warm-up: 40 calls');
  await pool(Array.from({ length: 40 }, (_, i) => () => i % 2
    ? call(run, 'warm-up (orders, payments)', 'orders', 'POST', '/orders', { status: 201, service: 'orders', upstream: 'payments' }, JSON.stringify({ amount: 1 }))
    : call(run, 'warm-up (orders, payments)', 'payments', 'GET', '/balance?account=w', { status: 200, service: 'payments' })), 4);
  run.signal.throwIfAborted();

  // Phase 1: a mix of plain and chained calls, with SSE streams read alongside.
  log(`mixed load: ${options.requests} calls (concurrency ${options.concurrency}) and ${options.streams} SSE streams`);
  const tasks: (() => Promise<void>)[] = [];
  for (let i = 0; i < options.requests; i++) {
    const r = i % 20;
    if (r < 7) tasks.push(() => call(run, 'GET orders /orders/:id', 'orders', 'GET', `/orders/${1000 + i}`, { status: 200, service: 'orders' }));
    else if (r < 12) tasks.push(() => call(run, 'POST orders /orders → payments', 'orders', 'POST', '/orders', { status: 201, service: 'orders', upstream: 'payments' }, JSON.stringify({ amount: 10 + (i % 90) })));
    else if (r < 17) tasks.push(() => call(run, 'GET payments /balance', 'payments', 'GET', `/balance?account=a${i % 7}`, { status: 200, service: 'payments' }));
    else tasks.push(() => call(run, 'POST events /events', 'events', 'POST', '/events', { status: 202, service: 'events' }, JSON.stringify({ type: 'page-view', n: i })));
  }
  // Errors the demo provokes on purpose: a card the payments app declines, a service nobody runs.
  for (let i = 0; i < 4; i++) {
    tasks.splice(Math.floor(tasks.length * (i + 0.3) / 4), 0, () => call(run, 'POST orders /orders (declined)', 'orders', 'POST', '/orders', { status: 402, service: 'orders', upstream: 'payments' }, JSON.stringify({ amount: DECLINED_AMOUNT })));
    tasks.splice(Math.floor(tasks.length * (i + 0.7) / 4), 0, () => call(run, 'GET inventory (unknown)', 'inventory', 'GET', '/stock/42', { status: 404, service: 'inventory', meshError: 'UNKNOWN_SERVICE' }));
  }
  const streams = Array.from({ length: options.streams }, () => sse(run));
  await Promise.all([pool(tasks, options.concurrency), ...streams]);
  run.signal.throwIfAborted();

  // Phase 2: large uploads, each on its own gRPC stream with flow control (never buffered whole).
  log(`large uploads: ${options.uploads} × ${mib(options.uploadBytes)}, checked by sha256`);
  await Promise.all(Array.from({ length: options.uploads }, () => upload(run, options.uploadBytes)));
  run.signal.throwIfAborted();

  // Phase 3: a burst of calls at once, so the links have something to coalesce into batches.
  log(`burst: ${options.burst} calls at once to payments`);
  await Promise.all(Array.from({ length: options.burst }, (_, i) =>
    call(run, 'GET payments /balance (burst)', 'payments', 'GET', `/balance?account=b${i}`, { status: 200, service: 'payments' })));
}

async function call(run: Run, kind: string, host: string, method: 'GET' | 'POST' | 'PUT', path: string, expect: Expect, body?: string): Promise<void> {
  const started = performance.now();
  try {
    const res = await request(`${run.base}${path}`, {
      method, dispatcher: run.agent, signal: run.signal,
      headers: { host, ...(body ? { 'content-type': 'application/json' } : {}) },
      body,
    });
    await res.body.dump({ limit: 1 << 20 });
    run.outcomes.push(judge(kind, expect, res.statusCode, res.headers, performance.now() - started));
  } catch (err) {
    run.outcomes.push({ kind, service: expect.service, status: 0, ms: performance.now() - started, expectedError: false, problem: `request failed: ${(err as Error).message}` });
  }
}

function judge(kind: string, expect: Expect, status: number, headers: Record<string, string | string[] | undefined>, ms: number): Outcome {
  const meshError = headers['mcp-mesh-error'] as string | undefined;
  const replica = headers['x-replica'] as string | undefined;
  const upstreamReplica = headers['x-upstream-replica'] as string | undefined;
  const outcome: Outcome = { kind, service: expect.service, status, meshError, ms, replica, upstreamReplica, expectedError: status >= 400 && status === expect.status };
  if (status !== expect.status) outcome.problem = `status ${status}${meshError ? ` ${meshError}` : ''}, expected ${expect.status}`;
  else if (meshError !== expect.meshError) outcome.problem = `mcp-mesh-error ${meshError ?? '(none)'}, expected ${expect.meshError ?? '(none)'}`;
  else if (!expect.meshError && !replica?.startsWith(`${expect.service}-`)) outcome.problem = `answered by ${replica ?? '(no x-replica)'}, not a ${expect.service} replica`;
  else if (expect.upstream && !upstreamReplica?.startsWith(`${expect.upstream}-`)) outcome.problem = `second hop answered by ${upstreamReplica ?? '(nobody)'}, not a ${expect.upstream} replica`;
  return outcome;
}

/** An SSE stream read as it arrives: the first event must come well before the stream ends. */
async function sse(run: Run): Promise<void> {
  const n = 10;
  const interval = 50;
  const started = performance.now();
  const first: Outcome = { kind: 'GET events /stream (SSE, first event)', service: 'events', status: 0, ms: 0, expectedError: false };
  const whole: Outcome = { kind: 'GET events /stream (SSE, whole stream)', service: 'events', status: 0, ms: 0, expectedError: false };
  try {
    const res = await request(`${run.base}/stream?n=${n}&interval=${interval}`, { dispatcher: run.agent, signal: run.signal, headers: { host: 'events', accept: 'text/event-stream' } });
    first.status = whole.status = res.statusCode;
    whole.replica = res.headers['x-replica'] as string | undefined; // one call: counted once, on `whole`
    first.meshError = whole.meshError = res.headers['mcp-mesh-error'] as string | undefined;
    let text = '';
    let events = 0;
    for await (const chunk of res.body) {
      text += Buffer.from(chunk as Uint8Array).toString('utf8');
      const complete = text.split('\n\n');
      text = complete.pop() ?? '';
      for (const event of complete) {
        if (!event.includes('data: ')) continue;
        events++;
        if (events === 1) first.ms = performance.now() - started;
      }
    }
    whole.ms = performance.now() - started;
    if (res.statusCode !== 200) whole.problem = `status ${res.statusCode}${whole.meshError ? ` ${whole.meshError}` : ''}, expected 200`;
    else if (!whole.replica?.startsWith('events-')) whole.problem = `answered by ${whole.replica ?? '(no x-replica)'}`;
    else if (events !== n) whole.problem = `received ${events} of ${n} events`;
    // The upstream takes (n-1)·interval ms; if the first event only came at the end, it was buffered.
    else if (whole.ms - first.ms < (n - 1) * interval * 0.6) whole.problem = `first event came ${Math.round(first.ms)} ms in, only ${Math.round(whole.ms - first.ms)} ms before the end: the stream was buffered`;
  } catch (err) {
    whole.ms = performance.now() - started;
    whole.problem = `stream failed: ${(err as Error).message}`;
  }
  run.outcomes.push(first, whole);
}

/** A large upload sent in chunks (no content-length), hashed by the orders app; hashes must match. */
async function upload(run: Run, bytes: number): Promise<void> {
  const chunkSize = 1 << 20;
  const chunk = randomBytes(chunkSize);
  const expected = createHash('sha256');
  const chunks: Buffer[] = [];
  for (let sent = 0, i = 0; sent < bytes; sent += chunkSize, i++) {
    const part = Buffer.from(chunk.subarray(0, Math.min(chunkSize, bytes - sent)));
    part.writeUInt32BE(i, 0); // every chunk differs, so a reordered or repeated chunk changes the hash
    expected.update(part);
    chunks.push(part);
  }
  const digest = expected.digest('hex');
  const kind = `PUT orders /upload (${mib(bytes)})`;
  const started = performance.now();
  try {
    const res = await request(`${run.base}/upload`, {
      method: 'PUT', dispatcher: run.agent, signal: run.signal,
      headers: { host: 'orders', 'content-type': 'application/octet-stream' },
      body: Readable.from(chunks), // streamed in 1 MiB chunks (chunked), no content-length
    });
    const text = await res.body.text();
    const outcome = judge(kind, { status: 200, service: 'orders' }, res.statusCode, res.headers, performance.now() - started);
    if (!outcome.problem) {
      const answer = JSON.parse(text) as { bytes: number; sha256: string };
      if (answer.bytes !== bytes || answer.sha256 !== digest) outcome.problem = `app received ${answer.bytes} bytes with sha256 ${answer.sha256.slice(0, 12)}…, sent ${bytes} with ${digest.slice(0, 12)}…`;
    }
    run.outcomes.push(outcome);
  } catch (err) {
    run.outcomes.push({ kind, service: 'orders', status: 0, ms: performance.now() - started, expectedError: false, problem: `upload failed: ${(err as Error).message}` });
  }
}

async function pool(tasks: (() => Promise<void>)[], concurrency: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, tasks.length) }, worker));
}

export function mib(bytes: number): string {
  return `${+(bytes / (1 << 20)).toFixed(1)} MiB`;
}
