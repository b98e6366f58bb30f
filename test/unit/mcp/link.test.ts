// PeerLink against a real MeshServer on 127.0.0.1 port 0 (and, for misbehaving peers, a bare gRPC
// server speaking just enough MCP): readiness, calls, batching, cancel, drain, breakage, reconnect.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { Compression, decodeBatch, encodeBatch, MessageType, Priority, type Batch, type Envelope } from '../../../sidecar/src/mcp/codec.ts';
import { compressPayload, type CompressionSetting } from '../../../sidecar/src/mcp/compression.ts';
import { newMessageId } from '../../../sidecar/src/mcp/ids.ts';
import type { PeerLink } from '../../../sidecar/src/mcp/link.ts';
import type { MeshServerOptions } from '../../../sidecar/src/mcp/server.ts';
import { CAPABILITIES, LINK_METHOD, PROTOCOL_MAJOR } from '../../../sidecar/src/mcp/version.ts';
import {
  FakeInboundHandler, meshRejection, openLink, requestEnvelope, startServer, watchStates, withReadyLink, withTimeout,
} from './fixtures.ts';

describe('PeerLink with a MeshServer', () => {
  it('reaches ready and round-trips a call', async () => {
    const handler = new FakeInboundHandler();
    const { server, address } = await startServer(handler);
    const link = openLink(address);
    try {
      const states = watchStates(link);
      await link.whenReady(5000);
      assert.deepEqual(states.states, ['connecting', 'ready']);
      assert.ok(link.peerCan('batch') && link.peerCan('cancel'), 'capabilities from the server HELLO');
      assert.ok(!link.peerCan('teleport'));

      const request = requestEnvelope('/charge?amount=5', 'body bytes');
      const response = await link.call(request);
      assert.equal(response.type, MessageType.RESPONSE);
      assert.equal(response.correlationId, request.id);
      assert.equal(response.http?.status, 200);
      assert.equal(Buffer.from(response.payload!).toString(), 'body bytes');
      assert.deepEqual(response.headers?.map((h) => [h.name, h.value]), [['x-echo', '/charge?amount=5']]);
      const seen = handler.seen[0]!.request;
      assert.equal(seen.id, request.id);
      assert.equal(seen.http?.method, 'POST');
      assert.equal(seen.source, 'orders.default');
      assert.equal(link.inFlight, 0);
    } finally {
      link.close();
      await server.close();
    }
  });

  it('coalesces a burst of calls into one batch and matches every answer to its call', async () => {
    await withReadyLink({}, async ({ link }) => {
      const sizes: number[] = [];
      link.on('batch', (size: number) => sizes.push(size));
      const requests = Array.from({ length: 100 }, (_, i) => requestEnvelope(`/n/${i}`, `payload ${i}`));
      const responses = await Promise.all(requests.map((r) => link.call(r)));
      assert.deepEqual(sizes, [100], 'one batch of 100 envelopes');
      responses.forEach((response, i) => {
        assert.equal(response.correlationId, requests[i]!.id);
        assert.equal(Buffer.from(response.payload!).toString(), `payload ${i}`);
      });
      assert.deepEqual(link.stats, { batches: 1, envelopes: 100 });
    });
  });

  it('splits a burst by batchMaxCount', async () => {
    await withReadyLink({ link: { batchMaxCount: 8 } }, async ({ link }) => {
      const sizes: number[] = [];
      link.on('batch', (size: number) => sizes.push(size));
      await Promise.all(Array.from({ length: 20 }, () => link.call(requestEnvelope())));
      assert.deepEqual(sizes, [8, 8, 4]);
    });
  });

  it('rejects with the peer\'s mesh error code', async () => {
    await withReadyLink({ hold: true }, async ({ handler, link }) => {
      const call = link.call(requestEnvelope());
      (await handler.nextRequest()).fail(new MeshError('APP_UNAVAILABLE', 'app refused the connection'));
      const err = await meshRejection(call);
      assert.equal(err.code, 'APP_UNAVAILABLE');
      assert.equal(err.message, 'app refused the connection');
      assert.equal(err.status, 502);
    });
  });

  it('on abort, sends CANCEL: the handler\'s signal aborts and the call rejects with CLIENT_CLOSED', async () => {
    await withReadyLink({ hold: true }, async ({ handler, link }) => {
      const controller = new AbortController();
      const call = link.call(requestEnvelope('/slow'), controller.signal);
      const seen = await handler.nextRequest();
      const aborted = new Promise<unknown>((resolve) => seen.signal.addEventListener('abort', () => resolve(seen.signal.reason)));
      controller.abort();
      const err = await meshRejection(call);
      assert.equal(err.code, 'CLIENT_CLOSED');
      assert.equal(link.inFlight, 0);
      const reason = await withTimeout(aborted, 'the peer handler to see the CANCEL');
      assert.ok(reason instanceof MeshError && reason.code === 'CLIENT_CLOSED');
    });
  });

  it('a call aborted before its REQUEST left the batcher never runs on the peer', async () => {
    await withReadyLink({ hold: true }, async ({ handler, link }) => {
      const controller = new AbortController();
      const abandoned = requestEnvelope('/abandoned');
      const abandonedCall = link.call(abandoned, controller.signal);
      controller.abort(); // same tick: the REQUEST is still in the batcher
      assert.equal((await meshRejection(abandonedCall)).code, 'CLIENT_CLOSED');
      // A later call on the same ordered stream: once the peer has it, it has processed the abandoned one too.
      handler.hold = false;
      const marker = requestEnvelope('/marker');
      await link.call(marker);
      const abandonedSeen = handler.seen.find((s) => s.request.id === abandoned.id);
      assert.ok(!abandonedSeen || abandonedSeen.signal.aborted, 'the peer app must not be left running an abandoned request');
    });
  });

  it('moves to draining when the server drains, and refuses new calls with SHUTTING_DOWN', async () => {
    const { server, address } = await startServer(new FakeInboundHandler());
    const link = openLink(address);
    try {
      const states = watchStates(link);
      await link.whenReady(5000);
      await server.drain(1000);
      await states.reach('draining');
      const err = await meshRejection(link.call(requestEnvelope()));
      assert.equal(err.code, 'SHUTTING_DOWN');
      assert.equal(err.status, 503);
    } finally {
      link.close();
      await server.close();
    }
  });

  it('when the server shuts down: sent calls reject with LINK_BROKEN, the link breaks, then reconnects to a new server on the same port', async () => {
    const handler = new FakeInboundHandler();
    handler.hold = true;
    const first = await startServer(handler);
    const link = openLink(first.address);
    let second: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      const states = watchStates(link);
      await link.whenReady(5000);
      const calls = [link.call(requestEnvelope('/a')), link.call(requestEnvelope('/b'))];
      await handler.nextRequest(1); // both were sent and reached the peer's app
      const broken = states.reach('broken');
      const rejections = Promise.all(calls.map(meshRejection));
      await first.server.close();
      for (const err of await rejections) {
        assert.equal(err.code, 'LINK_BROKEN');
        assert.equal(err.status, 502);
      }
      await broken;
      assert.equal(link.inFlight, 0);
      // While broken, a new call fails at once as PEER_UNAVAILABLE (it was never sent).
      assert.equal((await meshRejection(link.call(requestEnvelope()))).code, 'PEER_UNAVAILABLE');

      const secondHandler = new FakeInboundHandler();
      second = await startServer(secondHandler, first.port);
      assert.equal(second.port, first.port);
      await watchStates(link).reach('ready');
      const request = requestEnvelope('/after-reconnect', 'again');
      const response = await link.call(request);
      assert.equal(response.correlationId, request.id);
      assert.equal(Buffer.from(response.payload!).toString(), 'again');
      assert.equal(secondHandler.seen.length, 1);
      assert.deepEqual(states.states.slice(0, 4), ['connecting', 'ready', 'broken', 'connecting']);
      assert.equal(states.states.at(-1), 'ready');
    } finally {
      link.close();
      await second?.server.close();
    }
  });

  it('close() fails queued calls with SHUTTING_DOWN and ends in closed', async () => {
    const handler = new FakeInboundHandler();
    handler.hold = true;
    const { server, address } = await startServer(handler);
    const link = openLink(address);
    try {
      await link.whenReady(5000);
      const call = link.call(requestEnvelope());
      link.close();
      assert.equal((await meshRejection(call)).code, 'SHUTTING_DOWN');
      assert.equal(link.state, 'closed');
      assert.equal((await meshRejection(link.whenReady(1000))).code, 'PEER_UNAVAILABLE');
      assert.equal((await meshRejection(link.call(requestEnvelope()))).code, 'PEER_UNAVAILABLE');
    } finally {
      await server.close();
    }
  });
});

