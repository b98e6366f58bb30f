// Helpers for the async-call and pub/sub integration tests (real sidecars, real HTTP apps):
//   - a recording app that logs every request it gets (message id, body, order, what it answered)
//     and answers as the test says (fail, hold back, take its time);
//   - async sends, message status and dead-letter calls on a sidecar's outbound listener;
//   - bounded waits on a message's state, on the app's receipts and on /metrics values;
//   - policy folders for the calling sidecar (async settings, subscriptions).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request, type Dispatcher } from 'undici';
import { listen, type RunningServer } from './apps.ts';
import { policy } from './policies.ts';
import { metricSum } from './prometheus.ts';
import type { SidecarProcess } from './sidecar-process.ts';
import { until, within } from './wait.ts';

// ---- the recording app -------------------------------------------------------------------------

/** One request as the app saw it. */
export interface Receipt {
  /** Order of arrival at this app (0, 1, 2…). */
  index: number;
  /** performance.now() when the whole request (headers and body) had arrived. */
  at: number;
  method: string;
  /** Path with query. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** `mcp-mesh-message-id`: set on every durable delivery. */
  messageId: string | undefined;
  idempotencyKey: string | undefined;
  topic: string | undefined;
  /** What the app answered (set once the answer is decided; 0 while it is pending). */
  status: number;
}

/** How the app answers one request: a status, or a promise of one (to take time, or hold it). */
export type Answer = (receipt: Receipt) => number | Promise<number>;

export interface RecordingApp extends RunningServer {
  readonly name: string;
  /** Every request so far, in order of arrival. */
  readonly receipts: Receipt[];
  /** Change how the app answers (default: 200 to everything). */
  answer: Answer;
  /** Called with each receipt as it arrives (before the answer), e.g. to kill a sidecar at the Nth. */
  onReceipt: ((receipt: Receipt) => void) | undefined;
  /** Receipts answered with a 2xx status. */
  successes(filter?: (r: Receipt) => boolean): Receipt[];
  /** Resolves once `condition()` holds, checked on every receipt and every answer; rejects after `ms`. */
  waitFor(condition: () => boolean, ms: number, message: string): Promise<void>;
  /**
   * Resolves once `count()` reaches `target`; rejects if it stops growing for `stallMs` or after `ms`
   * in all, saying where it stalled (a broken delivery fails fast instead of at the overall limit).
   */
  waitForCount(count: () => number, target: number, options: { ms: number; stallMs: number; what: string }): Promise<void>;
  /** TCP connections to the app open right now. */
  openConnections(): number;
  /** Resolves once no connection to the app is open and no request is half read (all a dead sidecar sent is in `receipts`). */
  idle(ms: number, message: string): Promise<void>;
}

