// MeshServer, spoken to by hand: a raw grpc-js client on the Link method checks the protocol rules
// (HELLO first, version negotiation, malformed input closes one stream only, CANCEL, DRAIN).
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { Compression, decodeFrame, encodeFrame, MessageType, Priority, type Envelope, type Frame } from '../../../sidecar/src/mcp/codec.ts';
import { compressPayload, decompressPayload } from '../../../sidecar/src/mcp/compression.ts';
import { newMessageId } from '../../../sidecar/src/mcp/ids.ts';
import type { MeshServer } from '../../../sidecar/src/mcp/server.ts';
import { LINK_METHOD, PROTOCOL_MAJOR, STREAM_METHOD } from '../../../sidecar/src/mcp/version.ts';
import {
  FakeInboundHandler, helloEnvelope, openLink, RawLink, requestEnvelope, startServer, watchStates, withTimeout,
} from './fixtures.ts';
import { until } from '../../helpers/wait.ts';

describe('MeshServer (raw Link client)', () => {
  let handler: FakeInboundHandler;
  let server: MeshServer;
  let address: string;
  const cleanups: (() => void)[] = [];

  before(async () => {
    handler = new FakeInboundHandler();
    ({ server, address } = await startServer(handler));
  });
  after(() => server.close());
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
    handler.hold = false;
  });

  function raw(): RawLink {
    const link = new RawLink(address);
    cleanups.push(() => link.close());
    return link;
  }

  it('answers HELLO 1.x with its own HELLO, then serves REQUESTs in a batch', async () => {
    const link = raw();
    link.send(helloEnvelope(PROTOCOL_MAJOR, 0));
    const hello = await link.envelope(0);
    assert.equal(hello.type, MessageType.HELLO);
    assert.equal(hello.hello?.major, PROTOCOL_MAJOR);
    assert.equal(hello.source, 'payments.shop');
    assert.ok(hello.hello?.capabilities?.includes('batch'));

    const a = requestEnvelope('/a', 'one');
    const b = requestEnvelope('/b', 'two');
    link.send(a, b);
    const answers = [await link.envelope(1), await link.envelope(2)];
    const byId = new Map(answers.map((e) => [e.correlationId, e]));
    assert.equal(byId.get(a.id)?.type, MessageType.RESPONSE);
    assert.equal(Buffer.from(byId.get(a.id)!.payload!).toString(), 'one');
    assert.equal(Buffer.from(byId.get(b.id)!.payload!).toString(), 'two');
  });

  it('refuses HELLO with major 2: ERROR VERSION_UNSUPPORTED, then closes the stream', async () => {
    const link = raw();
    link.send(helloEnvelope(PROTOCOL_MAJOR + 1, 0));
    const error = await link.envelope(0);
    assert.equal(error.type, MessageType.ERROR);
    assert.equal(error.error?.code, 'VERSION_UNSUPPORTED');
    assert.match(error.error?.message ?? '', /2\.0/);
    await withTimeout(link.closed, 'the server to close the stream');
    assert.equal(link.received.length, 1, 'no HELLO, nothing else');
  });

  it('accepts HELLO 1.7 (a newer minor) and serves calls', async () => {
    const link = raw();
    link.send(helloEnvelope(PROTOCOL_MAJOR, 7));
    const hello = await link.envelope(0);
    assert.equal(hello.type, MessageType.HELLO);
    const request = requestEnvelope('/newer-minor');
    link.send(request);
    const response = await link.envelope(1);
    assert.equal(response.type, MessageType.RESPONSE);
    assert.equal(response.correlationId, request.id);
  });

  it('closes a stream whose first envelope is a REQUEST, with PROTOCOL_ERROR, and never calls the app', async () => {
    const before = handler.seen.length;
    const link = raw();
    link.send(requestEnvelope('/too-early'));
    const error = await link.envelope(0);
    assert.equal(error.type, MessageType.ERROR);
    assert.equal(error.error?.code, 'PROTOCOL_ERROR');
    await withTimeout(link.closed, 'the server to close the stream');
    assert.equal(handler.seen.length, before);
  });

  it('closes a stream that sends an envelope type not allowed on a link, with PROTOCOL_ERROR', async () => {
    const link = raw();
    link.send(helloEnvelope(PROTOCOL_MAJOR, 0));
    await link.envelope(0);
    link.send({ id: newMessageId(), type: MessageType.RESPONSE, correlationId: 'x' });
    const error = await link.envelope(1);
    assert.equal(error.error?.code, 'PROTOCOL_ERROR');
    await withTimeout(link.closed, 'the server to close the stream');
  });

  it('closes a stream that sends garbage bytes, and keeps serving other links', async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    const garbage = client.makeBidiStreamRequest(LINK_METHOD, (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata());
    garbage.on('error', () => {});
    const status = new Promise<grpc.StatusObject>((resolve) => garbage.on('status', resolve));
    garbage.write(Buffer.from('garbage bytes!'));
    const { code } = await withTimeout(status, 'the garbage stream to be closed');
    assert.notEqual(code, grpc.status.OK, 'the garbage stream ends with an error status');

    // A well-behaved link on the same server, opened afterwards, works.
    const good = openLink(address);
    cleanups.push(() => good.close());
    await good.whenReady(5000);
    const request = requestEnvelope('/after-garbage', 'still here');
    const response = await good.call(request);
    assert.equal(response.correlationId, request.id);
    assert.equal(Buffer.from(response.payload!).toString(), 'still here');
  });

  it('aborts the handler\'s signal on CANCEL, with CLIENT_CLOSED, and sends no answer', async () => {
    handler.hold = true;
    const link = raw();
    link.send(helloEnvelope(PROTOCOL_MAJOR, 0));
    await link.envelope(0);
    const request = requestEnvelope('/slow');
    const seenNow = handler.nextRequest();
    link.send(request);
    const seen = await seenNow;
    assert.equal(seen.request.id, request.id);
    assert.equal(seen.signal.aborted, false);

    const aborted = new Promise<unknown>((resolve) => seen.signal.addEventListener('abort', () => resolve(seen.signal.reason)));
    link.send({ id: newMessageId(), type: MessageType.CANCEL, priority: Priority.HIGH, correlationId: request.id });
    const reason = await withTimeout(aborted, 'the handler signal to abort');
    assert.ok(reason instanceof MeshError);
    assert.equal(reason.code, 'CLIENT_CLOSED');

    // The link goes on; the next answer is for the next request, not an ERROR for the cancelled one.
    handler.hold = false;
    const next = requestEnvelope('/next');
    link.send(next);
    const answer = await link.envelope(1);
    assert.equal(answer.correlationId, next.id);
    assert.equal(answer.type, MessageType.RESPONSE);
  });

  it('turns a handler failure into an ERROR envelope carrying its code', async () => {
    handler.hold = true;
    const link = raw();
    link.send(helloEnvelope(PROTOCOL_MAJOR, 0));
    await link.envelope(0);
    const request = requestEnvelope('/app-down');
    const seenNow = handler.nextRequest();
    link.send(request);
    (await seenNow).fail(new MeshError('APP_UNAVAILABLE', 'connect ECONNREFUSED 127.0.0.1:8080'));
    const error = await link.envelope(1);
    assert.equal(error.type, MessageType.ERROR);
    assert.equal(error.correlationId, request.id);
    assert.deepEqual({ code: error.error?.code, message: error.error?.message }, { code: 'APP_UNAVAILABLE', message: 'connect ECONNREFUSED 127.0.0.1:8080' });
  });
});