/** A bare gRPC server whose Link handler is the test's: for peers that misbehave on purpose. */
async function bareServer(onLink: (call: grpc.ServerDuplexStream<Batch, Batch>) => void): Promise<{ address: string; close: () => void }> {
  const server = new grpc.Server();
  server.addService({
    Link: {
      path: LINK_METHOD, requestStream: true, responseStream: true,
      requestSerialize: encodeBatch, requestDeserialize: decodeBatch, responseSerialize: encodeBatch, responseDeserialize: decodeBatch,
    },
  }, { Link: onLink });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
}

describe('PeerLink with a misbehaving peer', () => {
  it('never becomes ready with a peer that answers HELLO with another major version', async () => {
    let hellos = 0;
    const peer = await bareServer((call) => {
      call.on('data', (batch: Batch) => {
        if (batch.envelopes[0]?.type !== MessageType.HELLO) return;
        hellos++;
        call.write({ envelopes: [{ id: newMessageId(), type: MessageType.HELLO, priority: Priority.HIGH, hello: { major: PROTOCOL_MAJOR + 1, minor: 0 } }] });
      });
      call.on('error', () => {});
    });
    const link = openLink(peer.address);
    try {
      const states = watchStates(link);
      await states.reach('broken');
      assert.ok(!states.states.includes('ready'));
      assert.ok(hellos >= 1, "the peer got our HELLO");
      assert.equal((await meshRejection(link.call(requestEnvelope()))).code, 'PEER_UNAVAILABLE');
    } finally {
      link.close();
      peer.close();
    }
  });

  it('breaks a link whose peer goes silent for longer than unhealthyAfter, failing its sent calls', async () => {
    // The peer says HELLO and then nothing at all (no heartbeats, no answers).
    const peer = await bareServer((call) => {
      call.once('data', () => call.write({ envelopes: [{ id: newMessageId(), type: MessageType.HELLO, priority: Priority.HIGH, hello: { major: PROTOCOL_MAJOR, minor: 0 } }] }));
      call.on('error', () => {});
    });
    const started = Date.now(); // before the HELLO can arrive, so the silence is measured from after it
    const link = openLink(peer.address, { heartbeatIntervalMs: 20, unhealthyAfterMs: 60 });
    try {
      const states = watchStates(link);
      await link.whenReady(5000);
      const call = link.call(requestEnvelope());
      const err = await meshRejection(call);
      assert.equal(err.code, 'LINK_BROKEN');
      assert.match(err.message, /silent/);
      assert.ok(Date.now() - started >= 60, 'not before unhealthyAfter');
      assert.ok(states.states.includes('broken'));
    } finally {
      link.close();
      peer.close();
    }
  });

  it('sends HEARTBEATs on an idle link (and a quiet peer that only heartbeats is not a protocol error)', async () => {
    // The peer answers HELLO, then each HEARTBEAT with a HEARTBEAT; it never sends anything else.
    let heartbeatsSeen = 0;
    let reached: () => void = () => {};
    const enough = new Promise<void>((resolve) => { reached = resolve; });
    const peer = await bareServer((call) => {
      call.on('data', (batch: Batch) => {
        for (const envelope of batch.envelopes) {
          if (envelope.type === MessageType.HELLO) {
            call.write({ envelopes: [{ id: newMessageId(), type: MessageType.HELLO, priority: Priority.HIGH, hello: { major: PROTOCOL_MAJOR, minor: 0 } }] });
          } else if (envelope.type === MessageType.HEARTBEAT) {
            call.write({ envelopes: [{ id: newMessageId(), type: MessageType.HEARTBEAT, priority: Priority.HIGH }] });
            if (++heartbeatsSeen === 5) reached();
          }
        }
      });
      call.on('error', () => {});
    });
    // unhealthyAfter is long: this test is about heartbeats being sent, not about a clock race.
    const link = openLink(peer.address, { heartbeatIntervalMs: 20, unhealthyAfterMs: 30_000 });
    try {
      const states = watchStates(link);
      await link.whenReady(5000);
      await withTimeout(enough, 'five heartbeats at the peer');
      assert.deepEqual(states.states, ['connecting', 'ready'], 'heartbeats from the peer are accepted quietly');
    } finally {
      link.close();
      peer.close();
    }
  });
});

