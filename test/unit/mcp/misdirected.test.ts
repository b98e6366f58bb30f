// The called sidecar refuses calls addressed to a service it does not serve (421 MISDIRECTED), on the
// link and on Stream calls, before its app sees anything.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MessageType, type Envelope } from '../../../sidecar/src/mcp/codec.ts';
import type { PeerRefusal } from '../../../sidecar/src/mcp/version.ts';
import { streamCall } from '../../../sidecar/src/mcp/stream-client.ts';
import { FakeInboundHandler, helloEnvelope, meshRejection, openLink, RawLink, requestEnvelope, startServer } from './fixtures.ts';

/** The fixtures' server is payments.shop; it also serves ledger.shop here. */
async function withServer(body: (ctx: { handler: FakeInboundHandler; address: string; refused: PeerRefusal[] }) => Promise<void>): Promise<void> {
  const handler = new FakeInboundHandler();
  const refused: PeerRefusal[] = [];
  const { server, address } = await startServer(handler, 0, { aliases: ['ledger.shop'], onRefused: (reason) => refused.push(reason) });
  try {
    await body({ handler, address, refused });
  } finally {
    await server.close();
  }
}

function addressedTo(destination: string | undefined): Envelope {
  return { ...requestEnvelope('/charge'), destination };
}

describe('misdirected calls', () => {
  test('a REQUEST on a link for another service gets an ERROR MISDIRECTED (421); the app sees nothing', async () => {
    await withServer(async ({ handler, address, refused }) => {
      const raw = new RawLink(address);
      try {
        raw.send(helloEnvelope(1, 0));
        await raw.envelope(0);
        const request = addressedTo('orders.shop');
        raw.send(request);
        const answer = await raw.envelope(1);
        assert.equal(answer.type, MessageType.ERROR);
        assert.equal(answer.correlationId, request.id);
        assert.equal(answer.error?.code, 'MISDIRECTED');
        assert.match(answer.error?.message ?? '', /payments\.shop does not serve orders\.shop/);
        assert.equal(handler.seen.length, 0, 'the app was not called');
        assert.deepEqual(refused, ['misdirected']);
      } finally {
        raw.close();
      }
    });
  });

  test('the own service, an alias (any case) and an envelope without destination (older peers) pass', async () => {
    await withServer(async ({ handler, address, refused }) => {
      const link = openLink(address);
      try {
        await link.whenReady(5000);
        for (const destination of ['payments.shop', 'ledger.shop', 'Payments.Shop', undefined]) {
          const response = await link.call(addressedTo(destination));
          assert.equal(response.type, MessageType.RESPONSE, `destination ${destination}`);
        }
        assert.equal(handler.seen.length, 4);
        assert.deepEqual(refused, []);
      } finally {
        link.close();
      }
    });
  });

  test('through a PeerLink the caller gets MeshError MISDIRECTED with status 421', async () => {
    await withServer(async ({ handler, address }) => {
      const link = openLink(address);
      try {
        await link.whenReady(5000);
        const err = await meshRejection(link.call(addressedTo('payments.other')));
        assert.equal(err.code, 'MISDIRECTED');
        assert.equal(err.status, 421);
        assert.equal(handler.seen.length, 0);
        assert.equal(link.state, 'ready', 'one refused call does not cost the link');
      } finally {
        link.close();
      }
    });
  });

  test('a Stream call for another service is refused before the handler runs', async () => {
    let streamed = 0;
    const handler = new FakeInboundHandler();
    handler.stream = () => { streamed++; return Promise.reject(new Error('the app must not be called')); };
    const refused: PeerRefusal[] = [];
    const { server, address } = await startServer(handler, 0, { onRefused: (reason) => refused.push(reason) });
    const link = openLink(address);
    try {
      await link.whenReady(5000);
      const err = await meshRejection(streamCall(link.openStream(), addressedTo('orders.shop'), null, { signal: new AbortController().signal, idleTimeoutMs: 10_000 }));
      assert.equal(err.code, 'MISDIRECTED');
      assert.equal(streamed, 0);
      assert.deepEqual(refused, ['misdirected']);
    } finally {
      link.close();
      await server.close();
    }
  });
});
