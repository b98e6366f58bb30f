// Parked response bodies (a unary answer too large to inline, pulled afterwards over a Stream call):
// their ids are unguessable, and only the caller whose call produced one may pull it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { AppForwarder } from '../../../sidecar/src/inbound/app-forwarder.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import * as grpc from '@grpc/grpc-js';
import { decodeFrame, encodeFrame, MessageType, type Envelope } from '../../../sidecar/src/mcp/codec.ts';
import { newBodyStreamId, newMessageId } from '../../../sidecar/src/mcp/ids.ts';
import type { CallOrigin } from '../../../sidecar/src/mcp/server.ts';
import { STREAM_METHOD, type PeerRefusal } from '../../../sidecar/src/mcp/version.ts';
import { streamCall } from '../../../sidecar/src/mcp/stream-client.ts';
import { NO_OBSERVER } from '../../../sidecar/src/telemetry/observer.ts';
import { startTestApp, type TestApp } from '../../helpers/apps.ts';
import { hashStream, patternSha256 } from '../../helpers/data.ts';
import { meshRejection, openLink, silentLogger, startServer, withTimeout } from '../mcp/fixtures.ts';

const BIG = 200_000; // well over the 64 KiB inline limit: the answer is parked

function download(bytes = BIG): Envelope {
  return { id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: 'orders.shop', http: { method: 'GET', path: `/download?bytes=${bytes}`, authority: 'payments' } };
}

function forwarder(app: TestApp, options: { parkTimeoutMs?: number; logger?: Logger } = {}): AppForwarder {
  return new AppForwarder({
    host: '127.0.0.1', port: app.port, connections: 4, inlineBodyBytes: 64 * 1024, connectTimeoutMs: 1000,
    parkTimeoutMs: options.parkTimeoutMs ?? 10_000, logger: options.logger ?? silentLogger, service: 'payments.shop', observer: NO_OBSERVER,
  });
}

async function parkedId(handler: AppForwarder, origin: CallOrigin): Promise<string> {
  const response = await handler.unary(download(), new AbortController().signal, origin);
  const id = response.http?.bodyStreamId;
  assert.ok(id, 'the answer was parked');
  return id;
}

const EXPECTED = { sha256: patternSha256(BIG, 1), bytes: BIG };

describe('parked response bodies', () => {
  let app: TestApp;
  before(async () => { app = await startTestApp(); });
  after(async () => { await app.close(); });

  test('ids are 128 random bits, not time-ordered ULIDs', async () => {
    const handler = forwarder(app);
    try {
      const origin = { identity: null, connection: '127.0.0.1:40000' };
      const ids = [await parkedId(handler, origin), await parkedId(handler, origin), newBodyStreamId(), newBodyStreamId()];
      for (const id of ids) {
        assert.match(id, /^[A-Za-z0-9_-]{22}$/, `${id} is 22 base64url characters`);
        assert.equal(Buffer.from(id, 'base64url').byteLength, 16, '128 bits');
      }
      assert.equal(new Set(ids).size, ids.length);
      // A ULID made right after another shares its time prefix; random ids made in a row do not.
      const run = Array.from({ length: 64 }, () => newBodyStreamId());
      const sharedPrefix = run.slice(1).filter((id, i) => id.slice(0, 6) === run[i]!.slice(0, 6)).length;
      assert.ok(sharedPrefix <= 1, `${sharedPrefix} consecutive ids share a 36-bit prefix`);
    } finally {
      await handler.close();
    }
  });

  test('only the caller that made the call may pull its body; a refused pull leaves it for that caller', async () => {
    const handler = forwarder(app);
    try {
      const owner: CallOrigin = { identity: 'orders.shop', connection: '127.0.0.1:40001' };
      const id = await parkedId(handler, owner);
      const refusals: [CallOrigin, string][] = [
        [{ identity: 'intruder.shop', connection: owner.connection }, 'another identity on the same connection'],
        [{ identity: owner.identity, connection: '127.0.0.1:40002' }, 'the same identity on another connection'],
        [{ identity: null, connection: owner.connection }, 'no identity'],
      ];
      for (const [origin, what] of refusals) {
        assert.throws(() => handler.pull(id, origin), (err: unknown) => err instanceof MeshError && err.code === 'BODY_PULL_DENIED' && err.status === 403, what);
      }
      assert.throws(() => handler.pull(id), (err: unknown) => err instanceof MeshError && err.code === 'BODY_PULL_DENIED', 'no origin at all');
      const body = handler.pull(id, { ...owner });
      assert.ok(body, 'the owner still gets it');
      assert.deepEqual(await hashStream(body), EXPECTED);
      assert.equal(handler.pull(id, owner), undefined, 'taken once');
    } finally {
      await handler.close();
    }
  });

  test('a body nobody pulls is dropped after the park timeout', async () => {
    const lines: { msg: string; bodyStreamId?: string }[] = [];
    let onDropped!: () => void;
    const dropped = new Promise<void>((resolve) => { onDropped = resolve; });
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        const line = JSON.parse(chunk.toString()) as { msg: string };
        lines.push(line);
        if (line.msg.includes('never pulled')) onDropped();
        done();
      },
    });
    const handler = forwarder(app, { parkTimeoutMs: 50, logger: pino({ level: 'warn' }, sink) });
    try {
      const owner: CallOrigin = { identity: null, connection: '127.0.0.1:40003' };
      const id = await parkedId(handler, owner);
      await withTimeout(dropped, 'the park timeout');
      assert.equal(lines.find((l) => l.msg.includes('never pulled'))?.bodyStreamId, id);
      assert.equal(handler.pull(id, owner), undefined, 'gone, even for its owner');
    } finally {
      await handler.close();
    }
  });

  test('over real links: a pull from another connection is refused with BODY_PULL_DENIED and counted; the caller\'s own pull works', async () => {
    const handler = forwarder(app);
    const refused: PeerRefusal[] = [];
    const { server, address } = await startServer(handler, 0, { onRefused: (reason) => refused.push(reason) });
    const caller = openLink(address);
    // Another peer, on a connection of its own (a local subchannel pool: grpc-js would otherwise share
    // the caller's connection within this one process).
    const other = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    try {
      await caller.whenReady(5000);
      const response = await caller.call({ ...download(), destination: 'payments.shop' });
      const bodyStreamId = response.http?.bodyStreamId;
      assert.ok(bodyStreamId);
      const pull = (): Envelope => ({ id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), http: { bodyStreamId } });
      const options = { signal: new AbortController().signal, idleTimeoutMs: 10_000 };

      const denied = await meshRejection(streamCall(other.makeBidiStreamRequest(STREAM_METHOD, encodeFrame, decodeFrame), pull(), null, options));
      assert.equal(denied.code, 'BODY_PULL_DENIED');
      assert.deepEqual(refused, ['body_pull_denied']);

      const own = await streamCall(caller.openStream(), pull(), null, options);
      assert.deepEqual(await hashStream(own.body), EXPECTED, 'the rightful caller reads the whole body');
    } finally {
      caller.close();
      other.close();
      await server.close();
      await handler.close();
    }
  });
});