/** About 24 KiB of JSON such as services exchange: compresses well. */
const JSON_BODY = Buffer.from(JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ id: i, name: `item ${i}`, price: i % 97, tags: ['a', 'b'] }))));

/** A TCP relay in front of a server that counts the bytes each way: what really crossed the wire. */
async function countingRelay(targetPort: number): Promise<{ address: string; bytes: { up: number; down: number }; close: () => void }> {
  const bytes = { up: 0, down: 0 };
  const sockets = new Set<Socket>();
  const relay = createServer({ noDelay: true }, (inbound) => {
    const outbound = connect({ port: targetPort, host: '127.0.0.1', noDelay: true });
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => { inbound.destroy(); outbound.destroy(); });
    }
    inbound.on('data', (chunk: Buffer) => { bytes.up += chunk.length; });
    outbound.on('data', (chunk: Buffer) => { bytes.down += chunk.length; });
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const close = () => { for (const socket of sockets) socket.destroy(); relay.close(); };
  return { address: `127.0.0.1:${(relay.address() as AddressInfo).port}`, bytes, close };
}

/** A MeshServer behind a counting relay and a ready PeerLink through it; `call` says how many bytes each way. */
async function withRelayedLink(
  server: Partial<MeshServerOptions>,
  body: (ctx: { handler: FakeInboundHandler; link: PeerLink; call: (request: Envelope, setting?: CompressionSetting) => Promise<{ response: Envelope; up: number; down: number }> }) => Promise<void>,
): Promise<void> {
  const handler = new FakeInboundHandler();
  const started = await startServer(handler, 0, server);
  const relay = await countingRelay(started.port);
  const link = openLink(relay.address);
  try {
    await link.whenReady(5000);
    const call = async (request: Envelope, setting?: CompressionSetting) => {
      const before = { ...relay.bytes };
      const response = await link.call(request, undefined, setting);
      return { response, up: relay.bytes.up - before.up, down: relay.bytes.down - before.down };
    };
    await body({ handler, link, call });
  } finally {
    link.close();
    relay.close();
    await started.server.close();
  }
}

