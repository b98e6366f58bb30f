import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { DedupingHandler } from '../../../sidecar/src/inbound/dedup.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { MessageType, type Envelope } from '../../../sidecar/src/mcp/codec.ts';
import type { InboundHandler } from '../../../sidecar/src/mcp/server.ts';
import { MemoryStoreDouble } from '../../helpers/memory-store.ts';

const logger = pino({ level: 'silent' });

/** An app that answers `status` and counts the requests that reached it. */
function countingApp(status: () => number) {
  const seen: Envelope[] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const app: InboundHandler = {
    async unary(request) {
      seen.push(request);
      if (hold) await new Promise<void>((resolve) => { release = resolve; });
      return { id: `r${seen.length}`, type: MessageType.RESPONSE, correlationId: request.id, headers: [{ name: 'x-n', value: String(seen.length) }], payload: Buffer.from('ok'), http: { status: status() } };
    },
    stream: () => Promise.reject(new Error('not used')),
    pull: () => undefined,
  };
  return { app, seen, holdNext: () => { hold = true; }, release: () => { hold = false; release?.(); } };
}

function delivery(id: string, messageId: string | undefined, headers: Envelope['headers'] = []): Envelope {
  return { id, type: MessageType.REQUEST, source: 'orders.default', headers, http: { method: 'POST', path: '/x' }, ...(messageId ? { messageId, attempt: 1 } : {}) };
}

describe('DedupingHandler', () => {
  it('a redelivery of an answered message is answered from the record, not by the app', async () => {
    const store = new MemoryStoreDouble();
    const { app, seen } = countingApp(() => 200);
    let duplicates = 0;
    const handler = new DedupingHandler(app, { store: () => store, logger, onDuplicate: () => duplicates++ });
    const first = await handler.unary(delivery('a', 'M1'), new AbortController().signal);
    const again = await handler.unary(delivery('b', 'M1'), new AbortController().signal);
    assert.equal(seen.length, 1);
    assert.equal(duplicates, 1);
    assert.equal(first.http?.status, 200);
    assert.equal(again.http?.status, 200);
    assert.equal(again.correlationId, 'b', 'the answer goes to the redelivery');
    assert.equal(Buffer.from(again.payload!).toString(), 'ok');
    assert.ok(again.headers?.some((h) => h.name === 'mcp-mesh-duplicate'));
  });

  it('a retryable answer (5xx) is not recorded, so the redelivery reaches the app', async () => {
    const store = new MemoryStoreDouble();
    let status = 503;
    const { app, seen } = countingApp(() => status);
    const handler = new DedupingHandler(app, { store: () => store, logger, onDuplicate: () => {} });
    await handler.unary(delivery('a', 'M2'), new AbortController().signal);
    status = 200;
    await handler.unary(delivery('b', 'M2'), new AbortController().signal);
    assert.equal(seen.length, 2);
    assert.equal(store.seenRecords.size, 1);
  });

  it('a copy arriving while the first is still with the app waits for that answer', async () => {
    const store = new MemoryStoreDouble();
    const { app, seen, holdNext, release } = countingApp(() => 200);
    const handler = new DedupingHandler(app, { store: () => store, logger, onDuplicate: () => {} });
    holdNext();
    const first = handler.unary(delivery('a', 'M3'), new AbortController().signal);
    while (seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    const second = handler.unary(delivery('b', 'M3'), new AbortController().signal);
    release();
    const [one, two] = await Promise.all([first, second]);
    assert.equal(seen.length, 1);
    assert.equal(one.correlationId, 'a');
    assert.equal(two.correlationId, 'b');
  });

  it('the caller\'s Idempotency-Key is the key: two messages with one key reach the app once', async () => {
    const store = new MemoryStoreDouble();
    const { app, seen } = countingApp(() => 200);
    const handler = new DedupingHandler(app, { store: () => store, logger, onDuplicate: () => {} });
    await handler.unary(delivery('a', 'M4', [{ name: 'idempotency-key', value: 'order-7' }]), new AbortController().signal);
    await handler.unary(delivery('b', 'M5', [{ name: 'idempotency-key', value: 'order-7' }]), new AbortController().signal);
    assert.equal(seen.length, 1);
  });

  it('plain requests pass through untouched; without a store durable ones are refused', async () => {
    const { app, seen } = countingApp(() => 200);
    const handler = new DedupingHandler(app, { store: () => new MeshError('STORAGE_UNAVAILABLE', 'read-only'), logger, onDuplicate: () => {} });
    await handler.unary(delivery('a', undefined), new AbortController().signal);
    await handler.unary(delivery('b', undefined), new AbortController().signal);
    assert.equal(seen.length, 2);
    await assert.rejects(handler.unary(delivery('c', 'M6'), new AbortController().signal), (err: MeshError) => err.code === 'STORAGE_UNAVAILABLE');
    assert.equal(seen.length, 2, 'the refused message never reached the app');
  });
});

describe('DedupingHandler: keys and carrying through', () => {
  it('an empty Idempotency-Key counts as none; the caller\'s key is scoped by route and topic', async () => {
    const store = new MemoryStoreDouble();
    const { app, seen } = countingApp(() => 200);
    const handler = new DedupingHandler(app, { store: () => store, logger, onDuplicate: () => {} });
    const empty = [{ name: 'idempotency-key', value: '' }];
    await handler.unary(delivery('a', 'M7', empty), new AbortController().signal);
    await handler.unary(delivery('b', 'M8', empty), new AbortController().signal);
    const keyed = [{ name: 'idempotency-key', value: 'k1' }];
    await handler.unary({ ...delivery('c', 'M9', keyed), topic: 'orders' }, new AbortController().signal);
    await handler.unary({ ...delivery('d', 'M10', keyed), topic: 'prices' }, new AbortController().signal);
    assert.equal(seen.length, 4, 'no two of these are the same request');
  });

  it('a sender that gives up does not cut the app: the answer is recorded for the redelivery', async () => {
    const store = new MemoryStoreDouble();
    const { app, seen, holdNext, release } = countingApp(() => 200);
    const handler = new DedupingHandler(app, { store: () => store, logger, onDuplicate: () => {} });
    holdNext();
    const sender = new AbortController();
    const first = handler.unary({ ...delivery('a', 'M11'), deadlineMs: 100 }, sender.signal);
    while (seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    sender.abort(new MeshError('CLIENT_CLOSED', 'the sender gave up'));
    assert.equal(seen[0]!.deadlineMs, 60_100, 'the app call gets time beyond the sender\'s deadline');
    release();
    await first;
    assert.equal(store.seenRecords.size, 1);
    await handler.unary(delivery('b', 'M11'), new AbortController().signal);
    assert.equal(seen.length, 1);
  });
});
