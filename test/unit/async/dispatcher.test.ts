import { describe, it, mock, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Dispatcher } from '../../../sidecar/src/async/dispatcher.ts';
import { openMessageStore } from '../../../sidecar/src/async/store.ts';
import type { CallPipeline, CallResult, OutboundCall } from '../../../sidecar/src/call/pipeline.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import type { AsyncPolicy } from '../../../sidecar/src/policy/types.ts';
import type { MessageStore, NewMessage, PriorityName } from '../../../sidecar/src/async/types.ts';
import { MemoryStoreDouble } from '../../helpers/memory-store.ts';

const logger = pino({ level: 'silent' });
const NO_WAIT: AsyncPolicy = { attempts: 3, backoffBaseMs: 0, backoffMaxMs: 0, maxAgeMs: 0, attemptTimeoutMs: 1000 };

/** A pipeline whose calls the test answers one by one. */
function heldPipeline() {
  const calls: { call: OutboundCall; answer: (status: number) => void; fail: (err: unknown) => void }[] = [];
  let wake: (() => void) | undefined;
  const pipeline: CallPipeline = (call) => new Promise<CallResult>((resolve, reject) => {
    calls.push({ call, answer: (status) => resolve({ status, headers: [], body: Buffer.from(`answer ${status}`), endpoint: '127.0.0.1:1' }), fail: reject });
    wake?.();
  });
  const waitForCalls = async (n: number) => {
    while (calls.length < n) await new Promise<void>((resolve) => { wake = resolve; });
  };
  return { pipeline, calls, waitForCalls };
}

/** Lets every settled promise chain run (store writes, the next pump). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

let counter = 0;
function message(overrides: Partial<NewMessage> = {}): NewMessage {
  counter++;
  return {
    id: `01TEST${String(counter).padStart(20, '0')}`, service: 'payments', namespace: 'default', priority: 'medium', createdAt: Date.now(),
    request: { method: 'POST', path: `/m/${counter}`, authority: 'payments', headers: [], body: Buffer.from(`body ${counter}`) },
    ...overrides,
  };
}

interface Options {
  policy?: AsyncPolicy;
  concurrency?: number;
  onSettled?: () => void;
}

function newDispatcher(store: MessageStore, pipeline: CallPipeline, options: Options): Dispatcher {
  return new Dispatcher({
    store, pipeline, policy: () => options.policy ?? NO_WAIT, endpoints: () => [{ address: '127.0.0.1:1', labels: {}, weight: 1 }],
    concurrency: options.concurrency ?? 1, logger, ...(options.onSettled ? { onSettled: options.onSettled } : {}),
  });
}

async function setup(options: Options = {}) {
  const store = new MemoryStoreDouble();
  const held = heldPipeline();
  const dispatcher = newDispatcher(store, held.pipeline, options);
  const send = async (m: NewMessage) => {
    await store.accept([m]);
    dispatcher.add((await store.unfinished()).find((s) => s.id === m.id)!);
    return m;
  };
  return { store, dispatcher, send, ...held };
}

/** async.maxAge 10 s; with Math.random at 0.5 every back-off is 500 ms. */
const TEN_SECONDS: AsyncPolicy = { attempts: 10, backoffBaseMs: 1000, backoffMaxMs: 1000, maxAgeMs: 10_000, attemptTimeoutMs: 1000 };
const T0 = 1_000_000;

/**
 * A message accepted at T0 (the clock is mocked from there) in one SQLite store, and dispatchers over
 * it as sidecars started one after the other on the same data directory would have (the age limit
 * must survive what a restart reads back from disk). `refuse(i)` refuses the i-th call (a refusal
 * uses no attempt) and resolves once that settlement is on disk.
 */
