// Real HTTP apps for integration tests, on 127.0.0.1 port 0. One "test app" answers a few routes
// that the tests need (echo, status, headers, SSE, held requests, upload hash, download); moments
// that tests must wait for (a request arrived, a request was aborted) are promises, never sleeps.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { hashStream, patternStream } from './data.ts';

export interface RunningServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** Listen on 127.0.0.1:0 and return the port; close() cuts open connections too. */
export async function listen(server: Server): Promise<RunningServer> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    close: async () => {
      if (!server.listening) return;
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * A loopback port that nothing listens on, for "app down" and "no sidecar there". It is taken below
 * the kernel's ephemeral range, so a later bind to port 0 (a sidecar, an app) cannot be handed it.
 */
export async function closedPort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch { /* not Linux: keep the usual default */ }
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (low - 10_000));
    const server = createServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (free) {
      await new Promise((resolve) => server.close(resolve));
      return port;
    }
  }
  throw new Error('no free port found below the ephemeral range');
}

/** What the echo route saw, as JSON in its response body. */
export interface Echo {
  method: string;
  url: string;
  rawHeaders: string[];
  body: string;
  bodyBytes: number;
}

/** A request the app is holding open until the test releases it. */
export interface HeldRequest {
  req: IncomingMessage;
  res: ServerResponse;
  /** Answer 200 with `body`. */
  release(body?: string): void;
  /** Resolves if the connection closes before the response was finished (the caller gave up). */
  aborted: Promise<void>;
}

/** How `/work` answers; tests change it while the app runs (a replica turning slow, flaky or down). */
export interface Behaviour {
  /** Wait this long before answering. */
  delayMs: number;
  /** 'every-other': the 2nd, 4th, 6th… `/work` request gets 503 (by a counter, so deterministic). */
  failing: 'never' | 'every-other' | 'always';
  /** Hold this many of the next `/work` requests (handed out by nextHeld) instead of answering. */
  hold: number;
}

export interface TestApp extends RunningServer {
  /** Names the replica: the `x-replica` header and body of `/work` answers. */
  readonly name: string;
  readonly behaviour: Behaviour;
  /** Resolves with the next request to /hold… (requests already waiting are handed out first). */
  nextHeld(): Promise<HeldRequest>;
  /** Resolves with a function that lets the open /sse stream send its second event and end. */
  nextSse(): Promise<() => void>;
  /** Requests seen, by first path segment (`/work` counts /work/1 and /work/2). */
  count(prefix: string): number;
  /** Requests seen for exactly this path (without query). */
  countPath(path: string): number;
  /** Body bytes of the current (or last) /upload received so far, and of /download handed to the socket so far. */
  readonly progress: { uploaded: number; downloaded: number };
}

function queue<T>(): { push(item: T): void; next(): Promise<T> } {
  const items: T[] = [];
  const takers: ((item: T) => void)[] = [];
  return {
    push(item) { const taker = takers.shift(); if (taker) taker(item); else items.push(item); },
    next() { const item = items.shift(); return item !== undefined ? Promise.resolve(item) : new Promise((resolve) => takers.push(resolve)); },
  };
}

/**
 * Routes:
 * - `/status/NNN`: answers status NNN (body "status NNN" unless 204/304).
 * - `/response-headers`: repeated set-cookie and x-multi, plus hop-by-hop headers that must not pass.
 * - `/sse`: `data: one`, then waits for the test (nextSse) before `data: two` and the end.
 * - `/hold…`: waits for the test (nextHeld).
 * - `/upload`: answers {sha256, bytes} of the request body.
 * - `/download?bytes=N&seed=S`: N bytes of the test pattern, with content-length.
 * - `/chunked`: a body without content-length, in three writes.
 * - `/work…`: a replica's unit of work, as `behaviour` says (200 with the replica's name, or 503).
 * - `/reset-once/…`: the first request to each path has its connection cut; later ones get 200.
 * - `/delay/N`: 200 after N ms.
 * - anything else: echo ({method, url, rawHeaders, body}) with `x-echo-method`.
 */
export async function startTestApp(options: { name?: string } = {}): Promise<TestApp> {
  const held = queue<HeldRequest>();
  const sse = queue<() => void>();
  const counts = new Map<string, number>();
  const paths = new Map<string, number>();
  const progress = { uploaded: 0, downloaded: 0 };
  const name = options.name ?? 'app';
  const behaviour: Behaviour = { delayMs: 0, failing: 'never', hold: 0 };
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    const first = `/${url.pathname.split('/')[1] ?? ''}`;
    counts.set(first, (counts.get(first) ?? 0) + 1);
    const seen = (paths.get(url.pathname) ?? 0) + 1;
    paths.set(url.pathname, seen);
    try {
      if (first === '/work') return await work(req, res, name, behaviour, counts.get(first)!, held);
      if (first === '/reset-once') return resetOnce(req, res, name, seen);
      if (first === '/delay') return await delay(req, res, Number(url.pathname.split('/')[2]));
      await route(req, res, url, held, sse, progress);
    } catch (err) {
      if (!res.headersSent) { res.writeHead(500); res.end(String(err)); } else res.destroy();
    }
  });
  const running = await listen(server);
  return {
    ...running,
    name,
    behaviour,
    nextHeld: () => held.next(),
    nextSse: () => sse.next(),
    count: (prefix) => counts.get(prefix) ?? 0,
    countPath: (path) => paths.get(path) ?? 0,
    progress,
  };
}

