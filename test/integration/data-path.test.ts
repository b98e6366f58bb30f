// The data path end to end with real processes: the test plays app "orders" and calls service
// "payments" through two sidecars (orders' outbound → MCP over gRPC → payments' inbound → test app).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Agent, getGlobalDispatcher, ProxyAgent, request, type Dispatcher } from 'undici';
import { rawValues, type Echo } from '../helpers/apps.ts';
import { assertMeshError, startMesh, type Mesh } from '../helpers/mesh.ts';
import { header, rawHttp } from '../helpers/raw-http.ts';
import { cleanEnv, NODE } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

const METHODS_WITH_BODY = ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'GET', 'PURGE'];
const METHODS_WITHOUT_BODY = ['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'PURGE'];

describe('data path through two sidecars', { timeout: 120_000 }, () => {
  let mesh: Mesh;
  let base: string;

  before(async () => {
    mesh = await startMesh({ aliases: ['ledger.shop'] });
    base = mesh.caller.outboundUrl;
  });
  after(async () => { await mesh?.close(); });

  /** A call from the test (as app "orders") to its sidecar, by Host. */
  function call(path: string, options: { host?: string; method?: string; headers?: Record<string, string | string[]> | string[]; body?: Dispatcher.DispatchOptions['body']; dispatcher?: Dispatcher } = {}) {
    const headers = Array.isArray(options.headers)
      ? ['host', options.host ?? 'payments', ...options.headers]
      : { host: options.host ?? 'payments', ...options.headers };
    // Dispatcher.request takes the path as it is (a URL would normalise "/%2e%2e/" and the like).
    return (options.dispatcher ?? getGlobalDispatcher()).request({ origin: base, path, method: (options.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: options.body });
  }

  async function echoOf(response: Dispatcher.ResponseData): Promise<Echo> {
    const text = await response.body.text();
    assert.equal(response.statusCode, 200, text);
    assert.equal(response.headers['mcp-mesh-error'], undefined);
    return JSON.parse(text) as Echo;
  }

  describe('methods and bodies', () => {
    for (const method of METHODS_WITHOUT_BODY) {
      test(`${method} without a body`, async () => {
        const response = await call('/no-body', { method });
        assert.equal(response.headers['x-echo-method'], method, 'the app saw the method');
        if (method === 'HEAD') {
          assert.equal(response.statusCode, 200);
          assert.equal(await response.body.text(), '', 'HEAD has no body');
          assert.ok(Number(response.headers['content-length']) > 0, 'the app\'s content-length comes back on HEAD');
          return;
        }
        const echo = await echoOf(response);
        assert.equal(echo.method, method);
        assert.equal(echo.url, '/no-body');
        assert.equal(echo.bodyBytes, 0);
        assert.deepEqual(rawValues(echo.rawHeaders, 'transfer-encoding'), [], 'no body framing invented');
      });
    }

    // Small (rides the shared link inline), above limits.inlineBodyBytes (own Stream call), and
    // chunked with no length (streams); binary-safe.
    const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const bodies: { name: string; make: () => { body: Dispatcher.DispatchOptions['body']; expected: Buffer } }[] = [
      { name: 'small binary body', make: () => ({ body: binary, expected: binary }) },
      {
        name: '100 KiB body', make: () => {
          const big = Buffer.alloc(100 * 1024);
          for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
          return { body: big, expected: big };
        },
      },
      {
        name: 'chunked body', make: () => {
          const parts = [Buffer.from('first part|'), binary, Buffer.alloc(70 * 1024, 'x'), Buffer.from('|last')];
          return { body: Readable.from(parts), expected: Buffer.concat(parts) };
        },
      },
    ];
    for (const method of METHODS_WITH_BODY) {
      for (const { name, make } of bodies) {
        test(`${method} with a ${name}`, async () => {
          const { body, expected } = make();
          const echo = await echoOf(await call('/with-body?m=1', { method, body }));
          assert.equal(echo.method, method);
          assert.equal(echo.url, '/with-body?m=1');
          assert.equal(echo.bodyBytes, expected.byteLength);
          assert.ok(Buffer.from(echo.body, 'latin1').equals(expected), 'the app received the body byte for byte');
        });
      }
    }

    test('an app response without content-length (chunked) comes back whole', async () => {
      const response = await call('/chunked');
      assert.equal(response.statusCode, 200);
      assert.equal(await response.body.text(), 'part one, part two, part three');
    });

    test('statuses from the app pass unchanged and are not mesh errors', async () => {
      for (const status of [201, 204, 302, 400, 404, 418, 500, 502, 503]) {
        const response = await call(`/status/${status}`);
        const text = await response.body.text();
        assert.equal(response.statusCode, status);
        assert.equal(response.headers['x-status'], String(status));
        assert.equal(response.headers['mcp-mesh-error'], undefined, `the app's ${status} is not marked as a mesh error`);
        assert.equal(text, status === 204 ? '' : `status ${status}`);
      }
    });
  });

  describe('headers and query strings', () => {
    test('request headers (repeated ones too) and the query string reach the app exactly', async () => {
      const path = '/q/a%20b//c/%2e%2e/d?x=1&x=2&slash=%2F%3F&empty=&flag&plus=a+b&utf=%E2%9C%93&ord=z&ord=a';
      const sent = [
        'x-rep', 'first', 'x-rep', 'second', 'x-rep', 'third',
        'cookie', 'a=1; b=2',
        'authorization', 'Bearer abc.def',
        'x-spaces', 'a  b\tc',
        'accept', 'application/json',
        'x-empty', '',
        'user-agent', 'mesh-test/1.0',
      ];
      const echo = await echoOf(await call(path, { headers: sent }));
      assert.equal(echo.url, path, 'path and query string unchanged');
      for (let i = 0; i < sent.length; i += 2) {
        const name = sent[i]!;
        const expected = [];
        for (let j = 0; j < sent.length; j += 2) if (sent[j] === name) expected.push(sent[j + 1]);
        assert.deepEqual(rawValues(echo.rawHeaders, name), expected, `header ${name}`);
      }
      // Order of the repeated header is kept (it matters for e.g. cookies and list headers).
      const names = echo.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      const order = names.filter((n) => sent.includes(n));
      assert.deepEqual(order.filter((n, i) => order.indexOf(n) === i), sent.filter((_, i) => i % 2 === 0).filter((n, i, all) => all.indexOf(n) === i));
    });

    test('response status, headers (repeated set-cookie) and body come back exactly; hop-by-hop ones do not', async () => {
      const response = await call('/response-headers');
      assert.equal(response.statusCode, 200);
      assert.equal(await response.body.text(), 'ok');
      assert.deepEqual(response.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly']);
      assert.deepEqual(response.headers['x-multi'], ['one', 'two']);
      assert.equal(response.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(response.headers['x-hop-res'], undefined, 'a header listed in Connection is dropped');
      assert.equal(response.headers['proxy-authenticate'], undefined);
      assert.notEqual(response.headers['keep-alive'], 'timeout=7', 'the app\'s Keep-Alive is not forwarded');
      assert.ok(!String(response.headers.connection ?? '').includes('x-hop-res'));
    });

    test('hop-by-hop request headers are dropped, end-to-end ones kept', async () => {
      // Written by hand: clients refuse to send several of these.
      const response = await rawHttp(mesh.caller.ports.outbound, [
        'POST /hop HTTP/1.1',
        'Host: payments',
        'Connection: close, x-hop-req, X-Other-Hop',
        'Keep-Alive: timeout=5',
        'TE: trailers',
        'Upgrade: h2c',
        'Proxy-Authorization: Basic c2VjcmV0',
        'Proxy-Connection: keep-alive',
        'X-Hop-Req: drop me',
        'X-Other-Hop: drop me too',
        'Trailer: x-checksum',
        'X-End-To-End: keep me',
        'Content-Length: 4',
      ], 'body');
      assert.equal(response.status, 200, response.body.toString());
      const echo = JSON.parse(response.body.toString()) as Echo;
      for (const name of ['keep-alive', 'te', 'upgrade', 'proxy-authorization', 'proxy-connection', 'x-hop-req', 'x-other-hop', 'trailer']) {
        assert.deepEqual(rawValues(echo.rawHeaders, name), [], `${name} must not reach the app`);
      }
      for (const value of rawValues(echo.rawHeaders, 'connection')) assert.doesNotMatch(value, /hop|close/i, 'Connection is the sidecar\'s own');
      assert.deepEqual(rawValues(echo.rawHeaders, 'x-end-to-end'), ['keep me']);
      assert.equal(echo.body, 'body');
    });

    test('forwarded and x-forwarded-for are added', async () => {
      const echo = await echoOf(await call('/fwd'));
      assert.deepEqual(rawValues(echo.rawHeaders, 'forwarded'), ['for=127.0.0.1;host="payments";proto=http']);
      assert.deepEqual(rawValues(echo.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
    });

    test('forwarded and x-forwarded-for extend what the app already sent', async () => {
      const echo = await echoOf(await call('/fwd', { headers: { forwarded: 'for=203.0.113.7', 'x-forwarded-for': '203.0.113.7' } }));
      assert.equal(rawValues(echo.rawHeaders, 'forwarded').join(', '), 'for=203.0.113.7, for=127.0.0.1;host="payments";proto=http');
      assert.equal(rawValues(echo.rawHeaders, 'x-forwarded-for').join(', '), '203.0.113.7, 127.0.0.1', 'each hop appears once');
    });

    test('the callee app sees mcp-mesh-source: <caller service>, and a spoofed one is replaced', async () => {
      const plain = await echoOf(await call('/src'));
      assert.deepEqual(rawValues(plain.rawHeaders, 'mcp-mesh-source'), ['orders']);
      const spoofed = await echoOf(await call('/src', { headers: { 'mcp-mesh-source': 'admin-service', 'mcp-mesh-timeout': '5s' } }));
      assert.deepEqual(rawValues(spoofed.rawHeaders, 'mcp-mesh-source'), ['orders']);
      assert.deepEqual(rawValues(spoofed.rawHeaders, 'mcp-mesh-timeout'), [], 'mesh control headers are not forwarded');
    });
  });

  describe('addressing', () => {
    for (const host of ['payments', 'payments.default', 'payments.default.svc', 'payments.default.svc.cluster.local',
      'payments.default.svc.cluster.local:8080', 'payments:8080', 'Payments.Default.SVC.cluster.local', 'ledger.shop', 'ledger.shop.svc.cluster.local:9090']) {
      test(`Host "${host}" names a mesh service`, async () => {
        const echo = await echoOf(await call('/name', { host }));
        assert.equal(echo.url, '/name');
        assert.deepEqual(rawValues(echo.rawHeaders, 'host'), [host], 'the app sees the Host the caller used');
      });
    }

    const unknown = { ledger: 'ledger.default', 'payments.shop': 'payments.shop', nope: 'nope.default', 'nope.default.svc.cluster.local:80': 'nope.default' };
    for (const [host, service] of Object.entries(unknown)) {
      test(`Host "${host}" is an unknown service: 404 UNKNOWN_SERVICE naming ${service}`, async () => {
        const error = await assertMeshError(await call('/name', { host }), 404, 'UNKNOWN_SERVICE');
        assert.equal(error.service, service);
      });
    }

    test('absolute-form request line (HTTP_PROXY style)', async () => {
      // The target names the service; the (different) Host header must be ignored (RFC 9112 §3.2.2).
      const response = await rawHttp(mesh.caller.ports.outbound, [
        'POST http://payments.default.svc.cluster.local:8080/abs/path?q=1&q=2 HTTP/1.1',
        'Host: ledger.shop',
        'Connection: close',
        'Content-Length: 8',
      ], 'absolute');
      assert.equal(response.status, 200, response.body.toString());
      const echo = JSON.parse(response.body.toString()) as Echo;
      assert.equal(echo.url, '/abs/path?q=1&q=2', 'the app gets origin-form');
      assert.equal(echo.body, 'absolute');
      assert.deepEqual(rawValues(echo.rawHeaders, 'host'), ['payments.default.svc.cluster.local:8080']);
    });

    test('absolute-form request line for an unknown service: 404 UNKNOWN_SERVICE', async () => {
      const response = await rawHttp(mesh.caller.ports.outbound, ['GET http://nope/x HTTP/1.1', 'Host: payments', 'Connection: close']);
      assert.equal(response.status, 404);
      assert.deepEqual(header(response, 'mcp-mesh-error'), ['UNKNOWN_SERVICE']);
      assert.equal(mesh.app.count('/x'), 0, 'the Host header did not route it to payments');
    });

    test('absolute-form request line through undici ProxyAgent (no tunnel)', async () => {
      const proxy = new ProxyAgent({ uri: base, proxyTunnel: false });
      try {
        const response = await request('http://payments/via-proxy?p=1', { method: 'PUT', body: 'proxied', dispatcher: proxy });
        const echo = await echoOf(response);
        assert.equal(echo.method, 'PUT');
        assert.equal(echo.url, '/via-proxy?p=1');
        assert.equal(echo.body, 'proxied');
        assert.deepEqual(rawValues(echo.rawHeaders, 'mcp-mesh-source'), ['orders']);
      } finally {
        await proxy.close();
      }
    });

    test('Node 24 fetch with NODE_USE_ENV_PROXY=1 and HTTP_PROXY reaches http://payments/ (CONNECT tunnel)', async () => {
      const script = `
        const response = await fetch('http://payments/fetched/path?z=9', { method: 'POST', body: 'from fetch', headers: { 'x-from': 'fetch' } });
        const text = await response.text();
        process.stdout.write(JSON.stringify({ status: response.status, error: response.headers.get('mcp-mesh-error'), text }));
      `;
      const child = spawn(NODE, ['--input-type=module', '-e', script], {
        env: cleanEnv({ NODE_USE_ENV_PROXY: '1', HTTP_PROXY: base, http_proxy: base }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
      child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
      const [code] = await once(child, 'close');
      assert.equal(code, 0, stderr);
      const result = JSON.parse(stdout) as { status: number; error: string | null; text: string };
      assert.equal(result.status, 200, result.text);
      assert.equal(result.error, null);
      const echo = JSON.parse(result.text) as Echo;
      assert.equal(echo.method, 'POST');
      assert.equal(echo.url, '/fetched/path?z=9');
      assert.equal(echo.body, 'from fetch');
      assert.deepEqual(rawValues(echo.rawHeaders, 'x-from'), ['fetch']);
      assert.deepEqual(rawValues(echo.rawHeaders, 'mcp-mesh-source'), ['orders']);
    });

    for (const authority of ['nope:80', 'example.com:443', '127.0.0.1:22']) {
      test(`CONNECT to ${authority} (not a known mesh service) is refused`, async () => {
        const { res, socket } = await new Promise<{ res: IncomingMessage; socket: Socket }>((resolve, reject) => {
          const req = httpRequest({ host: '127.0.0.1', port: mesh.caller.ports.outbound, method: 'CONNECT', path: authority, agent: false });
          req.on('connect', (res: IncomingMessage, socket: Socket) => resolve({ res, socket }));
          req.on('response', (res: IncomingMessage) => resolve({ res, socket: res.socket as Socket }));
          req.on('error', reject);
          req.end();
        });
        socket.destroy();
        assert.equal(res.statusCode, 404);
        assert.equal(res.headers['mcp-mesh-error'], 'UNKNOWN_SERVICE');
      });
    }
  });

  describe('load', () => {
    test('1,000 concurrent calls are all answered, each with its own body', async () => {
      const calls = 1000;
      const agent = new Agent({ connections: calls, pipelining: 1 });
      const before = await linkStats();
      try {
        const ids = Array.from({ length: calls }, (_, i) => `call-${i}-${randomUUID()}`);
        const results = await Promise.all(ids.map(async (id, i) => {
          const response = await call(`/load/${i}`, { method: 'POST', headers: { 'x-call-id': id }, body: id, dispatcher: agent });
          const echo = await echoOf(response);
          return { id, i, echo };
        }));
        for (const { id, i, echo } of results) {
          assert.equal(echo.body, id);
          assert.equal(echo.url, `/load/${i}`);
          assert.deepEqual(rawValues(echo.rawHeaders, 'x-call-id'), [id]);
        }
      } finally {
        await agent.close();
      }
      // The burst rode the shared link in batches, not one gRPC message per call.
      const afterStats = await linkStats();
      const envelopes = afterStats.envelopes - before.envelopes;
      const batches = afterStats.batches - before.batches;
      assert.ok(envelopes >= calls, `all ${calls} calls went over the link (${envelopes})`);
      assert.ok(batches < envelopes, `calls were coalesced into batches (${envelopes} envelopes in ${batches} batches)`);
    });

    async function linkStats(): Promise<{ batches: number; envelopes: number }> {
      const response = await request(`http://127.0.0.1:${mesh.caller.ports.admin}/endpoints`);
      const { links } = await response.body.json() as { links: { address: string; batches: number; envelopes: number }[] };
      const link = links.find((e) => e.address === mesh.callee.inboundAddress);
      assert.ok(link, 'the caller has a link to the callee');
      return link;
    }
  });

  describe('streaming', () => {
    for (const accept of ['text/event-stream', undefined]) {
      test(`SSE events arrive as the app sends them (Accept: ${accept ?? 'none'})`, async () => {
        const opened = mesh.app.nextSse();
        const response = await call('/sse', { headers: accept ? { accept } : {} });
        assert.equal(response.statusCode, 200);
        assert.equal(response.headers['content-type'], 'text/event-stream');
        const reader = response.body[Symbol.asyncIterator]();
        // The app holds the stream open after the first event until we release it, so receiving
        // it now proves it was not buffered until the end of the stream.
        let received = '';
        while (!received.includes('\n\n')) {
          const next = await within(reader.next(), 10_000, 'the first SSE event did not arrive while the stream was open');
          assert.ok(!next.done, 'stream ended early');
          received += Buffer.from(next.value as Uint8Array).toString();
        }
        assert.equal(received, 'data: one\n\n');
        const release = await within(opened, 10_000, 'the app did not open the SSE stream');
        release();
        for (let next = await reader.next(); !next.done; next = await reader.next()) received += Buffer.from(next.value as Uint8Array).toString();
        assert.equal(received, 'data: one\n\ndata: two\n\n');
      });
    }
  });
});