describe('PeerLink compression with a MeshServer', () => {
  for (const algorithm of ['gzip', 'lz4'] as const) {
    it(`${algorithm}: the request and its answer cross the wire compressed, and both ends see the original bytes`, async () => {
      await withRelayedLink({}, async ({ handler, link, call }) => {
        assert.ok(link.peerCan(algorithm));
        // Baseline on the same link: uncompressed, both directions carry at least the body.
        const plain = await call(requestEnvelope('/plain', JSON_BODY.toString()));
        assert.ok(plain.up > JSON_BODY.length && plain.down > JSON_BODY.length, `plain: ${plain.up} up, ${plain.down} down`);

        const request = requestEnvelope('/compressed', JSON_BODY.toString());
        const { response, up, down } = await call(request, { algorithm, minBytes: 1024 });
        assert.ok(up < JSON_BODY.length / 2, `${algorithm}: ${up} bytes up for a ${JSON_BODY.length}-byte body`);
        assert.ok(down < JSON_BODY.length / 2, `${algorithm}: ${down} bytes down for a ${JSON_BODY.length}-byte body`);
        assert.deepEqual(Buffer.from(response.payload!), JSON_BODY, 'the caller gets the answer decompressed');
        assert.equal(response.compression, Compression.IDENTITY);
        const seen = handler.seen.at(-1)!.request;
        assert.deepEqual(Buffer.from(seen.payload!), JSON_BODY, 'the app gets the request decompressed');
        assert.equal(seen.acceptCompression, algorithm === 'gzip' ? Compression.GZIP : Compression.LZ4);
        assert.equal(seen.compressMinBytes, 1024);
        assert.equal(request.compression, undefined, "the caller's envelope is left as it was");
        assert.equal(request.payload!.byteLength, JSON_BODY.length);
      });
    });
  }

  it('a peer that does not announce lz4 gets lz4 calls uncompressed (and answers them so); gzip still works', async () => {
    const older = CAPABILITIES.filter((capability) => capability !== 'lz4');
    await withRelayedLink({ capabilities: older }, async ({ handler, link, call }) => {
      assert.ok(!link.peerCan('lz4') && link.peerCan('gzip'));
      const { response, up, down } = await call(requestEnvelope('/lz4', JSON_BODY.toString()), { algorithm: 'lz4', minBytes: 0 });
      assert.ok(up > JSON_BODY.length && down > JSON_BODY.length, `uncompressed: ${up} up, ${down} down`);
      assert.deepEqual(Buffer.from(response.payload!), JSON_BODY);
      const seen = handler.seen.at(-1)!.request;
      assert.equal(seen.acceptCompression, Compression.IDENTITY, 'the peer is not asked to compress its answer');

      const gzip = await call(requestEnvelope('/gzip', JSON_BODY.toString()), { algorithm: 'gzip', minBytes: 0 });
      assert.ok(gzip.up < JSON_BODY.length / 2 && gzip.down < JSON_BODY.length / 2);
    });
  });

  it('a body below minBytes goes uncompressed', async () => {
    await withRelayedLink({}, async ({ call }) => {
      const { response, up, down } = await call(requestEnvelope('/small', JSON_BODY.toString()), { algorithm: 'gzip', minBytes: JSON_BODY.length + 1 });
      assert.ok(up > JSON_BODY.length && down > JSON_BODY.length, `uncompressed: ${up} up, ${down} down`);
      assert.deepEqual(Buffer.from(response.payload!), JSON_BODY);
    });
  });
});

