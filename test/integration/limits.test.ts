// Limits on what the app may send to its sidecar's outbound listener: a request head too large, a
// head sent too slowly (slowloris), bytes that are not HTTP. Each gets a coded mesh error and its
// connection is closed; the sidecar goes on serving.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { metricsText } from '../helpers/async.ts';
import { assertStillServing, startMesh, type Mesh } from '../helpers/mesh.ts';
import { header, parseResponse, rawHttp } from '../helpers/raw-http.ts';
import { within } from '../helpers/wait.ts';

/** Send `text` on a fresh connection and read until the sidecar closes it. */
async function sendRaw(port: number, text: string): Promise<Buffer> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(text);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('limits on the outbound listener', { timeout: 60_000 }, () => {
  let mesh: Mesh;
  before(async () => {
    mesh = await startMesh({ callerExtra: { limits: { maxHeaderBytes: 8192, headerTimeout: '300ms' } } });
  });
  after(async () => { await mesh?.close(); });

  test('a request head over limits.maxHeaderBytes: 431 HEADERS_TOO_LARGE, connection closed', async () => {
    const response = await rawHttp(mesh.caller.ports.outbound, ['GET /big HTTP/1.1', 'Host: payments', `X-Big: ${'a'.repeat(12_000)}`, 'Connection: close']);
    assert.equal(response.status, 431);
    assert.deepEqual(header(response, 'mcp-mesh-error'), ['HEADERS_TOO_LARGE']);
    assert.equal(JSON.parse(response.body.toString()).error.code, 'HEADERS_TOO_LARGE');
    assert.equal(mesh.app.count('/big'), 0);
    await assertStillServing(mesh);
  });

  test('a head not finished within limits.headerTimeout: 408 REQUEST_TIMEOUT, connection closed', async () => {
    const started = performance.now();
    const bytes = await within(sendRaw(mesh.caller.ports.outbound, 'GET /slow HTTP/1.1\r\nHost: payments\r\nX-Partial: '), 10_000, 'the slow client was never cut');
    const response = parseResponse(bytes);
    assert.equal(response.status, 408);
    assert.deepEqual(header(response, 'mcp-mesh-error'), ['REQUEST_TIMEOUT']);
    // The limit that cut it is the configured one, named in the error.
    assert.match(JSON.parse(response.body.toString()).error.message, /within 300 ms \(limits\.headerTimeout\)/);
    // A timer never fires early, so this lower bound cannot flake (how late is not measured).
    assert.ok(performance.now() - started >= 250, 'not before the timeout');
    await assertStillServing(mesh);
  });

  test('bytes that are not HTTP: 400 BAD_REQUEST, connection closed', async () => {
    const response = parseResponse(await sendRaw(mesh.caller.ports.outbound, 'HELLO THERE\r\n\r\n'));
    assert.equal(response.status, 400);
    assert.deepEqual(header(response, 'mcp-mesh-error'), ['BAD_REQUEST']);
    await assertStillServing(mesh);
  });

  test('each refusal is counted by limit', async () => {
    const text = await metricsText(mesh.caller);
    for (const limit of ['header_size', 'header_timeout', 'malformed']) {
      assert.match(text, new RegExp(`^mcp_limit_rejections_total\\{limit="${limit}"\\} [1-9]`, 'm'), limit);
    }
  });

  test('a long call is not cut by the header timeout once its head has arrived', async () => {
    const held = mesh.app.nextHeld();
    const call = request(`${mesh.caller.outboundUrl}/hold/long`, { headers: { host: 'payments' } });
    const holding = await within(held, 5000, 'the app never got the call');
    // Hold it past the 300 ms head timeout, with the order of events as the clock: a slow client that
    // connected after the long call had begun is cut for its head meanwhile, so the long call's
    // connection has been open longer than headerTimeout when it is answered.
    const cut = parseResponse(await sendRaw(mesh.caller.ports.outbound, 'GET /slow2 HTTP/1.1\r\nHost: payments\r\n'));
    assert.equal(cut.status, 408);
    assert.deepEqual(header(cut, 'mcp-mesh-error'), ['REQUEST_TIMEOUT']);
    holding.release('long answer');
    const response = await call;
    assert.equal(response.statusCode, 200);
    assert.equal(await response.body.text(), 'long answer');
  });
});

describe('limits on the inbound listener', { timeout: 60_000 }, () => {
  let mesh: Mesh;
  before(async () => {
    mesh = await startMesh({ calleeExtra: { limits: { maxStreamsPerPeer: 2 } } });
  });
  after(async () => { await mesh?.close(); });

  test('a peer over limits.maxStreamsPerPeer: the extra stream is refused with OVERLOADED and counted; the others go on', async () => {
    const sse = () => request(`${mesh.caller.outboundUrl}/sse`, { headers: { host: 'payments', accept: 'text/event-stream' } });
    const first = await sse();
    const second = await sse();
    const releases = [await mesh.app.nextSse(), await mesh.app.nextSse()];
    const third = await sse();
    assert.equal(third.statusCode, 503);
    assert.equal(third.headers['mcp-mesh-error'], 'OVERLOADED');
    assert.match(await third.body.text(), /limits\.maxStreamsPerPeer/);
    for (const release of releases) release();
    assert.match(await first.body.text(), /data: two/);
    assert.match(await second.body.text(), /data: two/);
    const text = await metricsText(mesh.callee);
    assert.match(text, /^mcp_limit_rejections_total\{limit="streams_per_peer"\} [1-9]/m);
    // With the two closed, a new stream is taken again.
    const fourth = await sse();
    assert.equal(fourth.statusCode, 200);
    (await mesh.app.nextSse())();
    await fourth.body.text();
  });
});
