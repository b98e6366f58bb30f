// Bounds on the connections peers open to the inbound port (mcp/connection-limits.ts), on a real
// MeshServer on 127.0.0.1 port 0: connections that never start a call (raw TCP, an unfinished TLS
// handshake, an HTTP/2 session with no call) are closed; one whose calls have ended is closed when
// idle; a live link is not; one address, and all addresses together, get at most so many.
// Timeouts are shortened to a few hundred ms; the tests wait on the closing events (with a bound),
// never on the clock.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { RefusalLog, REFUSAL_LOG_INTERVAL_MS, type ConnectionLimit, type InboundConnectionLimits } from '../../../sidecar/src/mcp/connection-limits.ts';
import { MeshServer } from '../../../sidecar/src/mcp/server.ts';
import { encodeBatch } from '../../../sidecar/src/mcp/codec.ts';
import { LINK_METHOD, PROTOCOL_MAJOR, PROTOCOL_MINOR } from '../../../sidecar/src/mcp/version.ts';
import { channelCredentials, loadMaterial, serverCredentials, type TlsFiles } from '../../../sidecar/src/security/tls.ts';
import { makeCertDir } from '../../helpers/certs.ts';
import { rawConnection } from '../../helpers/raw-tcp.ts';
import { within } from '../../helpers/wait.ts';
import { EVENT_TIMEOUT_MS, FakeInboundHandler, helloEnvelope, openLink, requestEnvelope, serverOptions, watchStates } from './fixtures.ts';

const TRUST_DOMAIN = 'cluster.local';

/** Log lines at warn and above, parsed. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger: Logger = pino({ level: 'warn' }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>); } });
  return { logger, lines };
}

describe('inbound connection limits (MeshServer)', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /**
   * A MeshServer with these connection limits (and mutual TLS with `tls`); `refused` records each
   * limit it counts, `linkCredentials` are a peer's (with `tls`).
   */
  async function start(connections: Omit<InboundConnectionLimits, 'onLimit'>, tls = false) {
    const refused: ConnectionLimit[] = [];
    const { logger, lines } = capturingLogger();
    let serverTls: grpc.ServerCredentials | undefined;
    let linkCredentials: grpc.ChannelCredentials | undefined;
    if (tls) {
      const certs = makeCertDir(['payments.shop', 'orders.default']);
      cleanups.push(() => certs.remove());
      const material = (name: string) => loadMaterial(certs.tls(name) as unknown as TlsFiles, TRUST_DOMAIN);
      serverTls = serverCredentials(material('payments.shop'));
      linkCredentials = channelCredentials(material('orders.default'), TRUST_DOMAIN);
    }
    const server = new MeshServer(new FakeInboundHandler(), {
      ...serverOptions, logger, tls: tls ? { trustDomain: TRUST_DOMAIN } : undefined,
      connections: { ...connections, onLimit: (limit) => refused.push(limit) },
    });
    const port = await server.listen('127.0.0.1', 0, serverTls);
    cleanups.push(() => server.close());
    const open = (localAddress?: string) => {
      const connection = rawConnection(port, localAddress);
      cleanups.push(() => connection.socket.destroy());
      return connection;
    };
    return { server, port, refused, lines, open, linkCredentials };
  }

  const bounded = <T>(promise: Promise<T>, what: string) => within(promise, EVENT_TIMEOUT_MS, what);

  it('closes a TCP connection that never sends a byte once limits.inboundHandshakeTimeout has passed', async () => {
    const { open, refused } = await start({ handshakeTimeoutMs: 200 });
    const silent = open();
    await bounded(silent.closed, 'the silent connection to be closed');
    assert.deepEqual(refused, ['handshake_timeout']);
  });

  it('closes a connection whose TLS handshake never starts (grpc-js\'s idle clock only starts after it)', async () => {
    const { open, refused } = await start({ handshakeTimeoutMs: 200, idleTimeoutMs: 200 }, true);
    const silent = open();
    await bounded(silent.closed, 'the connection without a TLS handshake to be closed');
    assert.equal(silent.received.length, 0, 'a TLS server says nothing before the ClientHello');
    assert.deepEqual(refused, ['handshake_timeout']);
  });

  it('closes an HTTP/2 connection that never opens a call', async () => {
    const { port, refused } = await start({ handshakeTimeoutMs: 200 });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    cleanups.push(() => session.destroy());
    const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
    await bounded(new Promise<void>((resolve) => session.once('remoteSettings', () => resolve())), 'the server\'s HTTP/2 SETTINGS');
    await bounded(closed, 'the HTTP/2 connection without a call to be closed');
    assert.deepEqual(refused, ['handshake_timeout']);
  });

  it('closes a connection whose calls have all ended once limits.inboundIdleTimeout has passed (HTTP/2 GOAWAY)', async () => {
    const { port, refused } = await start({ idleTimeoutMs: 200 });
    const { closed, goaway } = await connectionWithEndedCall(port);
    cleanups.push(() => closed.session.destroy());
    await bounded(goaway, 'the idle connection\'s GOAWAY');
    await bounded(closed.done, 'the idle connection to be closed');
    assert.deepEqual(refused, [], 'closing an idle connection is not a refusal');
  });

  for (const tls of [false, true]) {
    it(`keeps a connection with a live Link stream open past both timeouts (${tls ? 'mutual TLS' : 'plaintext'})`, async () => {
      const { port, refused, open, linkCredentials } = await start({ handshakeTimeoutMs: 150, idleTimeoutMs: 150 }, tls);
      const link = openLink(`127.0.0.1:${port}`, { credentials: linkCredentials });
      cleanups.push(() => link.close());
      const states = watchStates(link);
      await link.whenReady(EVENT_TIMEOUT_MS);

      // A witness accepted after the link's connection: once it is closed, the first-call deadline
      // has had its chance at the link's connection too (and grpc-js's idle check, started with it).
      const silent = open();
      await bounded(silent.closed, 'the silent witness to be closed');
      assert.deepEqual(refused, ['handshake_timeout'], 'the witness only');

      const answer = await link.call(requestEnvelope('/still-here'));
      assert.equal(answer.http?.status, 200);
      assert.deepEqual(states.states, ['connecting', 'ready'], 'the link never lost its connection');
    });
  }

  it('refuses connections over limits.maxConnectionsPerPeer from one address, counts them, and logs a flood in one line', async () => {
    const { open, refused, lines } = await start({ maxPerPeer: 2 });
    const kept = [open(), open()];
    await bounded(Promise.all(kept.map((c) => c.spoke)), 'the first two connections to be served');

    const extra = open();
    await bounded(extra.closed, 'the third connection from 127.0.0.1 to be closed');
    assert.equal(extra.received.length, 0, 'closed before HTTP/2 said anything');
    assert.deepEqual(refused, ['connections_per_peer']);

    // Another address has its own allowance.
    const other = open('127.0.0.2');
    await bounded(other.spoke, 'a connection from 127.0.0.2 to be served');

    // A flood from the full address: every one refused and counted, the log says so once.
    const flood = Array.from({ length: 20 }, () => open());
    await bounded(Promise.all(flood.map((c) => c.closed)), 'the flood to be refused');
    assert.equal(refused.length, 21);
    assert.ok(refused.every((limit) => limit === 'connections_per_peer'));
    const warnings = lines.filter((line) => line.code === 'INBOUND_CONNECTION_REFUSED');
    assert.equal(warnings.length, 1, `one line for 21 refusals within ${REFUSAL_LOG_INTERVAL_MS} ms`);
    assert.equal(warnings[0]?.peer, '127.0.0.1');
    assert.match(String(warnings[0]?.msg), /limits\.maxConnectionsPerPeer/);

    assert.ok(kept.every((c) => !c.socket.destroyed) && !other.socket.destroyed, 'the connections within the limit stay open');
  });

  it('refuses connections over limits.maxInboundConnections from any address', async () => {
    const { open, refused } = await start({ maxTotal: 2 });
    const kept = [open('127.0.0.1'), open('127.0.0.2')];
    await bounded(Promise.all(kept.map((c) => c.spoke)), 'the first two connections to be served');
    const extra = open('127.0.0.3');
    await bounded(extra.closed, 'the third connection to be closed');
    assert.equal(extra.received.length, 0);
    assert.deepEqual(refused, ['inbound_connections']);
    assert.ok(kept.every((c) => !c.socket.destroyed), 'the connections within the limit stay open');
  });

  it('with no limits set (the default of MeshServer), takes many connections from one address', async () => {
    const { open, refused } = await start({});
    const many = Array.from({ length: 30 }, () => open());
    await bounded(Promise.all(many.map((c) => c.spoke)), 'every connection to be served');
    assert.deepEqual(refused, []);
  });
});

