// A userspace TCP relay that stands for a network link between two hosts: every chunk it reads is
// written on the other side a fixed one-way delay later (default 2.5 ms each way, 5 ms round trip),
// in order, with no bandwidth limit. The kernel here has no netem, so the seed scenario (seed.ts) puts
// one of these between "host 1" and "host 2": every byte between them crosses it.
//
//   client ──▶ relay (listen) ── delay ──▶ target        and back the same way, delayed as well
//
// Cheap in CPU: each direction of a connection keeps a FIFO of chunks with their due times and at
// most one timer; when it fires, every chunk then due goes out in one corked write (one writev).
// A chunk never leaves before its due time (the timer is re-armed if it fired early), so the delay is
// a lower bound; Node's timers tick in whole milliseconds, so chunks leave up to about 1 ms late
// (the relay measures how long it really held each chunk: stats()).
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
  /** Timer callbacks run (one flush can carry many chunks). */
  flushes: number;
}

export interface DelayRelay {
  readonly port: number;
  stats(): RelayStats;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

/** Refuses anything outside 127.0.0.0/8: the relay is for loopback scenarios only. */
export function assertLoopback(host: string): void {
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
  #timer: NodeJS.Timeout | undefined;
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
    this.#chunks.push(chunk);
    this.#due.push(performance.now() + this.#delayMs);
    if (!this.#timer) this.#arm();
  }

  #arm(): void {
    const wait = this.#due[this.#head]! - performance.now();
    // Whole milliseconds, rounded up: an early wake-up only costs a re-arm, a late one costs latency.
    this.#timer = setTimeout(() => this.#flush(), Math.max(1, Math.ceil(wait)));
  }

  #flush(): void {
    this.#timer = undefined;
    if (this.#to.destroyed) return;
    this.#counters.flushes++;
    const now = performance.now();
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
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#due = [];
      this.#head = 0;
    } else {
      this.#arm();
    }
    if (full && !this.#from.isPaused()) {
      this.#from.pause();
      this.#to.once('drain', () => this.#from.resume());
    }
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
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
      socket.on('close', (hadError) => {
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
export function parseEndpoint(text: string): Endpoint {
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