describe('MeshServer heartbeats', () => {
  it('sends HEARTBEATs on an idle link after HELLO', async () => {
    const { server, address } = await startServer(new FakeInboundHandler(), 0, { heartbeatIntervalMs: 20, unhealthyAfterMs: 30_000 });
    const link = new RawLink(address);
    try {
      link.send(helloEnvelope(PROTOCOL_MAJOR, 0));
      assert.equal((await link.envelope(0)).type, MessageType.HELLO);
      const next = [await link.envelope(1), await link.envelope(2), await link.envelope(3)];
      assert.deepEqual(next.map((e) => e.type), [MessageType.HEARTBEAT, MessageType.HEARTBEAT, MessageType.HEARTBEAT]);
    } finally {
      link.close();
      await server.close();
    }
  });

  it('sends nothing before HELLO, and closes a link that stays silent past unhealthyAfter', async () => {
    const { server, address } = await startServer(new FakeInboundHandler(), 0, { heartbeatIntervalMs: 20, unhealthyAfterMs: 60 });
    const link = new RawLink(address);
    try {
      link.stream.write({ envelopes: [] }); // open the HTTP/2 stream, but never say HELLO
      const status = await withTimeout(link.closed, 'the server to drop a silent link');
      assert.equal(status.code, grpc.status.OK);
      assert.deepEqual(link.received, [], 'no heartbeats to a peer that never said HELLO');
    } finally {
      link.close();
      await server.close();
    }
  });
});