/**
 * An HTTP/2 connection that opened a Link call (HELLO, answered) and cancelled it: its only stream
 * has ended. Resolves once the stream is closed, with promises for the session's GOAWAY and close.
 */
async function connectionWithEndedCall(port: number): Promise<{ closed: { session: http2.ClientHttp2Session; done: Promise<void> }; goaway: Promise<void> }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  const done = new Promise<void>((resolve) => session.once('close', () => resolve()));
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
  const stream = session.request({ ':method': 'POST', ':path': LINK_METHOD, 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => {});
  const hello = encodeBatch({ envelopes: [helloEnvelope(PROTOCOL_MAJOR, PROTOCOL_MINOR)] });
  const prefix = Buffer.alloc(5); // gRPC message framing: not compressed, then the length
  prefix.writeUInt32BE(hello.length, 1);
  stream.write(Buffer.concat([prefix, hello]));
  await within(new Promise<void>((resolve) => stream.once('data', () => resolve())), EVENT_TIMEOUT_MS, 'the server\'s HELLO');
  const streamClosed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  stream.close(http2.constants.NGHTTP2_CANCEL);
  await streamClosed;
  return { closed: { session, done }, goaway };
}

describe('RefusalLog', () => {
  it('logs the first refusal at once, then one line per interval with the number refused since', () => {
    const { logger, lines } = capturingLogger();
    let now = 0;
    const log = new RefusalLog(logger, 1000, () => now);
    log.refused({ peer: 'a' }, 'refused');
    for (let i = 0; i < 99; i++) { now += 5; log.refused({ peer: 'a' }, 'refused'); }
    assert.equal(lines.length, 1, 'the first line only, within the interval');
    assert.equal(lines[0]?.refused, 1);
    now = 1000;
    log.refused({ peer: 'b' }, 'refused');
    assert.equal(lines.length, 2);
    assert.equal(lines[1]?.refused, 100, '99 held back, and this one');
    assert.equal(lines[1]?.peer, 'b');
    assert.match(String(lines[1]?.msg), /100 refused since the last such line/);
  });
});