export async function startRecordingApp(name = 'app'): Promise<RecordingApp> {
  const receipts: Receipt[] = [];
  const waiters = new Set<() => void>();
  const sockets = new Set<Socket>();
  const wake = () => { for (const waiter of [...waiters]) waiter(); };
  const state = { answer: (() => 200) as Answer, onReceipt: undefined as ((receipt: Receipt) => void) | undefined };

  /** Requests whose body is still being read (not yet receipts). */
  let reading = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    reading++;
    void (async () => {
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of req) chunks.push(chunk as Buffer);
      } finally {
        reading--;
      }
      const header = (n: string) => (typeof req.headers[n] === 'string' ? req.headers[n] as string : undefined);
      const receipt: Receipt = {
        index: receipts.length, at: performance.now(), method: req.method!, url: req.url!, headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        messageId: header('mcp-mesh-message-id'), idempotencyKey: header('idempotency-key'), topic: header('mcp-mesh-topic'), status: 0,
      };
      receipts.push(receipt);
      state.onReceipt?.(receipt);
      wake();
      const status = await state.answer(receipt);
      receipt.status = status;
      const body = JSON.stringify({ app: name, index: receipt.index, body: receipt.body });
      if (!res.destroyed) {
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-app': name });
        res.end(body);
      }
      wake();
    })().catch((err: unknown) => { res.destroy(err as Error); wake(); });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => { sockets.delete(socket); wake(); });
  });

  /** Checked on every receipt, answer and closed connection; bounded by `ms`. */
  const waitUntil = (condition: () => boolean, ms: number, message: string): Promise<void> => {
    let check = () => {};
    return within(new Promise<void>((resolve) => {
      check = () => { if (condition()) { waiters.delete(check); resolve(); } };
      waiters.add(check);
      check();
    }), ms, message).finally(() => waiters.delete(check));
  };

  const waitForCount = (count: () => number, target: number, options: { ms: number; stallMs: number; what: string }) => new Promise<void>((resolve, reject) => {
    let last = count();
    let lastChange = performance.now();
    const started = lastChange;
    const check = () => {
      const now = count();
      if (now >= target) { finish(); return; }
      if (now !== last) { last = now; lastChange = performance.now(); }
    };
    // The interval only notices the limits; progress is seen on every receipt.
    const timer = setInterval(() => {
      check();
      const now = performance.now();
      if (now - lastChange > options.stallMs) finish(new Error(`${options.what}: stalled at ${last} of ${target} (no progress for ${options.stallMs} ms)`));
      else if (now - started > options.ms) finish(new Error(`${options.what}: ${last} of ${target} after ${options.ms} ms`));
    }, 100);
    const finish = (err?: Error) => {
      clearInterval(timer);
      waiters.delete(check);
      if (err) reject(err); else resolve();
    };
    waiters.add(check);
    check();
  });

  const running = await listen(server);
  return {
    ...running,
    name,
    receipts,
    get answer() { return state.answer; },
    set answer(answer: Answer) { state.answer = answer; },
    get onReceipt() { return state.onReceipt; },
    set onReceipt(hook: ((receipt: Receipt) => void) | undefined) { state.onReceipt = hook; },
    successes: (filter = () => true) => receipts.filter((r) => r.status >= 200 && r.status < 300 && filter(r)),
    waitFor: waitUntil,
    waitForCount,
    openConnections: () => sockets.size,
    idle: (ms, message) => waitUntil(() => sockets.size === 0 && reading === 0, ms, message),
  };
}

// ---- async calls and the mesh API -----------------------------------------------------------------

export interface Accepted {
  status: number;
  /** mcp-mesh-error, for errors the mesh made. */
  code: string | undefined;
  /** The message id of a 202. */
  id: string;
  location: string | undefined;
  json: Record<string, unknown>;
  /** performance.now() when the 202 (or error) had fully arrived. */
  at: number;
}

/** Send one request with `Prefer: respond-async` to `service` through `sidecar` (Host: service). */
export async function sendAsync(sidecar: SidecarProcess, service: string, p: string, options: { body?: string; headers?: Record<string, string>; method?: Dispatcher.HttpMethod; dispatcher?: Dispatcher } = {}): Promise<Accepted> {
  const response = await request(`${sidecar.outboundUrl}${p}`, {
    method: options.method ?? 'POST',
    headers: { host: service, prefer: 'respond-async', ...options.headers },
    body: options.body,
    dispatcher: options.dispatcher,
  });
  const text = await response.body.text();
  const at = performance.now();
  const json = text.length > 0 ? JSON.parse(text) as Record<string, unknown> : {};
  return {
    status: response.statusCode,
    code: response.headers['mcp-mesh-error'] as string | undefined,
    id: typeof json.id === 'string' ? json.id : '',
    location: response.headers.location as string | undefined,
    json,
    at,
  };
}

/** A request to the sidecar's own mesh API on its outbound listener (Host: the sidecar itself). */
export async function meshApi<T = Record<string, unknown>>(sidecar: SidecarProcess, method: Dispatcher.HttpMethod, p: string, options: { body?: string; headers?: Record<string, string>; dispatcher?: Dispatcher } = {}): Promise<{ status: number; code: string | undefined; json: T; headers: Record<string, string | string[] | undefined> }> {
  const response = await request(`${sidecar.outboundUrl}${p}`, { method, body: options.body, headers: options.headers, dispatcher: options.dispatcher });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    code: response.headers['mcp-mesh-error'] as string | undefined,
    json: (text.length > 0 ? JSON.parse(text) : {}) as T,
    headers: response.headers,
  };
}

