// The load generator, in its own process (forked by run.ts, commands over IPC), so its CPU is not
// mixed with the orchestrator's. Two modes:
//   open   — constant rate, evenly paced: request i is due at start + i/rate. Its latency is measured
//            from that intended send time, not from when it actually left, so a stalled target (or a
//            stalled generator) shows up as latency instead of silently lowering the rate: no
//            coordinated omission. Sends are spread one per due time; a late timer sends what is due.
//   closed — N connections, each sending its next request as soon as the previous answer is in:
//            the maximum throughput the target sustains.
// Latencies go into an HDR histogram (microseconds, 3 significant digits), sent back compressed.
import * as hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import { PoolCache, serveSpecs } from './child-ipc.ts';

export interface RunSpec {
  id: number;
  /** http://127.0.0.1:PORT */
  origin: string;
  /** Host header: the service name when going through a sidecar. */
  host: string;
  mode: 'open' | 'closed';
  /** open: requests per second */
  rate: number;
  durationMs: number;
  /** Connection pool size: the most requests in flight (open), the number of loops (closed). */
  connections: number;
  bodyBytes: number;
}

export interface RunResult {
  mode: 'open' | 'closed';
  sent: number;
  ok: number;
  errors: number;
  /** "200": n, "502 PEER_UNAVAILABLE": n, "error ECONNRESET": n … */
  outcomes: Record<string, number>;
  elapsedMs: number;
  /** Latency histogram, µs, compressed base64 (hdr-histogram-js encodeIntoCompressedBase64). */
  histogram: string;
  /** Latency from the moment the request actually left (service time, ignores generator lag), µs. */
  service: string;
  /** open: how late the generator actually sent each request after its due time, µs. */
  sendLag: string;
}

const newHistogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
const pools = new PoolCache();
const poolFor = (spec: RunSpec): Pool => pools.get(spec.origin, spec.connections);

async function run(spec: RunSpec): Promise<RunResult> {
  const pool = poolFor(spec);
  const body = Buffer.alloc(spec.bodyBytes, 'b');
  const headers = { host: spec.host, 'content-type': 'application/octet-stream' };
  const latency = newHistogram();
  const service = newHistogram();
  const lag = newHistogram();
  const outcomes: Record<string, number> = {};
  let ok = 0;
  let errors = 0;
  let sent = 0;

  /** `due`: when the request should have left (open loop), or when it did (closed loop). */
  const one = async (due: number): Promise<void> => {
    sent++;
    const leftAt = performance.now();
    let outcome: string;
    try {
      const res = await pool.request({ path: '/bench', method: 'POST', headers, body });
      await res.body.dump();
      const code = res.headers['mcp-mesh-error'];
      outcome = code ? `${res.statusCode} ${String(code)}` : String(res.statusCode);
      if (res.statusCode === 200) ok++; else errors++;
    } catch (err) {
      outcome = `error ${(err as { code?: string }).code ?? (err as Error).message}`;
      errors++;
    }
    const done = performance.now();
    latency.recordValue(Math.max(1, Math.round((done - due) * 1000)));
    service.recordValue(Math.max(1, Math.round((done - leftAt) * 1000)));
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  };

  const started = performance.now();
  if (spec.mode === 'open') {
    const interval = 1000 / spec.rate;
    const total = Math.round((spec.rate * spec.durationMs) / 1000);
    const inFlight: Promise<void>[] = [];
    const t0 = performance.now() + 1;
    let i = 0;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        for (; i < total && t0 + i * interval <= now; i++) {
          const due = t0 + i * interval;
          lag.recordValue(Math.max(1, Math.round((now - due) * 1000)));
          inFlight.push(one(due));
        }
        if (i >= total) { resolve(); return; }
        setTimeout(tick, Math.max(0, t0 + i * interval - performance.now()));
      };
      setTimeout(tick, 1);
    });
    await Promise.all(inFlight);
  } else {
    const end = started + spec.durationMs;
    await Promise.all(Array.from({ length: spec.connections }, async () => {
      while (performance.now() < end) await one(performance.now());
    }));
  }
  const elapsedMs = performance.now() - started;
  const result: RunResult = {
    mode: spec.mode, sent, ok, errors, outcomes, elapsedMs,
    histogram: hdr.encodeIntoCompressedBase64(latency),
    service: hdr.encodeIntoCompressedBase64(service),
    sendLag: hdr.encodeIntoCompressedBase64(lag),
  };
  latency.destroy();
  service.destroy();
  lag.destroy();
  return result;
}

serveSpecs(run, () => pools.closeAll());
