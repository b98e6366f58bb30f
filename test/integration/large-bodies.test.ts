// 200 MiB each way through two sidecars, checked by sha256, streamed with bounded memory:
// - the bytes in flight (sent by one end, not yet received by the other) stay far below the body
//   size, which is only possible if every hop streams under flow control;
// - each sidecar's peak resident memory (VmHWM) grows by far less than the body during the transfer.
// The sidecars serve nothing else, so their memory is this test's. A sidecar's peak at start-up is
// ~125 MiB (the code of fastify, grpc-js, undici… and Node's type stripping), so growth over that
// is what is measured; it stays near 70 MiB whatever the body size (garbage awaiting collection).
import assert from 'node:assert/strict';
import { Transform } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { hashStream, MiB, patternSha256, patternStream } from '../helpers/data.ts';
import { startMesh, type Mesh } from '../helpers/mesh.ts';

const SIZE = 200 * MiB;
/** Bytes in flight across app → sidecar → sidecar → app (socket buffers, HTTP/2 windows, stream buffers). */
const IN_FLIGHT_LIMIT = 64 * MiB;
/** Peak memory growth of a sidecar during a transfer; holding the body whole would need more than SIZE. */
const PEAK_GROWTH_LIMIT = 100 * MiB;

describe('200 MiB bodies through two sidecars', { timeout: 120_000 }, () => {
  let mesh: Mesh;
  const startPeak = new Map<string, number>();

  before(async () => {
    mesh = await startMesh();
    for (const sidecar of [mesh.caller, mesh.callee]) startPeak.set(sidecar.name, sidecar.peakRssBytes());
  });
  after(async () => { await mesh?.close(); });

  function assertBoundedMemory(when: string): void {
    for (const sidecar of [mesh.caller, mesh.callee]) {
      const peak = sidecar.peakRssBytes();
      const growth = peak - startPeak.get(sidecar.name)!;
      assert.ok(growth < PEAK_GROWTH_LIMIT,
        `${sidecar.name} sidecar peak memory grew by ${(growth / MiB).toFixed(0)} MiB to ${(peak / MiB).toFixed(0)} MiB ${when} (limit: growth < ${PEAK_GROWTH_LIMIT / MiB} MiB)`);
    }
  }

  test('upload: the app receives every byte (sha256), streamed, sidecar memory bounded', async () => {
    const expected = patternSha256(SIZE, 7);
    let sent = 0;
    let maxInFlight = 0;
    const body = patternStream(SIZE, 7).pipe(new Transform({
      transform(chunk: Buffer, _encoding, done) {
        sent += chunk.byteLength;
        maxInFlight = Math.max(maxInFlight, sent - mesh.app.progress.uploaded);
        done(null, chunk);
      },
    }));
    const response = await request(`${mesh.caller.outboundUrl}/upload`, {
      method: 'POST',
      headers: { host: 'payments', 'content-type': 'application/octet-stream', 'content-length': String(SIZE) },
      body,
    });
    const text = await response.body.text();
    assert.equal(response.statusCode, 200, text);
    assert.deepEqual(JSON.parse(text), { sha256: expected, bytes: SIZE });
    assert.equal(sent, SIZE);
    assert.ok(maxInFlight < IN_FLIGHT_LIMIT, `at most ${(maxInFlight / MiB).toFixed(1)} MiB were in flight (limit ${IN_FLIGHT_LIMIT / MiB} MiB)`);
    assertBoundedMemory('after the upload');
  });

  test('download: the caller receives every byte (sha256), streamed, sidecar memory bounded', async () => {
    const expected = patternSha256(SIZE, 11);
    const response = await request(`${mesh.caller.outboundUrl}/download?bytes=${SIZE}&seed=11`, { headers: { host: 'payments' } });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-length'], String(SIZE), 'the app\'s content-length passes');
    let received = 0;
    let maxInFlight = 0;
    const result = await hashStream(response.body, (bytes) => {
      received += bytes;
      maxInFlight = Math.max(maxInFlight, mesh.app.progress.downloaded - received);
    });
    assert.deepEqual(result, { sha256: expected, bytes: SIZE });
    assert.ok(maxInFlight < IN_FLIGHT_LIMIT, `at most ${(maxInFlight / MiB).toFixed(1)} MiB were in flight (limit ${IN_FLIGHT_LIMIT / MiB} MiB)`);
    assertBoundedMemory('after the download');
  });
});
