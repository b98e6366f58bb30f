// Garbage per call in each sidecar: the bytes V8 allocated (every collection's `allocated=` from
// --trace-gc-nvp, summed) over a fixed number of calls at a steady rate, divided by the calls. The
// same topology as the bench's sync scenario (app ← sidecar B ══ sidecar A ← generator), with the
// bench's app and 1 KiB POSTs, but the load comes from this process (undici) so a run takes seconds.
// Use it to compare two trees of the call path; the absolute figures move a little with Node.
//
//   node bench/garbage.ts [--calls N] [--rate PER_SECOND] [--runs N]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { SidecarProcess, waitForLinks } from '../sidecar/src/demo/sidecar-process.ts';
import { startListeningChild } from './children.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { calls: { type: 'string' }, rate: { type: 'string' }, runs: { type: 'string' } } });
const CALLS = Number(values.calls ?? 10_000);
const RATE = Number(values.rate ?? 1000);
const RUNS = Number(values.runs ?? 3);
const WARMUP_CALLS = 3000;

/** Bytes allocated so far by one process, as its collections report them. */
class AllocationCounter {
  bytes = 0;
  readonly onLine = (line: string): void => {
    const match = / allocated=(\d+)/.exec(line);
    if (match) this.bytes += Number(match[1]);
  };
}

async function load(pool: Pool, calls: number, rate: number): Promise<void> {
  const body = Buffer.alloc(1024, 'b');
  const intervalMs = 1000 / rate;
  const started = performance.now();
  const running = new Set<Promise<void>>();
  for (let i = 0; i < calls; i++) {
    const due = started + i * intervalMs;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const call = pool.request({ path: '/bench', method: 'POST', headers: { host: 'target' }, body })
      .then(async (res) => { await res.body.dump(); if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`); })
      .finally(() => running.delete(call));
    running.add(call);
  }
  await Promise.all(running);
}

const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-garbage-'));
const app = await startListeningChild(path.join(HERE, 'app.ts'), { BENCH_BODY_BYTES: '1024' }, 'bench app');
const a = new AllocationCounter();
const b = new AllocationCounter();
const nodeArgs = ['--trace-gc-nvp'];
const sidecarB = await SidecarProcess.start({ service: 'target', replica: 'sidecar-b', appPort: app.port, peers: {}, nodeArgs, onOtherLine: b.onLine }, dir);
const sidecarA = await SidecarProcess.start({ service: 'client', replica: 'sidecar-a', appPort: app.port, peers: { target: [`127.0.0.1:${sidecarB.ports!.inbound}`] }, nodeArgs, onOtherLine: a.onLine }, dir);
const pool = new Pool(`http://127.0.0.1:${sidecarA.ports!.outbound}`, { connections: 16 });
try {
  await waitForLinks([sidecarA], 10_000);
  await load(pool, WARMUP_CALLS, RATE);
  for (let run = 1; run <= RUNS; run++) {
    const before = { a: a.bytes, b: b.bytes };
    await load(pool, CALLS, RATE);
    await sleep(200); // the last collections' lines
    const kb = (bytes: number) => (bytes / CALLS / 1024).toFixed(1);
    console.log(`run ${run}: ${CALLS} calls at ${RATE}/s — sidecar A ${kb(a.bytes - before.a)} KB per call, sidecar B ${kb(b.bytes - before.b)} KB per call`);
  }
} finally {
  await pool.close();
  await sidecarA.stop();
  await sidecarB.stop();
  await app.stop();
  rmSync(dir, { recursive: true, force: true });
}
