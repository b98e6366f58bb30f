// Malformed HTTP from the app to the outbound listener of a real sidecar process, over raw TCP: each
// case gets a 4xx (or a clean close where HTTP leaves nothing to answer), and the sidecar keeps serving
// (a normal call works after every case) and exits cleanly at the end.
//
//   raw TCP ─▶ sidecar orders ═▶ sidecar payments ─▶ test app
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startTestApp, type TestApp } from '../helpers/apps.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

/** How long a case may take to be answered or closed; a case that takes longer has hung the connection. */
const CASE_MS = 5000;

interface Exchange {
  /** Statuses of the responses on the connection, in order. */
  statuses: number[];
  /** The `mcp-mesh-error` codes among them. */
  codes: string[];
  closed: boolean;
  text: string;
}

/**
 * Write `bytes` on a fresh connection and read until the sidecar closes it. The connection stays open
 * unless `halfClose` (a client FIN makes Node abort the requests in flight on it: no answer then).
 */
function exchange(port: number, bytes: Buffer | string, options: { halfClose?: boolean } = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({
        statuses: [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1])),
        codes: [...text.matchAll(/^mcp-mesh-error: *(\S+)/gim)].map((m) => m[1]!),
        closed,
        text,
      });
    };
    const timer = setTimeout(() => { socket.destroy(); finish(); }, CASE_MS);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => { closed = true; finish(); });
    socket.write(bytes, () => { if (options.halfClose) socket.end(); });
  });
}

