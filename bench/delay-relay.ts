// A userspace TCP relay that stands for a network link between two hosts: every chunk it reads is
// written on the other side a fixed one-way delay later (default 2.5 ms each way, 5 ms round trip),
// in order, with no bandwidth limit. The kernel here has no netem, so the seed scenario (seed.ts) puts
// one of these between "host 1" and "host 2": every byte between them crosses it.
//
//   client ──▶ relay (listen) ── delay ──▶ target        and back the same way, delayed as well
//
// Cheap in CPU: each direction of a connection keeps a FIFO of chunks with their due times; one alarm
// per process (a thread sleeping on a futex until the earliest due time: Node's own timers tick in
// whole milliseconds and would stretch every hop by up to 1 ms) wakes the main thread, which sends every
// chunk then due, per connection in one corked write (one writev). A chunk never leaves before its due
// time, so the delay is a lower bound; how long each chunk was really held is in stats().
// The end of a stream (FIN) is delayed like data and passed on with end() (half-close kept); a reset
// or error on one side destroys the other. A full destination pauses the source until it drains
// (flow control, as TCP does), so memory stays bounded without limiting bandwidth.
//
// In-process: `await startDelayRelay({ listen, target, delayMs })`. As a process:
//   node bench/delay-relay.ts [--delay-ms 2.5] --route LISTEN=TARGET [--route …]
// e.g. --route 127.0.0.2:0=127.0.0.1:8080; it prints {"ports":[…]} (or sends it over IPC when forked;
// then {cmd:'stats'} is answered and {stop:true} closes it). Only loopback addresses (127.0.0.0/8).
import net from 'node:net';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';

export interface Endpoint {
  host: string;
  port: number;
}

export interface RelayOptions {
  /** Where the relay listens (port 0: any free port). */
  listen: Endpoint;
  /** Where each accepted connection is carried to. */
  target: Endpoint;
  /** One-way delay added in each direction, ms (fractions allowed). */
  delayMs: number;
}

export interface RelayStats {
  connections: number;
  chunks: number;
  bytes: number;
  /** How long chunks were really held, µs (≥ the delay): p50, p99, max. */
  holdP50Us: number;
  holdP99Us: number;
  holdMaxUs: number;
  /** Corked writes (one can carry many chunks). */
  flushes: number;
}