describe('PeerLink compression with a misbehaving peer', () => {
  let bomb: Buffer | undefined;
  /** 100 MiB of zeros, gzipped (about 100 KiB); made once, before a link waits on it. */
  const gzipBomb = () => (bomb ??= gzipSync(Buffer.alloc(100 * 1024 * 1024)));

  /** A peer that announces gzip and lz4, records each REQUEST as received, and answers by path. */
  async function compressingPeer(): Promise<{ address: string; requests: Envelope[]; close: () => void }> {
    const requests: Envelope[] = [];
    const peer = await bareServer((call) => {
      call.on('data', (batch: Batch) => {
        for (const envelope of batch.envelopes) {
          if (envelope.type === MessageType.HELLO) {
            call.write({ envelopes: [{ id: newMessageId(), type: MessageType.HELLO, priority: Priority.HIGH, hello: { major: PROTOCOL_MAJOR, minor: 0, capabilities: ['gzip', 'lz4'] } }] });
          } else if (envelope.type === MessageType.REQUEST) {
            requests.push(envelope);
            const path = envelope.http?.path;
            const answer: Envelope = { id: newMessageId(), type: MessageType.RESPONSE, correlationId: envelope.id, http: { status: 200 } };
            if (path === '/corrupt') Object.assign(answer, { payload: Buffer.from('not gzip'), compression: Compression.GZIP });
            else if (path === '/bomb') Object.assign(answer, { payload: gzipBomb(), compression: Compression.GZIP });
            else Object.assign(answer, compressPayload(JSON_BODY, Compression.LZ4, 0));
            call.write({ envelopes: [answer] });
          }
        }
      });
      call.on('error', () => {});
    });
    return { ...peer, requests };
  }

  it('sends what it compresses as such on the wire, and nothing extra by default', async () => {
    const peer = await compressingPeer();
    const link = openLink(peer.address);
    try {
      await link.whenReady(5000);
      await link.call(requestEnvelope('/default', JSON_BODY.toString()));
      await link.call(requestEnvelope('/gzip', JSON_BODY.toString()), undefined, { algorithm: 'gzip', minBytes: 100 });
      await link.call(requestEnvelope('/small', 'tiny'), undefined, { algorithm: 'gzip', minBytes: 100 });
      await link.call(requestEnvelope('/none', JSON_BODY.toString()), undefined, { algorithm: 'none', minBytes: 0 });
      const [byDefault, gzip, small, none] = peer.requests;
      for (const plain of [byDefault!, none!]) {
        assert.equal(plain.compression, Compression.IDENTITY);
        assert.equal(plain.acceptCompression, Compression.IDENTITY);
        assert.equal(plain.payload!.byteLength, JSON_BODY.length);
      }
      assert.equal(gzip!.compression, Compression.GZIP);
      assert.ok(gzip!.payload!.byteLength < JSON_BODY.length / 2);
      assert.equal(gzip!.acceptCompression, Compression.GZIP);
      assert.equal(gzip!.compressMinBytes, 100);
      assert.equal(small!.compression, Compression.IDENTITY, 'below minBytes');
      assert.equal(small!.acceptCompression, Compression.GZIP, 'yet a large answer may come back compressed');
    } finally {
      link.close();
      peer.close();
    }
  });

  it('a corrupt compressed answer fails that call with PROTOCOL_ERROR; the link and the next call are fine', async () => {
    const peer = await compressingPeer();
    const link = openLink(peer.address);
    try {
      const states = watchStates(link);
      await link.whenReady(5000);
      const [corrupt, good] = await Promise.allSettled([link.call(requestEnvelope('/corrupt')), link.call(requestEnvelope('/ok'))]);
      assert.equal(corrupt.status, 'rejected');
      assert.ok(corrupt.reason instanceof MeshError && corrupt.reason.code === 'PROTOCOL_ERROR', String(corrupt.reason));
      assert.equal(good.status, 'fulfilled', 'a call in the same batch is unaffected');
      assert.deepEqual(Buffer.from(good.value.payload!), JSON_BODY, 'an lz4 answer arrives decompressed');
      const next = await link.call(requestEnvelope('/next'));
      assert.deepEqual(Buffer.from(next.payload!), JSON_BODY);
      assert.deepEqual(states.states, ['connecting', 'ready']);
      assert.equal(link.inFlight, 0);
    } finally {
      link.close();
      peer.close();
    }
  });

  it('refuses a gzip bomb (100 MiB of zeros) in an answer with PROTOCOL_ERROR', async () => {
    gzipBomb();
    const peer = await compressingPeer();
    const link = openLink(peer.address);
    try {
      await link.whenReady(5000);
      const err = await meshRejection(link.call(requestEnvelope('/bomb')));
      assert.equal(err.code, 'PROTOCOL_ERROR');
      assert.match(err.message, /inflates past/);
      assert.equal(link.state, 'ready');
    } finally {
      link.close();
      peer.close();
    }
  });
});
