// Request bodies the outbound listener does not take to their end: one refused by its Content-Length
// (413, then the connection is closed instead of the body being read and dropped), and uploads the
// app breaks off (the caller went away: CLIENT_CLOSED at info, not a malformed request, not INTERNAL).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { metricsText } from '../helpers/async.ts';
import { metricSum } from '../helpers/prometheus.ts';
import { assertStillServing, startMesh, type Mesh } from '../helpers/mesh.ts';
import { header, parseResponse } from '../helpers/raw-http.ts';
import { within } from '../helpers/wait.ts';

const MAX_BODY = 1024 * 1024;
/** Written after the head of a refused request before the test gives up: far more than socket buffers hold. */
const WRITE_CAP = 256 * 1024 * 1024;

/** What the server did with a connection the test keeps writing to: its answer, and how the writing ended. */
interface Outcome { received: Buffer; written: number; closedByServer: boolean }

/**
 * Send `head`, then write body bytes as fast as the socket takes them until the server closes the
 * connection or WRITE_CAP bytes are written; collect what the server sends meanwhile.
 */
async function writeUntilClosed(port: number, head: string): Promise<Outcome> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {}); // EPIPE / ECONNRESET once the server has closed: what the test waits for
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  let serverClosed = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => { serverClosed = true; resolve(); }));
  socket.write(head);
  const block = Buffer.alloc(64 * 1024, 0x61);
  let written = 0;
  while (!serverClosed && written < WRITE_CAP) {
    written += block.length;
    if (!socket.write(block)) await Promise.race([once(socket, 'drain').catch(() => {}), closed]);
  }
  const closedByServer = serverClosed;
  socket.destroy();
  await closed;
  return { received: Buffer.concat(chunks), written, closedByServer };
}

/** Send `head` and `partial` body bytes, then end the connection (FIN: the bytes arrive first). */
async function breakOffUpload(port: number, head: string, partial: Buffer): Promise<void> {
  const socket: Socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.resume();
  await once(socket, 'connect');
  socket.end(Buffer.concat([Buffer.from(head), partial]));
  await once(socket, 'close');
}

describe('request bodies the outbound listener does not read to the end', { timeout: 60_000 }, () => {
  let mesh: Mesh;
  before(async () => {
    mesh = await startMesh({ callerExtra: { limits: { maxBodyBytes: MAX_BODY } } });
  });
  after(async () => { await mesh?.close(); });

  test('Content-Length over limits.maxBodyBytes: 413 BODY_TOO_LARGE with Connection: close, then the connection is closed without reading the body', async () => {
    const head = 'POST /huge HTTP/1.1\r\nHost: payments\r\nContent-Length: 9007199254740991\r\n\r\n';
    const outcome = await within(writeUntilClosed(mesh.caller.ports.outbound, head), 20_000, 'the write loop never ended');
    assert.ok(outcome.closedByServer, `the sidecar closed the connection (it read ${outcome.written} bytes of the body and went on)`);
    assert.ok(outcome.written < WRITE_CAP, `closed before ${WRITE_CAP} bytes were written (${outcome.written})`);
    const response = parseResponse(outcome.received);
    assert.equal(response.status, 413);
    assert.deepEqual(header(response, 'mcp-mesh-error'), ['BODY_TOO_LARGE']);
    assert.deepEqual(header(response, 'connection'), ['close']);
    assert.equal(mesh.app.count('/huge'), 0, 'the app never saw it');
    await assertStillServing(mesh);
  });

  for (const [kind, length, sent] of [['read whole', 1000, 10], ['streamed', 4 * 65536, 100_000]] as const) {
    test(`an upload (${kind}) the app breaks off: CLIENT_CLOSED at info, not INTERNAL, not counted as malformed`, async () => {
      const malformedBefore = metricSum(await metricsText(mesh.caller), 'mcp_limit_rejections_total', { limit: 'malformed' });
      const since = mesh.caller.mark();
      const path = `/broken-off-${length}`;
      await breakOffUpload(mesh.caller.ports.outbound, `POST ${path} HTTP/1.1\r\nHost: payments\r\nContent-Length: ${length}\r\n\r\n`, Buffer.alloc(sent, 0x62));
      const line = await mesh.caller.waitForLog((l) => l.code === 'CLIENT_CLOSED' && l.msg === 'the calling app broke off its upload', { since });
      assert.equal(line.level, 30, 'info');
      assert.equal(line.status, 499);
      assert.equal(line.method, 'POST');
      const faults = mesh.caller.logs.slice(since).filter((l) => l.level >= 50 || l.code === 'INTERNAL');
      assert.deepEqual(faults, [], 'no error line, no INTERNAL');
      const malformedAfter = metricSum(await metricsText(mesh.caller), 'mcp_limit_rejections_total', { limit: 'malformed' });
      assert.equal(malformedAfter, malformedBefore, 'not counted as a malformed request');
      await assertStillServing(mesh);
    });
  }
});