async function work(req: IncomingMessage, res: ServerResponse, name: string, behaviour: Behaviour, seen: number, held: { push(h: HeldRequest): void }): Promise<void> {
  if (behaviour.hold > 0) {
    behaviour.hold--;
    return hold(req, res, held);
  }
  req.resume();
  if (behaviour.delayMs > 0) await sleep(behaviour.delayMs);
  const fail = behaviour.failing === 'always' || (behaviour.failing === 'every-other' && seen % 2 === 0);
  const body = fail ? `${name} unavailable` : name;
  // With a length, as most apps answer small calls: the answer rides inline on the link. (An answer
  // without one is streamed, and a stream cut by its replica's death cannot be retried.)
  res.writeHead(fail ? 503 : 200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-replica': name });
  res.end(body);
}

function resetOnce(req: IncomingMessage, res: ServerResponse, name: string, seen: number): void {
  req.resume();
  if (seen === 1) {
    req.socket.destroy(); // no answer at all: the sidecar in front sees a reset connection
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'x-replica': name });
  res.end(name);
}

async function delay(req: IncomingMessage, res: ServerResponse, ms: number): Promise<void> {
  req.resume();
  await sleep(ms); // the app's own slowness, not a test synchronising on time
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`after ${ms} ms`);
}

async function hold(req: IncomingMessage, res: ServerResponse, held: { push(h: HeldRequest): void }): Promise<void> {
  for await (const _ of req) { /* read the body */ }
  let resolveAborted!: () => void;
  const aborted = new Promise<void>((resolve) => { resolveAborted = resolve; });
  res.once('close', () => { if (!res.writableFinished) resolveAborted(); });
  held.push({ req, res, aborted, release: (body = 'released') => { if (!res.destroyed) res.end(body); } });
}

async function route(req: IncomingMessage, res: ServerResponse, url: URL, held: { push(h: HeldRequest): void }, sse: { push(r: () => void): void }, progress: { uploaded: number; downloaded: number }): Promise<void> {
  const path = url.pathname;
  if (path.startsWith('/status/')) {
    req.resume();
    const status = Number(path.slice('/status/'.length));
    res.writeHead(status, { 'x-status': String(status) });
    res.end(status === 204 || status === 304 ? undefined : `status ${status}`);
    return;
  }
  if (path === '/response-headers') {
    req.resume();
    res.writeHead(200, [
      ['set-cookie', 'a=1; Path=/'], ['set-cookie', 'b=2; HttpOnly'],
      ['x-multi', 'one'], ['x-multi', 'two'],
      ['x-hop-res', 'must not pass'], ['connection', 'x-hop-res'],
      ['keep-alive', 'timeout=7'], ['proxy-authenticate', 'Basic realm="nope"'],
      ['content-type', 'text/plain; charset=utf-8'], ['content-length', '2'],
    ]);
    res.end('ok');
    return;
  }
  if (path === '/sse') {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('data: one\n\n');
    sse.push(() => { res.end('data: two\n\n'); });
    return;
  }
  if (path.startsWith('/hold')) return hold(req, res, held);
  if (path === '/upload') {
    progress.uploaded = 0;
    const { sha256, bytes } = await hashStream(req, (n) => { progress.uploaded += n; });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ sha256, bytes }));
    return;
  }
  if (path === '/download') {
    req.resume();
    const bytes = Number(url.searchParams.get('bytes'));
    const seed = Number(url.searchParams.get('seed') ?? 1);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes) });
    progress.downloaded = 0;
    patternStream(bytes, seed).on('data', (chunk: Buffer) => { progress.downloaded += chunk.byteLength; }).pipe(res);
    return;
  }
  if (path === '/chunked') {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('part one, ');
    res.write('part two, ');
    res.end('part three');
    return;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  const echo: Echo = { method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, body: body.toString('latin1'), bodyBytes: body.byteLength };
  const json = JSON.stringify(echo);
  res.writeHead(200, { 'content-type': 'application/json', 'x-echo-method': req.method!, 'content-length': Buffer.byteLength(json) });
  res.end(req.method === 'HEAD' ? undefined : json);
}

/** Values of header `name` (any case) in a raw header list, in order. */
export function rawValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) out.push(rawHeaders[i + 1]!);
  return out;
}