describe('bad input from the app (outbound listener)', { timeout: 120_000 }, () => {
  let app: TestApp;
  let payments: SidecarProcess;
  let orders: SidecarProcess;

  before(async () => {
    app = await startTestApp();
    payments = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port }) });
    orders = await SidecarProcess.start({ config: sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: [payments.inboundAddress] } }) });
    await orders.waitForLog((l) => l.msg === 'link ready' && l.peer === payments.inboundAddress);
  });
  after(async () => {
    await Promise.all([orders, payments].map((s) => s?.stop()));
    await app?.close();
  });

  async function stillServes(label: string): Promise<void> {
    assert.equal(orders.exitStatus, undefined, `${label}: the sidecar is still running\n${orders.describe()}`);
    const response = await request(`${orders.outboundUrl}/after-bad-input`, { method: 'POST', body: label, headers: { host: 'payments' } });
    const body = await response.body.text();
    assert.equal(response.statusCode, 200, `${label}: a normal call after it works: ${body}`);
    assert.ok(body.includes(label), `${label}: the echo carries the body`);
  }

  const HEAD = 'POST /bad HTTP/1.1\r\nHost: payments\r\n';
  const cases: { name: string; bytes: () => Buffer | string; halfClose?: boolean; check: (x: Exchange) => void }[] = [
    {
      name: 'a garbage request line',
      bytes: () => 'THIS IS NOT HTTP\r\n\r\n',
      check: (x) => assert.deepEqual(x.statuses, [400]),
    },
    {
      name: 'binary garbage',
      bytes: () => Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]),
      check: (x) => assert.deepEqual(x.statuses, [400]),
    },
    {
      name: 'an invalid character in a header name',
      bytes: () => 'GET /x HTTP/1.1\r\nHost: payments\r\nX-Bad\u0001Name: v\r\n\r\n',
      check: (x) => assert.deepEqual(x.statuses, [400]),
    },
    {
      name: 'an invalid character in a header value',
      bytes: () => 'GET /x HTTP/1.1\r\nHost: payments\r\nX-Bad: a\u0000b\r\n\r\n',
      check: (x) => assert.deepEqual(x.statuses, [400]),
    },
    {
      name: 'headers over 16 KiB',
      // Over Node's default (16 KiB) but under limits.maxHeaderBytes (32 KiB by default): the sidecar takes
      // it, and the answer is the app's own (its Node refuses heads over 16 KiB), not a mesh error.
      bytes: () => `GET /x HTTP/1.1\r\nHost: payments\r\nConnection: close\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
      check: (x) => { assert.deepEqual(x.statuses, [431]); assert.deepEqual(x.codes, []); },
    },
    {
      name: 'headers over limits.maxHeaderBytes (40 KiB)',
      bytes: () => `GET /x HTTP/1.1\r\nHost: payments\r\nX-Big: ${'a'.repeat(40 * 1024)}\r\n\r\n`,
      check: (x) => { assert.deepEqual(x.statuses, [431]); assert.deepEqual(x.codes, ['HEADERS_TOO_LARGE']); },
    },
    {
      name: 'a body longer than its Content-Length (the rest is a garbage second request)',
      bytes: () => `${HEAD}Content-Length: 5\r\n\r\nhelloEXTRA GARBAGE\r\n\r\n`,
      // Today the garbage makes the sidecar drop the connection, the valid request's answer with it
      // (the skipped test below wants the answer first); either way nothing beyond the 5 bytes is sent on.
      check: (x) => {
        assert.ok(!x.text.includes('helloEXTRA'), 'the app got at most the declared bytes');
        assert.ok(x.statuses.length === 0 || x.statuses[0] === 200, `got ${x.statuses}`);
      },
    },
    {
      name: 'a body shorter than its Content-Length, then close',
      bytes: () => `${HEAD}Content-Length: 100\r\n\r\nonly ten b`,
      halfClose: true,
      // Nothing to answer: the request never completed. A 4xx is fine too.
      check: (x) => assert.ok(x.statuses.every((s) => s >= 400 && s < 500), `got ${x.statuses}`),
    },
    {
      name: 'a bad chunk size',
      bytes: () => `${HEAD}Transfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n`,
      check: (x) => assert.ok(x.statuses.length <= 1 && x.statuses.every((s) => s >= 400 && s < 500), `got ${x.statuses}`),
    },
    {
      name: 'a chunk longer than its size',
      bytes: () => `${HEAD}Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n`,
      check: (x) => assert.ok(x.statuses.length <= 1 && x.statuses.every((s) => s >= 400 && s < 500), `got ${x.statuses}`),
    },
    {
      name: 'chunked, cut off in the middle, then close',
      bytes: () => `${HEAD}Transfer-Encoding: chunked\r\n\r\n10\r\nabc`,
      halfClose: true,
      check: (x) => assert.ok(x.statuses.every((s) => s >= 400 && s < 500), `got ${x.statuses}`),
    },
    {
      name: 'both Content-Length and Transfer-Encoding (request smuggling shape)',
      bytes: () => `${HEAD}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      check: (x) => assert.deepEqual(x.statuses, [400]),
    },
    {
      name: 'two different Content-Lengths',
      bytes: () => `${HEAD}Content-Length: 4\r\nContent-Length: 5\r\n\r\nhello`,
      check: (x) => assert.deepEqual(x.statuses, [400]),
    },
    {
      name: 'absolute-form with a bad URL',
      bytes: () => 'GET http://[::bad/x HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n',
      check: (x) => assert.ok(x.statuses.length === 1 && x.statuses[0]! >= 400 && x.statuses[0]! < 500, `got ${x.statuses}`),
    },
    {
      name: 'absolute-form naming no host',
      bytes: () => 'GET http:///x HTTP/1.1\r\nConnection: close\r\n\r\n',
      // Today a bare 400 without a code (the skipped test below wants BAD_REQUEST).
      check: (x) => assert.ok(x.statuses.length === 1 && x.statuses[0]! >= 400 && x.statuses[0]! < 500, `got ${x.statuses}`),
    },
    {
      name: 'CONNECT to garbage',
      bytes: () => 'CONNECT %%%garbage HTTP/1.1\r\nHost: %%%garbage\r\n\r\n',
      check: (x) => assert.ok(x.statuses.length === 1 && x.statuses[0]! >= 400 && x.statuses[0]! < 500, `got ${x.statuses}`),
    },
    {
      name: 'CONNECT to an unknown service',
      bytes: () => 'CONNECT billing.default:80 HTTP/1.1\r\nHost: billing.default:80\r\n\r\n',
      check: (x) => { assert.deepEqual(x.statuses, [404]); assert.deepEqual(x.codes, ['UNKNOWN_SERVICE']); },
    },
  ];

  const summary: string[] = [];
  for (const c of cases) {
    test(c.name, async () => {
      const x = await exchange(orders.ports.outbound, c.bytes(), { halfClose: c.halfClose });
      if (process.env.BAD_INPUT_DEBUG) console.log(`# ${c.name}: ${JSON.stringify(x.text.slice(0, 400))}`);
      summary.push(`${c.name}: ${x.statuses.join(',') || '-'}${x.codes.length ? ` ${x.codes.join(',')}` : ''}${x.closed ? '' : ' (NOT CLOSED)'}`);
      assert.ok(x.closed, `${c.name}: the connection is answered and closed within ${CASE_MS} ms: ${JSON.stringify(x.text.slice(0, 300))}`);
      c.check(x);
      await stillServes(c.name);
    });
  }

  test('a valid request followed by garbage on the same connection still gets its answer', { skip: 'BUG: refuseClient() destroys the socket while the first request is in flight; its 200 is lost' }, async () => {
    const x = await exchange(orders.ports.outbound, `${HEAD}Content-Length: 5\r\n\r\nhelloEXTRA GARBAGE\r\n\r\n`);
    assert.equal(x.statuses[0], 200, JSON.stringify(x.text));
    await stillServes('pipelined garbage');
  });

  test('absolute-form naming no host gets a coded BAD_REQUEST', { skip: 'BUG: `GET http:///x` is answered 400 with no mcp-mesh-error header and an empty body' }, async () => {
    const x = await exchange(orders.ports.outbound, 'GET http:///x HTTP/1.1\r\nConnection: close\r\n\r\n');
    assert.deepEqual(x.codes, ['BAD_REQUEST'], JSON.stringify(x.text));
  });

  test('the sidecar is still up, and stops cleanly', async () => {
    console.log(`# bad input outcomes:\n# ${summary.join('\n# ')}`);
    await stillServes('the end');
    const exit = await orders.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, orders.describe());
  });
});
