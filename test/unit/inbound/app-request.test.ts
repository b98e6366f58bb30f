// The hand-off to the local app at its edges: a call whose method, path or headers HTTP cannot carry
// (from a peer's envelope) is refused with PROTOCOL_ERROR before the app sees anything, and later
// calls still go through; an answer head over MAX_APP_ANSWER_HEAD_BYTES is APP_RESET naming the limit.
// Each failure is logged by the request log at warn, with its code. Real app on 127.0.0.1 port 0.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { AppForwarder } from '../../../sidecar/src/inbound/app-forwarder.ts';
import { MAX_APP_ANSWER_HEAD_BYTES } from '../../../sidecar/src/inbound/app-request.ts';
import { MessageType, type Envelope, type Header } from '../../../sidecar/src/mcp/codec.ts';
import { newMessageId } from '../../../sidecar/src/mcp/ids.ts';
import { createRequestLog } from '../../../sidecar/src/telemetry/request-log.ts';
import { listen, type RunningServer } from '../../helpers/apps.ts';
import { memoryLogger } from '../../helpers/memory-logger.ts';
import { meshRejection, withTimeout } from '../mcp/fixtures.ts';

const CONNECTIONS = 2;

function call(path: string, headers: Header[] = [], method = 'GET'): Envelope {
  return { id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: 'orders.shop', headers, http: { method, path, authority: 'payments' } };
}

describe('the request to the app, at its edges', () => {
  let app: RunningServer;
  const seen: string[] = [];
  const { logger, lines } = memoryLogger('debug');
  let forwarder: AppForwarder;

  before(async () => {
    // /head/N answers with a header of N bytes; anything else with 200 "ok".
    app = await listen(createServer((req, res) => {
      seen.push(req.url!);
      const size = /^\/head\/(\d+)$/.exec(req.url!)?.[1];
      if (size) res.setHeader('x-big', 'a'.repeat(Number(size)));
      res.end('ok');
    }));
    forwarder = new AppForwarder({
      host: '127.0.0.1', port: app.port, connections: CONNECTIONS, inlineBodyBytes: 64 * 1024, connectTimeoutMs: 1000,
      parkTimeoutMs: 10_000, logger, service: 'payments.shop', observer: createRequestLog(logger),
    });
  });
  after(async () => {
    await forwarder.close();
    await app.close();
  });

  const unary = (request: Envelope) => forwarder.unary(request, new AbortController().signal);

  /** The request log's line for the call to `path`. */
  const logged = (path: string) => lines.filter((l) => l.direction === 'inbound' && l.path === path);

  const unsendable: [what: string, request: Envelope][] = [
    ['a CR LF in a header value', call('/crlf-value', [{ name: 'x-note', value: 'a\r\nx-injected: 1' }])],
    ['a CR LF in a header name', call('/crlf-name', [{ name: 'x-no\r\nte', value: 'a' }])],
    ['a NUL in a header value', call('/nul-value', [{ name: 'x-note', value: 'a\u0000b' }])],
    ['a space in a header name', call('/space-name', [{ name: 'x note', value: 'a' }])],
    ['a content-length that is not a number', call('/bad-length', [{ name: 'content-length', value: '12, 12' }])],
    ['a CR LF in the path', call('/crlf-path\r\nx-injected: 1')],
    ['a space in the path', call('/space path')],
    ['a method that is not a token', call('/bad-method', [], 'GET /x HTTP/1.1\r\n')],
  ];
  for (const [what, request] of unsendable) {
    it(`${what}: 502 PROTOCOL_ERROR, logged at warn, and the app never sees it`, async () => {
      const error = await meshRejection(unary(request));
      assert.equal(error.code, 'PROTOCOL_ERROR');
      assert.equal(error.status, 502);
      assert.match(error.message, /cannot be sent to the app/);
      const path = request.http!.path!;
      assert.deepEqual(logged(path).map((l) => [l.level, l.code, l.status]), [[40, 'PROTOCOL_ERROR', 502]]);
      assert.deepEqual(seen, [], 'the app got no request');
    });
  }

  it('after all of those (more than the pool has connections), calls still reach the app', async () => {
    assert.ok(unsendable.length > CONNECTIONS);
    const response = await withTimeout(unary(call('/after')), 'a valid call after the refused ones');
    assert.equal(response.http?.status, 200);
    assert.equal(Buffer.from(response.payload!).toString(), 'ok');
    assert.ok(seen.includes('/after'));
  });

  it(`an answer head over ${MAX_APP_ANSWER_HEAD_BYTES} bytes: 502 APP_RESET naming the limit, logged at warn`, async () => {
    const path = `/head/${MAX_APP_ANSWER_HEAD_BYTES + 1024}`;
    const error = await meshRejection(unary(call(path)));
    assert.equal(error.code, 'APP_RESET');
    assert.equal(error.status, 502);
    assert.match(error.message, new RegExp(`larger than ${MAX_APP_ANSWER_HEAD_BYTES} bytes`));
    assert.deepEqual(logged(path).map((l) => [l.level, l.code, l.status]), [[40, 'APP_RESET', 502]]);
  });

  it('an answer head just under the limit passes', async () => {
    const response = await unary(call(`/head/${MAX_APP_ANSWER_HEAD_BYTES - 1024}`));
    assert.equal(response.http?.status, 200);
    assert.equal(response.headers?.find((h) => h.name === 'x-big')?.value.length, MAX_APP_ANSWER_HEAD_BYTES - 1024);
  });
});