export interface DelayRelay {
  readonly port: number;
  stats(): RelayStats;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

/** Refuses anything outside 127.0.0.0/8: the relay is for loopback scenarios only. */
function assertLoopback(host: string): void {
  if (net.isIPv4(host) && host.startsWith('127.')) return;
  throw new Error(`delay relay: ${host} is not a 127.0.0.0/8 address`);
}

interface Counters {
  connections: number;
  chunks: number;
  bytes: number;
  flushes: number;
  hold: hdr.Histogram;
}

/** Milliseconds on CLOCK_MONOTONIC: the same clock in every thread (performance.now() is not). */
function monoMs(): number {
  const [sec, ns] = process.hrtime();
  return sec * 1e3 + ns / 1e6;
}

// The alarm clock's thread: sleeps (futex, sub-millisecond) until the time main last wrote, then
// posts one message; it fires once per schedule (the generation counter tells a new one).
const ALARM_THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const due = new Float64Array(workerData, 0, 1);
const gen = new Int32Array(workerData, 8, 1);
const now = () => { const [s, ns] = process.hrtime(); return s * 1e3 + ns / 1e6; };
let seen = Atomics.load(gen, 0);
for (;;) {
  const wait = due[0] - now();
  if (wait > 0) {
    Atomics.wait(gen, 0, seen, Math.min(wait, 1e9));
  } else {
    parentPort.postMessage(0);
    Atomics.wait(gen, 0, seen);
  }
  seen = Atomics.load(gen, 0);
}`;

/**
 * Wakes the main thread at a time given to the sub-millisecond: Node's timers tick in whole
 * milliseconds and would hold chunks up to a millisecond too long, which stretches the round trip.
 * One for the whole process, whatever the number of relays and connections.
 */
class Alarm {
  readonly #due: Float64Array;
  readonly #gen: Int32Array;
  #set = Infinity;

  constructor(ring: () => void) {
    const shared = new SharedArrayBuffer(16);
    this.#due = new Float64Array(shared, 0, 1);
    this.#gen = new Int32Array(shared, 8, 1);
    this.#due[0] = Infinity;
    const thread = new Worker(ALARM_THREAD, { eval: true, workerData: shared });
    thread.on('message', () => { this.#set = Infinity; ring(); });
    thread.unref(); // after on('message'), which would ref it again: the sockets keep the process alive, not the clock
  }

  /** Ring at `ms` (monoMs), unless it is already set to ring sooner. */
  at(ms: number): void {
    if (ms >= this.#set) return;
    this.#set = ms;
    this.#due[0] = ms;
    Atomics.add(this.#gen, 0, 1);
    Atomics.notify(this.#gen, 0);
  }
}

/** Pipes holding chunks; on each ring, all of them send what is due and the alarm is set to the next. */
const waiting = new Set<DelayedPipe>();
let alarm: Alarm | undefined;

function ring(): void {
  const now = monoMs();
  let next = Infinity;
  for (const pipe of waiting) {
    const due = pipe.flush(now);
    if (due === undefined) waiting.delete(pipe);
    else next = Math.min(next, due);
  }
  if (next < Infinity) alarm!.at(next);
}

/** One direction of one connection: from `from` to `to`, each chunk held until its due time. */
class DelayedPipe {
  readonly #from: net.Socket;
  readonly #to: net.Socket;
  readonly #delayMs: number;
  readonly #counters: Counters;
  // A FIFO as an array with a head index (shift() on a long array is O(n)); null marks the end of stream.
  #chunks: (Buffer | null)[] = [];
  #due: number[] = [];
  #head = 0;
  readonly #onEnd: () => void;

  /** `onEnd`: the source's end has been passed on (after the delay). */
  constructor(from: net.Socket, to: net.Socket, delayMs: number, counters: Counters, onEnd: () => void) {
    this.#from = from;
    this.#to = to;
    this.#delayMs = delayMs;
    this.#counters = counters;
    this.#onEnd = onEnd;
    from.on('data', (chunk: Buffer) => this.#push(chunk));
    from.on('end', () => this.#push(null));
  }

  #push(chunk: Buffer | null): void {
    const due = monoMs() + this.#delayMs;
    this.#chunks.push(chunk);
    this.#due.push(due);
    waiting.add(this);
    alarm ??= new Alarm(ring);
    alarm.at(due);
  }

  /** Writes every chunk due by `now` in one corked write; the next chunk's due time, if any is left. */
  flush(now: number): number | undefined {
    if (this.#to.destroyed) return undefined;
    if (this.#head < this.#chunks.length && this.#due[this.#head]! <= now) {
      this.#counters.flushes++;
      let full = false;
      this.#to.cork();
      while (this.#head < this.#chunks.length && this.#due[this.#head]! <= now) {
        const chunk = this.#chunks[this.#head]!;
        const held = now - this.#due[this.#head]! + this.#delayMs;
        this.#chunks[this.#head] = null;
        this.#head++;
        if (chunk === null) { this.#to.end(); this.#onEnd(); continue; }
        this.#counters.chunks++;
        this.#counters.bytes += chunk.length;
        this.#counters.hold.recordValue(Math.max(1, Math.round(held * 1000)));
        if (!this.#to.write(chunk)) full = true;
      }
      this.#to.uncork();
      if (full && !this.#from.isPaused()) {
        this.#from.pause();
        this.#to.once('drain', () => this.#from.resume());
      }
    }
    if (this.#head < this.#chunks.length) return this.#due[this.#head];
    this.#chunks = [];
    this.#due = [];
    this.#head = 0;
    return undefined;
  }

  stop(): void {
    waiting.delete(this);
  }
}

export async function startDelayRelay(options: RelayOptions): Promise<DelayRelay> {
  assertLoopback(options.listen.host);
  assertLoopback(options.target.host);
  if (!(options.delayMs >= 0)) throw new Error(`delay relay: bad delay ${options.delayMs}`);
  const counters: Counters = {
    connections: 0, chunks: 0, bytes: 0, flushes: 0,
    hold: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 }),
  };
  const open = new Set<net.Socket>();

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    counters.connections++;
    const upstream = net.connect({ host: options.target.host, port: options.target.port, allowHalfOpen: true, noDelay: true });
    let ended = 0;
    // Both ends passed on, each side has read the other's FIN: close both once their writes are out.
    const onEnd = () => { if (++ended === 2) for (const s of [client, upstream]) s.destroySoon(); };
    const pipes = [new DelayedPipe(client, upstream, options.delayMs, counters, onEnd), new DelayedPipe(upstream, client, options.delayMs, counters, onEnd)];
    for (const socket of [client, upstream]) {
      open.add(socket);
      // A failure (reset, refused connect) is passed on as a reset, not as an orderly end.
      socket.on('error', () => {
        const other = socket === client ? upstream : client;
        if (!other.destroyed) other.resetAndDestroy();
        socket.destroy();
      });
      // A socket closes by itself once it has read its FIN and written ours (Node's autoDestroy); what
      // it sent still waits in its pipe and goes out after the delay.
      socket.on('close', () => {
        open.delete(socket);
        if (client.destroyed && upstream.destroyed) for (const pipe of pipes) pipe.stop();
      });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    stats: () => ({
      connections: counters.connections, chunks: counters.chunks, bytes: counters.bytes, flushes: counters.flushes,
      holdP50Us: counters.hold.getValueAtPercentile(50), holdP99Us: counters.hold.getValueAtPercentile(99), holdMaxUs: counters.hold.maxValue,
    }),
    close: () => new Promise<void>((resolve) => {
      for (const socket of open) socket.destroy();
      server.close(() => { counters.hold.destroy(); resolve(); });
    }),
  };
}

/** "127.0.0.2:0" → { host, port }. */
function parseEndpoint(text: string): Endpoint {
  const at = text.lastIndexOf(':');
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`delay relay: bad address ${text}`);
  return { host: text.slice(0, at), port };
}

/** Sums the stats of several relays (one process may run a route per link). */
export function sumStats(all: RelayStats[]): RelayStats {
  const sum = (key: 'connections' | 'chunks' | 'bytes' | 'flushes') => all.reduce((n, s) => n + s[key], 0);
  const most = (key: 'holdP50Us' | 'holdP99Us' | 'holdMaxUs') => all.reduce((n, s) => Math.max(n, s[key]), 0);
  return { connections: sum('connections'), chunks: sum('chunks'), bytes: sum('bytes'), flushes: sum('flushes'), holdP50Us: most('holdP50Us'), holdP99Us: most('holdP99Us'), holdMaxUs: most('holdMaxUs') };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'delay-ms': { type: 'string', default: '2.5' }, route: { type: 'string', multiple: true, default: [] } } });
  const delayMs = Number(values['delay-ms']);
  if (values.route.length === 0) throw new Error('usage: node bench/delay-relay.ts [--delay-ms 2.5] --route LISTEN=TARGET …');
  const relays = await Promise.all(values.route.map((route) => {
    const [listen, target] = route.split('=');
    return startDelayRelay({ listen: parseEndpoint(listen ?? ''), target: parseEndpoint(target ?? ''), delayMs });
  }));
  const ports = relays.map((r) => r.port);
  const stop = () => { void Promise.all(relays.map((r) => r.close())).then(() => process.exit(0)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  if (!process.send) {
    process.stdout.write(`${JSON.stringify({ ports })}\n`);
    return;
  }
  process.on('message', (message: { id?: number; cmd?: string; stop?: true }) => {
    if (message.stop) stop();
    else if (message.cmd === 'stats') process.send!({ id: message.id, value: relays.map((r) => r.stats()) });
  });
  process.send({ port: ports[0], ports });
}

if (import.meta.main) await main();
