import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { startDelayRelay, type DelayRelay } from '../../../bench/delay-relay.ts';

const LOOPBACK = '127.0.0.1';
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** A server on port 0 whose connections are handed to `onConnection`; stop() also ends its connections. */
async function server(onConnection: (socket: net.Socket) => void): Promise<net.Server & { stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  s.listen(0, LOOPBACK);
  await once(s, 'listening');
  const stop = () => new Promise<void>((resolve) => {
    s.close(() => resolve());
    for (const socket of sockets) socket.destroy();
  });
  return Object.assign(s, { stop });
}

/** Resolves when `socket` closes, whatever the reason (events.once would reject on 'error'). */
function closed(socket: net.Socket): Promise<void> {
  socket.on('error', () => {});
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: LOOPBACK, port, allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** Resolves with everything `socket` reads until its end. */
function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

describe('delay relay', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  after(async () => { for (const c of cleanup.reverse()) await c(); });

  /** A target server answering with `onConnection`, and a relay in front of it. */
  async function setUp(delayMs: number, onConnection: (socket: net.Socket) => void): Promise<DelayRelay> {
    const target = await server(onConnection);
    cleanup.push(() => target.stop());
    const relay = await startDelayRelay({ listen: { host: LOOPBACK, port: 0 }, target: { host: LOOPBACK, port: portOf(target) }, delayMs });
    cleanup.push(() => relay.close());
    return relay;
  }

  it('carries bytes both ways, in order and intact (echo of 2 MiB written in uneven pieces)', async () => {
    const relay = await setUp(2, (socket) => socket.pipe(socket));
    const client = await connect(relay.port);
    const sent = randomBytes(2 * 1024 * 1024);
    const received = readAll(client);
    for (let at = 0, n = 1; at < sent.length; at += n, n = (n * 7 + 13) % 65_536 + 1) client.write(sent.subarray(at, at + n));
    client.end();
    const echoed = await received;
    assert.equal(echoed.length, sent.length);
    assert.ok(echoed.equals(sent), 'the echo matches what was sent, byte for byte');
    assert.ok(relay.stats().chunks > 0);
  });

  it('holds each direction at least the configured delay', async () => {
    const delayMs = 20;
    const arrivals: number[] = [];
    const relay = await setUp(delayMs, (socket) => {
      socket.on('data', (chunk: Buffer) => {
        arrivals.push(nowMs());
        socket.write(chunk); // answer at once: the round trip then holds two delays
      });
    });
    const client = await connect(relay.port);
    for (let i = 0; i < 5; i++) {
      const sentAt = nowMs();
      client.write(`ping ${i}`);
      const [answer] = await once(client, 'data') as [Buffer];
      const back = nowMs();
      assert.equal(answer.toString(), `ping ${i}`);
      assert.ok(arrivals[i]! - sentAt >= delayMs, `one way took ${(arrivals[i]! - sentAt).toFixed(2)} ms, less than ${delayMs}`);
      assert.ok(back - arrivals[i]! >= delayMs, `the way back took ${(back - arrivals[i]!).toFixed(2)} ms, less than ${delayMs}`);
      assert.ok(back - sentAt >= 2 * delayMs);
    }
    assert.ok(relay.stats().holdP50Us >= delayMs * 1000, 'the relay reports holding chunks at least the delay');
    client.destroy();
  });

  it('passes each side\'s end on after the delay (half-close kept), then both sockets close', async () => {
    const delayMs = 10;
    const far: { socket?: net.Socket; endAt: number; gotEnd?: () => void } = { endAt: 0 };
    const serverGotEnd = new Promise<void>((resolve) => { far.gotEnd = resolve; });
    const relay = await setUp(delayMs, (socket) => {
      far.socket = socket;
      socket.on('data', () => {});
      socket.once('end', () => { far.endAt = nowMs(); far.gotEnd!(); });
    });
    const client = await connect(relay.port);
    const clientReads = readAll(client);
    const endedAt = nowMs();
    client.end('last words');
    await serverGotEnd;
    assert.ok(far.endAt - endedAt >= delayMs, 'the FIN was delayed like data');
    // The client's half is closed, the server's is not: it can still answer.
    const serverClosed = once(far.socket!, 'close');
    far.socket!.end('reply after the client finished');
    assert.equal((await clientReads).toString(), 'reply after the client finished');
    await Promise.all([once(client, 'close'), serverClosed]);
  });

  it('destroys the other side when one side is reset', async () => {
    const relay = await setUp(1, (socket) => {
      socket.once('data', () => socket.resetAndDestroy());
    });
    const client = await connect(relay.port);
    const clientClosed = closed(client);
    client.write('x');
    await clientClosed;
    assert.ok(client.destroyed);
  });

  it('closes the client when the target refuses the connection', async () => {
    const gone = await server(() => {});
    const port = portOf(gone);
    await gone.stop();
    const relay = await startDelayRelay({ listen: { host: LOOPBACK, port: 0 }, target: { host: LOOPBACK, port }, delayMs: 1 });
    cleanup.push(() => relay.close());
    const client = net.connect({ host: LOOPBACK, port: relay.port });
    await closed(client);
  });

  it('refuses addresses outside 127.0.0.0/8', async () => {
    await assert.rejects(startDelayRelay({ listen: { host: '0.0.0.0', port: 0 }, target: { host: LOOPBACK, port: 1 }, delayMs: 1 }), /not a 127/);
    await assert.rejects(startDelayRelay({ listen: { host: LOOPBACK, port: 0 }, target: { host: '10.0.0.1', port: 1 }, delayMs: 1 }), /not a 127/);
  });
});