describe('MeshServer.drain', () => {
  it('sends DRAIN to linked peers, refuses new REQUESTs with SHUTTING_DOWN, and waits for calls in flight', async () => {
    const handler = new FakeInboundHandler();
    handler.hold = true;
    const { server, address } = await startServer(handler);
    const link = openLink(address);
    const raws: RawLink[] = [];
    try {
      const states = watchStates(link);
      await link.whenReady(5000);
      const inFlight = link.call(requestEnvelope('/in-flight', 'kept'));
      const seen = await handler.nextRequest();

      let drained = false;
      const draining = server.drain(60_000).then(() => { drained = true; });
      await states.reach('draining');
      assert.equal(link.state, 'draining');

      // A draining peer link takes no new calls...
      const refused = await link.call(requestEnvelope('/new')).then(() => undefined, (err: unknown) => err);
      assert.ok(refused instanceof MeshError);
      assert.equal(refused.code, 'SHUTTING_DOWN');

      // ...and a link that connects now is told DRAIN right after HELLO, and its REQUESTs are refused.
      const late = new RawLink(address);
      raws.push(late);
      late.send(helloEnvelope(PROTOCOL_MAJOR, 0));
      assert.equal((await late.envelope(0)).type, MessageType.HELLO);
      assert.equal((await late.envelope(1)).type, MessageType.DRAIN);
      const lateRequest = requestEnvelope('/late');
      late.send(lateRequest);
      const lateAnswer = await late.envelope(2);
      assert.equal(lateAnswer.type, MessageType.ERROR);
      assert.equal(lateAnswer.correlationId, lateRequest.id);
      assert.equal(lateAnswer.error?.code, 'SHUTTING_DOWN');
      assert.equal(handler.seen.length, 1, 'the refused requests never reached the app');

      // The call in flight still completes, and only then does drain() resolve.
      assert.equal(drained, false, 'drain waits for the call in flight');
      assert.equal(server.inFlight, 1);
      seen.respond({ id: newMessageId(), type: MessageType.RESPONSE, correlationId: seen.request.id, http: { status: 200 }, payload: Buffer.from('done') });
      const response = await inFlight;
      assert.equal(Buffer.from(response.payload!).toString(), 'done');
      await withTimeout(draining, 'drain() to resolve');
      assert.equal(server.inFlight, 0);
    } finally {
      for (const r of raws) r.close();
      link.close();
      await server.close();
    }
  });
});