/** A message as GET /mesh/v1/messages/<id> shows it (the fields the tests read). */
export interface MessageView {
  id: string;
  state: 'queued' | 'in-flight' | 'delivered' | 'failed' | 'dead';
  service: string;
  attempts: number;
  priority: string;
  orderingKey?: string;
  topic?: string;
  eventId?: string;
  endpoint?: string;
  lastError?: { code: string; message: string; status?: number };
  response?: { status: number; headers: Record<string, string | string[]>; body?: string; bodyBase64?: string };
}

/** The message's status, or undefined if the sidecar answers 404. */
export async function messageStatus(sidecar: SidecarProcess, id: string, dispatcher?: Dispatcher): Promise<MessageView | undefined> {
  const { status, json } = await meshApi<MessageView>(sidecar, 'GET', `/mesh/v1/messages/${id}`, { dispatcher });
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`GET /mesh/v1/messages/${id}: ${status} ${JSON.stringify(json)}`);
  return json;
}

/** Poll the message's status until it is in one of `states`; resolves with that view. */
export async function untilState(sidecar: SidecarProcess, id: string, states: MessageView['state'][], ms = 10_000): Promise<MessageView> {
  let last: MessageView | undefined;
  try {
    await until(async () => {
      last = await messageStatus(sidecar, id);
      return last !== undefined && states.includes(last.state);
    }, { ms, message: `message ${id} never reached ${states.join('/')}` });
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}`);
  }
  return last!;
}

/** Run `task(i)` for i in [0, count) with at most `concurrency` at once; results in index order. */
export async function inParallel<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

// ---- metrics -----------------------------------------------------------------------------------

/** Prometheus text from the sidecar's admin /metrics. */
export async function metricsText(sidecar: SidecarProcess): Promise<string> {
  const response = await request(`http://127.0.0.1:${sidecar.ports.admin}/metrics`);
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`admin /metrics: ${response.statusCode} ${text}`);
  return text;
}

export async function metric(sidecar: SidecarProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricSum(await metricsText(sidecar), name, labels);
}

/** Poll /metrics until `name{labels}` satisfies `test`; resolves with the value. */
export async function untilMetric(sidecar: SidecarProcess, name: string, labels: Record<string, string>, test: (value: number) => boolean, ms = 10_000): Promise<number> {
  let value = Number.NaN;
  try {
    await until(async () => {
      value = await metric(sidecar, name, labels);
      return test(value);
    }, { ms, message: `${name}${JSON.stringify(labels)} never satisfied the test` });
  } catch (err) {
    throw new Error(`${(err as Error).message}; last value ${value}`);
  }
  return value;
}

// ---- folders and policies ----------------------------------------------------------------------

/** A fresh temp folder; remove it with removeDir. */
export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `mcp-mesh-${prefix}-`));
}

export function removeDir(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/** A policy folder holding `files` (name → text), for a calling sidecar's `policies:`. */
export function policyFolder(files: Record<string, string>): string {
  const dir = tempDir('policies');
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

export interface AsyncSettings {
  attempts?: number;
  base?: string;
  max?: string;
  maxAge?: string;
  attemptTimeout?: string;
}

/** A policy document for `service` with an async section (fast back-off for tests) and more spec lines. */
export function asyncPolicy(service: string, settings: AsyncSettings, moreSpec = ''): string {
  const parts = [
    settings.attempts !== undefined ? `attempts: ${settings.attempts}` : undefined,
    settings.base !== undefined || settings.max !== undefined
      ? `backoff: { ${[settings.base ? `base: ${settings.base}` : undefined, settings.max ? `max: ${settings.max}` : undefined].filter(Boolean).join(', ')} }`
      : undefined,
    settings.maxAge !== undefined ? `maxAge: ${settings.maxAge}` : undefined,
    settings.attemptTimeout !== undefined ? `attemptTimeout: ${settings.attemptTimeout}` : undefined,
  ].filter(Boolean);
  return policy(`${service}-async`, service, `  async: { ${parts.join(', ')} }\n${moreSpec}`);
}

/**
 * Fast reconnects, so a restarted peer is found again at once. Failure detection stays at its defaults:
 * a killed peer closes its TCP connections anyway, and a tight heartbeat could declare a busy (not dead)
 * link down under load, which would cut deliveries the tests count.
 */
export const FAST_LINK = { reconnectBase: '20ms', reconnectMax: '200ms' };