async function restartable(t: TestContext) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-dispatcher-'));
  const store = await openMessageStore(dir, { maxBytes: 0 });
  t.after(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  t.mock.method(Math, 'random', () => 0.5);
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  const m = message({ createdAt: T0 });
  await store.accept([m]);
  const { pipeline, calls, waitForCalls } = heldPipeline();
  let written: (() => void) | undefined;
  const dispatcher = () => {
    const d = newDispatcher(store, pipeline, { policy: TEN_SECONDS, onSettled: () => written?.() });
    t.after(() => d.stop());
    return d;
  };
  const refuse = async (i: number) => {
    await waitForCalls(i + 1);
    const settled = new Promise<void>((resolve) => { written = resolve; });
    calls[i]!.fail(new MeshError('CIRCUIT_OPEN', 'the breaker is open'));
    await settled;
  };
  return { store, m, dispatcher, refuse };
}

describe('Dispatcher', () => {
  it('delivers once with the message id and attempt, and records the answer', async () => {
    const { store, send, calls, waitForCalls } = await setup();
    const m = await send(message());
    await waitForCalls(1);
    assert.equal(calls[0]!.call.delivery?.messageId, m.id);
    assert.equal(calls[0]!.call.delivery?.attempt, 1);
    assert.equal(calls[0]!.call.path, m.request.path);
    assert.deepEqual(calls[0]!.call.body, { kind: 'inline', bytes: m.request.body });
    calls[0]!.answer(201);
    await settle();
    const stored = await store.get(m.id);
    assert.equal(stored?.state, 'delivered');
    assert.equal(stored?.attempts, 1);
    assert.equal(stored?.response?.status, 201);
  });

  it('a high-priority message leaves at once while the low lane is full', async () => {
    const { send, calls, waitForCalls } = await setup({ concurrency: 1 });
    await send(message({ priority: 'low' }));
    await send(message({ priority: 'low' }));
    await waitForCalls(1);
    const high = await send(message({ priority: 'high' }));
    await waitForCalls(2);
    assert.equal(calls[1]!.call.delivery?.messageId, high.id, 'high went before the second low one');
    assert.equal(calls[1]!.call.priority, 'high');
  });

  it('takes lanes high first when slots free up', async () => {
    const { send, calls, waitForCalls } = await setup({ concurrency: 1 });
    const order: PriorityName[] = ['low', 'medium', 'high'];
    for (const priority of order) await send(message({ priority }));
    await waitForCalls(3);
    assert.deepEqual(calls.map((c) => c.call.priority), ['low', 'medium', 'high'], 'each lane has its own slot');
  });

  it('keeps the order of one ordering key through retries', async () => {
    const { store, send, calls, waitForCalls } = await setup({ concurrency: 8 });
    const a = await send(message({ orderingKey: 'k' }));
    const b = await send(message({ orderingKey: 'k' }));
    const other = await send(message({ orderingKey: 'other' }));
    await waitForCalls(2);
    assert.deepEqual(calls.map((c) => c.call.delivery?.messageId), [a.id, other.id], 'b waits for a; another key does not');
    calls[0]!.answer(503); // a fails: it is retried before b may go
    await waitForCalls(3);
    assert.equal(calls[2]!.call.delivery?.messageId, a.id);
    assert.equal(calls[2]!.call.delivery?.attempt, 2);
    calls[2]!.answer(200);
    await waitForCalls(4);
    assert.equal(calls[3]!.call.delivery?.messageId, b.id);
    calls[3]!.answer(200);
    await settle();
    assert.equal((await store.get(b.id))?.state, 'delivered');
  });

  it('retries 5xx, 429 and mesh errors up to the attempts, then makes a dead letter', async () => {
    const { store, send, calls, waitForCalls } = await setup();
    const m = await send(message());
    await waitForCalls(1);
    calls[0]!.answer(500);
    await waitForCalls(2);
    calls[1]!.answer(429);
    await waitForCalls(3);
    calls[2]!.fail(new MeshError('LINK_BROKEN', 'the link broke with it in flight'));
    await settle();
    const stored = await store.get(m.id);
    assert.equal(stored?.state, 'dead');
    assert.equal(stored?.attempts, 3);
    assert.equal(stored?.lastError?.code, 'LINK_BROKEN');
    assert.equal(calls.length, 3);
  });

  it('refusals (circuit open, no endpoint) delay a message without using up its attempts', async () => {
    const { store, send, calls, waitForCalls } = await setup();
    const m = await send(message());
    for (let i = 0; i < 5; i++) {
      await waitForCalls(i + 1);
      calls[i]!.fail(new MeshError(i % 2 ? 'CIRCUIT_OPEN' : 'NO_HEALTHY_ENDPOINT', 'nothing to send it to'));
    }
    await waitForCalls(6);
    assert.equal((await store.get(m.id))?.attempts, 0, 'five refusals, no attempt used');
    assert.equal((await store.get(m.id))?.state, 'queued');
    calls[5]!.answer(200);
    await settle();
    assert.equal((await store.get(m.id))?.state, 'delivered');
  });

  it('a redelivery after an unknown outcome prefers the replica that may have run it; after a 5xx it does not', async () => {
    const { send, calls, waitForCalls } = await setup();
    await send(message());
    await waitForCalls(1);
    calls[0]!.call.delivery!.onSent!('10.0.0.1:15002');
    calls[0]!.fail(new MeshError('LINK_BROKEN', 'cut'));
    await waitForCalls(2);
    assert.equal(calls[1]!.call.delivery?.endpoint, '10.0.0.1:15002');
    assert.equal(calls[1]!.call.delivery?.pinned, false);
    calls[1]!.call.delivery!.onSent!('10.0.0.1:15002');
    calls[1]!.answer(503);
    await waitForCalls(3);
    assert.equal(calls[2]!.call.delivery?.endpoint, undefined, 'that replica answered and kept no record');
  });

  it('a store that fails a write keeps the message and tries again', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 5_000_000 });
    const { store, send, calls, waitForCalls } = await setup();
    const m = await send(message());
    await waitForCalls(1);
    const realSettle = store.settle.bind(store);
    let failNext = true;
    store.settle = async (id, settlement) => {
      if (failNext) { failNext = false; throw Object.assign(new Error('disk I/O error'), { code: 'STORAGE_UNAVAILABLE' }); }
      return realSettle(id, settlement);
    };
    calls[0]!.answer(200);
    await settle();
    assert.equal((await store.get(m.id))?.state, 'queued');
    t.mock.timers.tick(1000);
    await waitForCalls(2);
    calls[1]!.answer(200);
    await settle();
    assert.equal((await store.get(m.id))?.state, 'delivered');
  });

  it('a final 4xx fails the message without retrying', async () => {
    const { store, send, calls, waitForCalls } = await setup();
    const m = await send(message());
    await waitForCalls(1);
    calls[0]!.answer(422);
    await settle();
    const stored = await store.get(m.id);
    assert.equal(stored?.state, 'failed');
    assert.equal(stored?.lastError?.status, 422);
    assert.equal(stored?.response?.status, 422);
    assert.equal(calls.length, 1);
  });

  it('waits the back-off before a redelivery', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    const policy: AsyncPolicy = { attempts: 5, backoffBaseMs: 1000, backoffMaxMs: 1000, maxAgeMs: 0, attemptTimeoutMs: 1000 };
    t.mock.method(Math, 'random', () => 0.5); // the back-off is then exactly 500 ms
    const { store, send, calls, waitForCalls } = await setup({ policy });
    const m = await send(message());
    await waitForCalls(1);
    calls[0]!.answer(503);
    await settle();
    assert.equal((await store.get(m.id))?.nextAttemptAt, 1_000_500);
    t.mock.timers.tick(499);
    await settle();
    assert.equal(calls.length, 1, 'not before the back-off');
    t.mock.timers.tick(1);
    await waitForCalls(2);
    assert.equal(calls[1]!.call.delivery?.attempt, 2);
  });

  it('start() picks up what the store still holds (a restart)', async () => {
    const { store, dispatcher, calls, waitForCalls } = await setup({ concurrency: 4 });
    const left = [message(), message()];
    await store.accept(left);
    await dispatcher.start();
    await waitForCalls(2);
    assert.deepEqual(calls.map((c) => c.call.delivery?.messageId).sort(), left.map((m) => m.id).sort());
  });

  it('a message only ever refused still dies at async.maxAge counted from its acceptance, across a restart', async (t) => {
    const { store, m, dispatcher, refuse } = await restartable(t);
    const before = dispatcher();
    await before.start();
    t.mock.timers.tick(6_000);
    await refuse(0);
    const refused = await store.get(m.id);
    assert.deepEqual([refused?.state, refused?.attempts, refused?.updatedAt], ['queued', 0, T0 + 6_000], 'no attempt used, updatedAt moved');
    await before.stop();

    await dispatcher().start(); // the restart: it reads back attempts 0 and an updatedAt past createdAt
    t.mock.timers.tick(3_600);
    await refuse(1); // the next try would come 10.1 s after acceptance
    const stored = await store.get(m.id);
    assert.equal(stored?.state, 'dead', 'the restart did not give it a fresh age');
    assert.equal(stored.attempts, 0);
    assert.match(stored.lastError?.message ?? '', /maximum age of 10000 ms/);
  });

  it('a replayed dead letter counts its age from the replay, across a restart too', async (t) => {
    const { store, m, dispatcher, refuse } = await restartable(t);
    await store.settle(m.id, { state: 'dead', attempts: 10, nextAttemptAt: T0 });
    t.mock.timers.tick(20_000);
    const replayed = await store.replay(m.id, Date.now());
    assert.equal(replayed?.replayedAt, T0 + 20_000);
    const before = dispatcher();
    before.add(replayed);
    t.mock.timers.tick(5_000);
    await refuse(0); // 25.5 s after acceptance, 5.5 s after the replay
    const refused = await store.get(m.id);
    assert.deepEqual([refused?.state, refused?.updatedAt], ['queued', T0 + 25_000], 'a fresh age after the replay');
    await before.stop();

    await dispatcher().start();
    t.mock.timers.tick(4_600);
    await refuse(1); // the next try would come 10.1 s after the replay (5.1 s after the last refusal)
    const stored = await store.get(m.id);
    assert.equal(stored?.state, 'dead');
    assert.equal(stored.replayedAt, T0 + 20_000);
    assert.match(stored.lastError?.message ?? '', /maximum age of 10000 ms/);
  });

  it('a broadcast copy whose replica left discovery fails instead of going elsewhere', async () => {
    const store = new MemoryStoreDouble();
    const pipeline = mock.fn<CallPipeline>(async () => ({ status: 200, headers: [], body: Buffer.alloc(0), endpoint: 'x' }));
    const dispatcher = new Dispatcher({ store, pipeline, policy: () => NO_WAIT, endpoints: () => [], concurrency: 1, logger });
    const m = message({ endpoint: '127.0.0.1:9', topic: 't', eventId: 'e' });
    await store.accept([m]);
    await dispatcher.start();
    for (let i = 0; i < 5 && (await store.get(m.id))?.state === 'queued'; i++) await settle();
    assert.equal((await store.get(m.id))?.state, 'failed');
    assert.equal(pipeline.mock.callCount(), 0);
  });

  it('stop(grace) lets a running delivery finish and starts no new one', async () => {
    const { store, dispatcher, send, waitForCalls, calls } = await setup({ concurrency: 1 });
    const first = await send(message());
    const second = await send(message());
    await waitForCalls(1);
    const stopped = dispatcher.stop(10_000);
    calls[0]!.answer(200);
    await stopped;
    assert.equal((await store.get(first.id))?.state, 'delivered');
    assert.equal((await store.get(second.id))?.state, 'queued');
    assert.equal(calls.length, 1);
  });

  it('stop() leaves the running delivery queued', async () => {
    const { store, dispatcher, send, waitForCalls, calls } = await setup();
    const m = await send(message());
    await waitForCalls(1);
    const stopped = dispatcher.stop();
    calls[0]!.fail(new MeshError('SHUTTING_DOWN', 'stop'));
    await stopped;
    assert.equal((await store.get(m.id))?.state, 'queued');
    assert.equal(store.settlements.length, 0);
  });
});