describe('MeshServer compression (raw Link client)', () => {
  let handler: FakeInboundHandler;
  let server: MeshServer;
  let address: string;
  const cleanups: (() => void)[] = [];
  const json = Buffer.from(JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ id: i, name: `item ${i}`, price: i % 97, tags: ['a', 'b'] }))));

  before(async () => {
    handler = new FakeInboundHandler();
    ({ server, address } = await startServer(handler));
  });
  after(() => server.close());
  afterEach(() => { for (const cleanup of cleanups.splice(0)) cleanup(); });

  /** A raw link past HELLO, announcing `capabilities`. */
  async function ready(capabilities: string[]): Promise<RawLink> {
    const link = new RawLink(address);
    cleanups.push(() => link.close());
    link.send({ ...helloEnvelope(PROTOCOL_MAJOR, 0), hello: { major: PROTOCOL_MAJOR, minor: 0, capabilities, node: 'raw-client' } });
    const hello = await link.envelope(0);
    assert.ok(hello.hello?.capabilities?.includes('gzip') && hello.hello.capabilities.includes('lz4'), 'the server announces gzip and lz4');
    return link;
  }

  /** The envelope answering `request`, whenever it comes (a HEARTBEAT may come first on a slow machine). */
  async function answerTo(link: RawLink, request: Envelope): Promise<Envelope> {
    for (let i = 1; ; i++) {
      const envelope = await link.envelope(i);
      if (envelope.correlationId === request.id) return envelope;
    }
  }

  for (const [name, code] of [['gzip', Compression.GZIP], ['lz4', Compression.LZ4]] as const) {
    it(`${name}: a compressed REQUEST reaches the app decompressed; the answer comes back compressed`, async () => {
      const link = await ready(['batch', name]);
      const compressed = compressPayload(json, code, 0);
      assert.equal(compressed.compression, code);
      const request = { ...requestEnvelope('/compressed'), ...compressed, acceptCompression: code, compressMinBytes: 1024 };
      const seen = handler.nextRequest();
      link.send(request);
      const app = (await seen).request;
      assert.deepEqual(Buffer.from(app.payload!), json, 'the app gets the original bytes');
      assert.equal(app.compression, Compression.IDENTITY);

      const response = await answerTo(link, request);
      assert.equal(response.type, MessageType.RESPONSE);
      assert.equal(response.compression, code, 'the echoed answer is compressed on the wire');
      assert.ok(response.payload!.byteLength < json.byteLength / 2);
      assert.deepEqual(Buffer.from(decompressPayload(response.payload!, response.compression)), json);
    });
  }

  it('answers uncompressed below compress_min_bytes, and when the caller did not announce the algorithm', async () => {
    const link = await ready(['batch', 'gzip']);
    const smallRequest = { ...requestEnvelope('/small', 'x'.repeat(2000)), acceptCompression: Compression.GZIP, compressMinBytes: 4096 };
    link.send(smallRequest);
    const small = await answerTo(link, smallRequest);
    assert.equal(small.compression, Compression.IDENTITY);
    assert.equal(Buffer.from(small.payload!).toString(), 'x'.repeat(2000));
    // lz4 accepted, but this client announced only gzip: the server does not use it.
    const lz4Request = { ...requestEnvelope('/lz4', json.toString()), acceptCompression: Compression.LZ4, compressMinBytes: 0 };
    link.send(lz4Request);
    const plain = await answerTo(link, lz4Request);
    assert.equal(plain.compression, Compression.IDENTITY);
    assert.deepEqual(Buffer.from(plain.payload!), json);
  });

  it('answers a corrupt compressed REQUEST with ERROR PROTOCOL_ERROR, without calling the app, and the link goes on', async () => {
    const link = await ready(['batch', 'gzip', 'lz4']);
    const before = handler.seen.length;
    const corrupt = { ...requestEnvelope('/corrupt'), payload: Buffer.from('not gzip'), compression: Compression.GZIP };
    const unknown = { ...requestEnvelope('/unknown'), payload: Buffer.from('zz'), compression: 9 as Compression };
    link.send(corrupt, unknown);
    const errors = [await answerTo(link, corrupt), await answerTo(link, unknown)];
    for (const error of errors) {
      assert.equal(error.type, MessageType.ERROR);
      assert.equal(error.error?.code, 'PROTOCOL_ERROR');
    }
    assert.match(errors[1]!.error?.message ?? '', /unknown payload compression 9/);
    assert.equal(handler.seen.length, before, 'the app never saw them');
    const next = requestEnvelope('/next', 'fine');
    link.send(next);
    const response = await answerTo(link, next);
    assert.equal(response.type, MessageType.RESPONSE);
  });

  it('refuses a gzip bomb (100 MiB of zeros) with PROTOCOL_ERROR', async () => {
    const bomb = { ...requestEnvelope('/bomb'), payload: gzipSync(Buffer.alloc(100 * 1024 * 1024)), compression: Compression.GZIP };
    const link = await ready(['batch', 'gzip']);
    const before = handler.seen.length;
    link.send(bomb);
    const error = await answerTo(link, bomb);
    assert.equal(error.error?.code, 'PROTOCOL_ERROR');
    assert.match(error.error?.message ?? '', /inflates past/);
    assert.equal(handler.seen.length, before);
  });

  it('fails a Stream call whose head claims a compressed payload (streams are never compressed)', async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    const stream = client.makeBidiStreamRequest(STREAM_METHOD, encodeFrame, decodeFrame, new grpc.Metadata());
    stream.on('error', () => {});
    const frame = new Promise<Frame>((resolve) => stream.once('data', resolve));
    stream.write({ head: { ...requestEnvelope('/stream'), ...compressPayload(json, Compression.GZIP, 0) } });
    const answer = await withTimeout(frame, 'the Stream answer');
    assert.equal(answer.error?.code, 'PROTOCOL_ERROR');
  });
});

describe('MeshServer credentials (rotation)', () => {
  it('keeps earlier credentials only while connections made with them are open', async () => {
    const { server, address } = await startServer(new FakeInboundHandler());
    try {
      const link = new RawLink(address);
      link.send(helloEnvelope(PROTOCOL_MAJOR, 0));
      await link.envelope(0); // a connection made with the first credentials
      server.setCredentials(grpc.ServerCredentials.createInsecure());
      assert.equal(server.credentialGenerations, 2, 'the first set stays for its open connection');
      server.setCredentials(grpc.ServerCredentials.createInsecure());
      assert.equal(server.credentialGenerations, 2, 'a set that accepted no connection is released at once');
      // The open stream goes on over its connection.
      const request = requestEnvelope('/after-rotation', 'still here');
      link.send(request);
      assert.equal(Buffer.from((await link.envelope(1)).payload!).toString(), 'still here');
      link.close();
      await until(async () => server.credentialGenerations === 1, { message: 'the first set was released once its connection closed' });
    } finally {
      await server.close();
    }
  });
});
