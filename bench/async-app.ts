// The target app of the async scenario (bench/async.ts): a plain node:http server on 127.0.0.1:0 that
// notes when each message arrives and answers 200 with an empty body at once. Forked by async.ts and
// driven over IPC; prints nothing, sends {port} once listening.
//
// Each message's body starts with "<run>:<seq>\n" (written by the async generator). The arrival time is
// taken when the request's headers are in (the 'request' event), on the same clock as the generator's
// send times: process.hrtime(), i.e. CLOCK_MONOTONIC, which every process on the machine shares
// (nanosecond resolution, kept in microseconds). Copies are counted per sequence number and per
// `mcp-mesh-message-id`, so a message that arrives twice is seen either way.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type AppCommand =
  | { id: number; cmd: 'count'; run: string }
  | { id: number; cmd: 'report'; run: string }
  | { id: number; stop: true };

export interface AppCount {
  /** Requests of this run that reached the app, copies included. */
  received: number;
  /** Distinct sequence numbers among them. */
  unique: number;
}

export interface AppReport extends AppCount {
  /** Arrival time (µs, CLOCK_MONOTONIC) of the first copy of each sequence number; -1 where none arrived. */
  arrivals: number[];
  /** Sequence numbers that arrived more than once (with how many copies). */
  duplicateSeqs: [seq: number, copies: number][];
  /** Message ids seen more than once. */
  duplicateIds: number;
  /** Requests of this run that came without `mcp-mesh-message-id`. */
  withoutId: number;
  /** Requests whose body did not start with "<run>:<seq>\n" (any run). */
  unreadable: number;
}

/** Microseconds on CLOCK_MONOTONIC (shared by all processes on the machine). */
export function nowUs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e6 + ns / 1e3;
}

interface Run {
  received: number;
  arrivals: number[];
  copies: number[];
  ids: Map<string, number>;
  withoutId: number;
}

if (import.meta.main) {
  const runs = new Map<string, Run>();
  let unreadable = 0;
  const runOf = (name: string) => {
    let run = runs.get(name);
    if (!run) { run = { received: 0, arrivals: [], copies: [], ids: new Map(), withoutId: 0 }; runs.set(name, run); }
    return run;
  };
  const headers = { 'content-length': '0' };

  const server = http.createServer((req, res) => {
    const at = nowUs();
    const id = req.headers['mcp-mesh-message-id'];
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => { chunks.push(chunk); });
    req.on('end', () => {
      res.writeHead(200, headers);
      res.end();
      const head = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).subarray(0, 64).toString('latin1');
      const match = /^([^:\n]+):(\d+)\n/.exec(head);
      if (!match) { unreadable++; return; }
      const run = runOf(match[1]!);
      const seq = Number(match[2]);
      run.received++;
      const copies = run.copies[seq] ?? 0;
      run.copies[seq] = copies + 1;
      if (copies === 0) run.arrivals[seq] = at;
      if (typeof id === 'string') run.ids.set(id, (run.ids.get(id) ?? 0) + 1);
      else run.withoutId++;
    });
  });
  server.keepAliveTimeout = 60_000;

  const stop = () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.on('message', (command: AppCommand) => {
    if ('stop' in command) { stop(); return; }
    const run = runOf(command.run);
    let unique = 0;
    for (const c of run.copies) if (c) unique++;
    if (command.cmd === 'count') {
      process.send!({ id: command.id, value: { received: run.received, unique } satisfies AppCount });
      return;
    }
    const arrivals: number[] = [];
    const duplicateSeqs: [number, number][] = [];
    for (let seq = 0; seq < run.copies.length; seq++) {
      const c = run.copies[seq] ?? 0;
      arrivals.push(c ? run.arrivals[seq]! : -1);
      if (c > 1) duplicateSeqs.push([seq, c]);
    }
    let duplicateIds = 0;
    for (const n of run.ids.values()) if (n > 1) duplicateIds++;
    const report: AppReport = { received: run.received, unique, arrivals, duplicateSeqs, duplicateIds, withoutId: run.withoutId, unreadable };
    process.send!({ id: command.id, value: report });
  });
  process.once('SIGTERM', stop);
  server.listen(0, '127.0.0.1', () => {
    process.send!({ port: (server.address() as AddressInfo).port });
  });
}
