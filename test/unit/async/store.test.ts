import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { openMessageStore, SqliteMessageStore } from '../../../sidecar/src/async/store.ts';
import { STORE_FILE, StorageError, type MessageStore, type NewMessage, type StoredMessage } from '../../../sidecar/src/async/types.ts';

/** A fresh directory, removed after the test. */
function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-store-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a store in `dir` (a fresh one by default) and closes it after the test. */
async function open(t: TestContext, dir = tempDir(t), maxBytes = 0): Promise<MessageStore> {
  const store = await openMessageStore(dir, { maxBytes });
  t.after(() => store.close());
  return store;
}

function message(id: string, fields: Partial<NewMessage> = {}): NewMessage {
  return {
    id,
    service: 'orders',
    namespace: 'shop',
    priority: 'medium',
    request: { method: 'POST', path: '/orders?x=1', authority: 'orders.shop', headers: [{ name: 'content-type', value: 'application/json' }], body: Buffer.from(`{"id":"${id}"}`) },
    createdAt: 1_000,
    ...fields,
  };
}

/** What get() should return right after accept(). */
function accepted(m: NewMessage, seq: number): StoredMessage {
  return { ...m, seq, state: 'queued', attempts: 0, nextAttemptAt: m.createdAt, updatedAt: m.createdAt };
}

const ids = (list: readonly { id: string }[]) => list.map((m) => m.id);

async function rejectsWith(promise: Promise<unknown>, code: StorageError['code'], pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof StorageError, `expected a StorageError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

/** Accepts the ids, then settles each one as given. */
async function seed(store: MessageStore, states: Record<string, 'queued' | 'delivered' | 'failed' | 'dead'>): Promise<void> {
  await store.accept(Object.keys(states).map((id) => message(id)));
  for (const [id, state] of Object.entries(states)) {
    if (state !== 'queued') await store.settle(id, { state, attempts: 1, nextAttemptAt: 1_000 });
  }
}

// A child process using the store: it cannot share this process's lock, and it can be killed.
const STORE_URL = new URL('../../../sidecar/src/async/store.ts', import.meta.url).href;
const CHILD = `
import { openMessageStore } from ${JSON.stringify(STORE_URL)};
const [mode, dir, count] = process.argv.slice(2);
if (mode === 'open') {
  try {
    const store = await openMessageStore(dir, { maxBytes: 0 });
    console.log('opened');
    await store.close();
  } catch (err) {
    console.log(err.code, err.message);
  }
} else {
  const store = await openMessageStore(dir, { maxBytes: 0 });
  const body = Buffer.alloc(1024, 7);
  await Promise.all(Array.from({ length: Number(count) }, (_, i) => store.accept([{
    id: 'child-' + i, service: 's', namespace: 'n', priority: 'low', createdAt: i,
    request: { method: 'POST', path: '/', authority: 's', headers: [], body },
  }])));
  console.log('accepted');
  // 'wait': stay up until killed; 'exit': leave the store open and let the process end by itself.
  if (mode === 'wait') setInterval(() => {}, 60_000);
}
`;

function spawnChild(t: TestContext, ...args: string[]) {
  const script = path.join(tempDir(t), 'child.ts');
  fs.writeFileSync(script, CHILD);
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, exited, nextLine: async () => (await lines.next()).value as string | undefined };
}

// The tables as schema version 1 made them (before replayed_at): the database an older sidecar left.
const SCHEMA_V1 = `
  CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'failed', 'dead')), priority TEXT NOT NULL, ordering_key TEXT,
    service TEXT NOT NULL, namespace TEXT NOT NULL, topic TEXT, event_id TEXT, endpoint TEXT, attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_error TEXT,
    method TEXT NOT NULL, path TEXT NOT NULL, authority TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL,
    response_status INTEGER, response_headers TEXT, response_body BLOB
  ) STRICT;
  CREATE INDEX outbox_state_seq ON outbox (state, seq);
  CREATE INDEX outbox_state_updated ON outbox (state, updated_at);
  CREATE TABLE seen (
    key TEXT PRIMARY KEY, message_id TEXT NOT NULL, at INTEGER NOT NULL, status INTEGER NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL
  ) STRICT;
  CREATE INDEX seen_at ON seen (at);
  PRAGMA user_version = 1;
`;

/** Runs `fn` on the database file in `dir` directly (no store may have it open). */
function withDatabase<T>(dir: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(path.join(dir, STORE_FILE));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

describe('openMessageStore', () => {
  it('round-trips every field of a message, with Buffers for bodies and absent optional fields left out', async (t) => {
    const store = await open(t);
    const full = message('full', {
      topic: 'order-placed', eventId: 'evt-1', endpoint: '10.0.0.7:8080', priority: 'high', orderingKey: 'customer-9',
      request: {
        method: 'PUT', path: '/a/b?c=d&e', authority: 'orders.shop:8080',
        headers: [{ name: 'x-dup', value: '1' }, { name: 'x-dup', value: '2' }, { name: 'x-unicode', value: 'é "quoted" ☃' }],
        body: Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      },
      createdAt: 1_700_000_000_123,
    });
    const bare = message('bare', { request: { method: 'GET', path: '/', authority: 'orders', headers: [], body: Buffer.alloc(0) } });
    await store.accept([full, bare]);

    assert.deepEqual(await store.get('full'), accepted(full, 1));
    const got = await store.get('bare');
    assert.deepEqual(got, accepted(bare, 2));
    for (const key of ['topic', 'eventId', 'endpoint', 'orderingKey', 'lastError', 'response']) assert.equal(key in got!, false, key);
    assert.ok(Buffer.isBuffer(got!.request.body));
    assert.equal(await store.get('nope'), undefined);
    assert.deepEqual(ids(await store.getMany(['bare', 'nope', 'full'])), ['bare', 'full']);
  });

  it('numbers messages in acceptance order', async (t) => {
    const store = await open(t);
    await store.accept([message('c'), message('a')]);
    await store.accept([message('b')]);
    assert.deepEqual((await store.unfinished()).map((m) => [m.id, m.seq]), [['c', 1], ['a', 2], ['b', 3]]);
  });

  it('lists only queued messages as unfinished, without requests or responses', async (t) => {
    const store = await open(t);
    await seed(store, { q1: 'queued', d: 'delivered', q2: 'queued', f: 'failed', x: 'dead' });
    await store.settle('q2', { state: 'queued', attempts: 1, nextAttemptAt: 5_000, lastError: { code: 'APP_UNAVAILABLE', message: 'refused' } });
    const unfinished = await store.unfinished();
    assert.deepEqual(ids(unfinished), ['q1', 'q2']);
    for (const m of unfinished) assert.ok(!('request' in m) && !('response' in m));
    assert.deepEqual(unfinished[1]!.lastError, { code: 'APP_UNAVAILABLE', message: 'refused' });
  });

  it('settles: back-off, then delivery with a response; an unknown id is a no-op', async (t) => {
    const store = await open(t);
    await store.accept([message('m')]);
    const before = Date.now();
    await store.settle('m', { state: 'queued', attempts: 1, nextAttemptAt: 9_000, lastError: { code: 'APP_STATUS', message: 'busy', status: 503 } });
    let m = await store.get('m');
    assert.equal(m?.state, 'queued');
    assert.equal(m.attempts, 1);
    assert.equal(m.nextAttemptAt, 9_000);
    assert.deepEqual(m.lastError, { code: 'APP_STATUS', message: 'busy', status: 503 });
    assert.ok(m.updatedAt >= before);

    const response = { status: 201, headers: [{ name: 'location', value: '/orders/1' }], body: Buffer.from([0, 1, 2, 255]) };
    await store.settle('m', { state: 'delivered', attempts: 2, nextAttemptAt: 9_000, response });
    m = await store.get('m');
    assert.equal(m?.state, 'delivered');
    assert.equal(m.attempts, 2);
    assert.deepEqual(m.response, response);
    assert.ok(Buffer.isBuffer(m.response.body));
    assert.equal('lastError' in m, false, 'a settlement replaces the previous attempt’s error');

    await store.settle('ghost', { state: 'dead', attempts: 9, nextAttemptAt: 0 });
    assert.deepEqual(await store.counts(), { queued: 0, delivered: 1, failed: 0, dead: 0 });
  });

  it('pages through dead letters, oldest first', async (t) => {
    const store = await open(t);
    await seed(store, { d1: 'dead', q: 'queued', d2: 'dead', d3: 'dead', ok: 'delivered', d4: 'dead', d5: 'dead' });
    const page1 = await store.deadLetters({ limit: 2 });
    assert.deepEqual(ids(page1), ['d1', 'd2']);
    const page2 = await store.deadLetters({ limit: 2, after: 'd2' });
    assert.deepEqual(ids(page2), ['d3', 'd4']);
    assert.deepEqual(ids(await store.deadLetters({ limit: 2, after: 'd4' })), ['d5']);
    assert.deepEqual(await store.deadLetters({ limit: 2, after: 'd5' }), []);
    assert.deepEqual(ids(await store.deadLetters({ limit: 10, after: 'q' })), ['d2', 'd3', 'd4', 'd5'], 'after: any message marks a place');
  });

  it('replays and deletes dead letters only', async (t) => {
    const store = await open(t);
    await seed(store, { d1: 'dead', q: 'queued', d2: 'dead', d3: 'dead', d4: 'dead' });
    await store.settle('d1', { state: 'dead', attempts: 5, nextAttemptAt: 3_000, lastError: { code: 'DEADLINE_EXCEEDED', message: 'too old' } });

    assert.equal(await store.replay('q', 7_000), undefined, 'not a dead letter');
    assert.equal(await store.replay('nope', 7_000), undefined);
    const replayed = await store.replay('d1', 7_000);
    assert.deepEqual({ ...replayed, lastError: undefined }, {
      id: 'd1', seq: 1, state: 'queued', priority: 'medium', service: 'orders', namespace: 'shop',
      attempts: 0, nextAttemptAt: 7_000, createdAt: 1_000, updatedAt: 7_000, replayedAt: 7_000, lastError: undefined,
    });
    assert.equal(replayed && 'request' in replayed, false);

    assert.equal(await store.deleteDead('q'), false, 'a queued message is not deleted');
    assert.equal(await store.deleteDead('d2'), true);
    assert.equal(await store.deleteDead('d2'), false);

    const all = await store.replayAll(8_000);
    assert.deepEqual(all.map((m) => [m.id, m.state, m.attempts, m.nextAttemptAt, m.replayedAt]), [['d3', 'queued', 0, 8_000, 8_000], ['d4', 'queued', 0, 8_000, 8_000]]);
    assert.deepEqual(ids(await store.unfinished()), ['d1', 'q', 'd3', 'd4']);

    await seed(store, { e1: 'dead', e2: 'dead' });
    assert.equal(await store.deleteAllDead(), 2);
    assert.equal(await store.deleteAllDead(), 0);
    assert.deepEqual(await store.counts(), { queued: 4, delivered: 0, failed: 0, dead: 0 });
  });

  it('counts messages by state', async (t) => {
    const store = await open(t);
    assert.deepEqual(await store.counts(), { queued: 0, delivered: 0, failed: 0, dead: 0 });
    await seed(store, { a: 'queued', b: 'queued', c: 'delivered', d: 'failed', e: 'failed', f: 'dead' });
    assert.deepEqual(await store.counts(), { queued: 2, delivered: 1, failed: 2, dead: 1 });
  });

  it('purges delivered and failed messages last updated before a time', async (t) => {
    const store = await open(t);
    t.mock.timers.enable({ apis: ['Date'], now: 10_000 }); // settle stamps updatedAt with Date.now()
    await seed(store, { oldOk: 'delivered', oldFailed: 'failed', oldDead: 'dead', q: 'queued' });
    t.mock.timers.setTime(20_000);
    await seed(store, { newOk: 'delivered' });
    assert.equal(await store.purgeFinished(10_000), 0, 'strictly before');
    assert.equal(await store.purgeFinished(15_000), 2);
    assert.deepEqual(ids(await store.getMany(['oldOk', 'oldFailed', 'oldDead', 'q', 'newOk'])), ['oldDead', 'q', 'newOk']);
  });

  it('remembers seen messages, overwrites by key and forgets old ones', async (t) => {
    const store = await open(t);
    const response = { status: 200, headers: [{ name: 'content-type', value: 'text/plain' }], body: Buffer.from('ok') };
    await store.remember({ key: 'billing|k1', messageId: 'm1', at: 1_000, response });
    await store.remember({ key: 'billing|k2', messageId: 'm2', at: 2_000, response: { status: 204, headers: [], body: Buffer.alloc(0) } });
    const seen = await store.seen('billing|k1');
    assert.deepEqual(seen, { key: 'billing|k1', messageId: 'm1', at: 1_000, response });
    assert.ok(Buffer.isBuffer(seen!.response.body));
    assert.equal(await store.seen('billing|k3'), undefined);

    await store.remember({ key: 'billing|k1', messageId: 'm1b', at: 3_000, response: { status: 409, headers: [], body: Buffer.from('x') } });
    assert.deepEqual(await store.seen('billing|k1'), { key: 'billing|k1', messageId: 'm1b', at: 3_000, response: { status: 409, headers: [], body: Buffer.from('x') } });

    assert.equal(await store.forgetSeen(2_500), 1);
    assert.equal(await store.seen('billing|k2'), undefined);
    assert.ok(await store.seen('billing|k1'));
  });

  it('keeps everything across close and reopen, and numbers on from where it was', async (t) => {
    const dir = tempDir(t);
    const first = await openMessageStore(dir, { maxBytes: 0 });
    await seed(first, { a: 'queued', b: 'dead' });
    await first.remember({ key: 'k', messageId: 'a', at: 5, response: { status: 200, headers: [], body: Buffer.from('r') } });
    const before = await first.getMany(['a', 'b']);
    const pending = first.accept([message('c')]); // not awaited: close finishes it first
    await first.close();
    await pending;
    await rejectsWith(first.counts(), 'STORAGE_UNAVAILABLE', /closed/);

    const second = await open(t, dir);
    assert.deepEqual(await second.getMany(['a', 'b']), before);
    assert.equal((await second.seen('k'))?.messageId, 'a');
    await second.accept([message('d')]);
    assert.deepEqual((await second.unfinished()).map((m) => [m.id, m.seq]), [['a', 1], ['c', 3], ['d', 4]]);
  });

  it('upgrades a database of schema version 1 on open: its messages load, and a replay is stamped', async (t) => {
    const dir = tempDir(t);
    withDatabase(dir, (db) => {
      db.exec(SCHEMA_V1);
      const insert = db.prepare(`INSERT INTO outbox (id, state, priority, service, namespace, attempts, next_attempt_at, created_at,
          updated_at, method, path, authority, headers, body)
        VALUES (?, ?, 'medium', 'orders', 'shop', ?, 1000, 1000, ?, 'POST', '/orders', 'orders.shop', '[]', x'7b7d')`);
      insert.run('refused', 'queued', 0, 3_000);
      insert.run('dead', 'dead', 5, 4_000);
    });

    const store = await openMessageStore(dir, { maxBytes: 0 });
    assert.deepEqual(await store.unfinished(), [{
      id: 'refused', seq: 1, state: 'queued', priority: 'medium', service: 'orders', namespace: 'shop',
      attempts: 0, nextAttemptAt: 1_000, createdAt: 1_000, updatedAt: 3_000,
    }], 'never replayed: no replayedAt');
    assert.deepEqual((await store.get('dead'))?.request.body, Buffer.from('{}'));
    assert.equal((await store.replay('dead', 7_000))?.replayedAt, 7_000);
    await store.close();

    withDatabase(dir, (db) => {
      assert.equal(db.prepare('PRAGMA user_version').get()?.['user_version'], 2);
      assert.ok((db.prepare('PRAGMA table_info(outbox)').all() as { name: string }[]).some((c) => c.name === 'replayed_at'));
    });
    const reopened = await open(t, dir);
    assert.deepEqual((await reopened.unfinished()).map((m) => [m.id, m.replayedAt]), [['refused', undefined], ['dead', 7_000]]);
  });

  it('refuses a database whose schema is newer than its own', async (t) => {
    const dir = tempDir(t);
    withDatabase(dir, (db) => db.exec('PRAGMA user_version = 99'));
    await rejectsWith(openMessageStore(dir, { maxBytes: 0 }), 'STORAGE_UNAVAILABLE', /schema \(version 99\) is newer than this sidecar's \(2\)/);
  });

  it('refuses a second store on the same directory, in this process or another', async (t) => {
    const dir = tempDir(t);
    const store = await open(t, dir);
    await rejectsWith(openMessageStore(dir, { maxBytes: 0 }), 'STORAGE_UNAVAILABLE', /in use by another sidecar/);

    const other = spawnChild(t, 'open', dir);
    assert.match((await other.nextLine()) ?? '', /^STORAGE_UNAVAILABLE .*in use by another sidecar/);
    assert.deepEqual(await other.exited, [0, null]);

    await store.close();
    const again = spawnChild(t, 'open', dir);
    assert.equal(await again.nextLine(), 'opened', 'free once the first store is closed');
  });

  it('rejects a directory that is a regular file', async (t) => {
    const file = path.join(tempDir(t), 'file');
    fs.writeFileSync(file, 'x');
    await rejectsWith(openMessageStore(file, { maxBytes: 0 }), 'STORAGE_UNAVAILABLE', /not a directory/);
    await rejectsWith(openMessageStore(path.join(file, 'sub'), { maxBytes: 0 }), 'STORAGE_UNAVAILABLE', /not a directory/);
  });

  it('creates a missing directory', async (t) => {
    const dir = path.join(tempDir(t), 'a', 'b');
    const store = await open(t, dir);
    await store.accept([message('m')]);
    assert.ok(fs.existsSync(path.join(dir, 'messages.db')));
  });

  it('rejects accept with STORAGE_FULL once maxBytes is reached, and still reads', async (t) => {
    const store = await open(t, tempDir(t), 64 * 1024);
    const body = (i: number) => Buffer.alloc(1024, i);
    let stored = 0;
    let error: unknown;
    for (; stored < 100; stored++) {
      try {
        await store.accept([message(`m${stored}`, { request: { method: 'POST', path: '/', authority: 'a', headers: [], body: body(stored) } })]);
      } catch (err) {
        error = err;
        break;
      }
    }
    assert.ok(error instanceof StorageError, `expected STORAGE_FULL, stored ${stored} messages`);
    assert.equal(error.code, 'STORAGE_FULL');
    assert.ok(stored > 10 && stored < 64, `${stored} messages of 1 KiB`);

    assert.equal((await store.counts()).queued, stored);
    const all = await store.getMany(Array.from({ length: stored }, (_, i) => `m${i}`));
    assert.deepEqual(all.map((m) => m.request.body), Array.from({ length: stored }, (_, i) => body(i)));

    // One group: a write that does not fit in the limit itself (SQLite then rolls the whole
    // transaction back) must not take the settle, the accept refused and the read down with it.
    const big = message('big', { request: { method: 'POST', path: '/', authority: 'a', headers: [], body: body(0) } });
    const huge = { key: 'huge', messageId: 'x', at: 1, response: { status: 200, headers: [], body: Buffer.alloc(64 * 1024) } };
    const [settled, remembered, accept, counts] = await Promise.allSettled([
      store.settle('m0', { state: 'delivered', attempts: 1, nextAttemptAt: 0 }), store.remember(huge), store.accept([big]), store.counts(),
    ]);
    assert.equal(settled.status, 'fulfilled');
    assert.equal(remembered.status, 'rejected');
    assert.equal((remembered.reason as StorageError).code, 'STORAGE_FULL');
    assert.equal(accept.status, 'rejected');
    assert.equal((accept.reason as StorageError).code, 'STORAGE_FULL');
    assert.deepEqual(counts.status === 'fulfilled' && counts.value, { queued: stored - 1, delivered: 1, failed: 0, dead: 0 });
    assert.equal(await store.seen('huge'), undefined);

    // Space freed by a purge is used again.
    for (let i = 1; i < 10; i++) await store.settle(`m${i}`, { state: 'delivered', attempts: 1, nextAttemptAt: 0 });
    assert.equal(await store.purgeFinished(Date.now() + 1), 10);
    await store.accept([big]);
  });

  it('keeps the last tenth of maxBytes for settles and dedup records, so what was accepted still drains', async (t) => {
    const store = await open(t, tempDir(t), 256 * 1024);
    const stored: string[] = [];
    let error: unknown;
    while (stored.length < 1_000) {
      const id = `m${stored.length}`;
      try {
        await store.accept([message(id, { request: { method: 'POST', path: '/', authority: 'a', headers: [], body: Buffer.alloc(1024, 1) } })]);
      } catch (err) {
        error = err;
        break;
      }
      stored.push(id);
    }
    assert.ok(error instanceof StorageError, `expected STORAGE_FULL, stored ${stored.length} messages`);
    assert.equal(error.code, 'STORAGE_FULL');
    assert.match(error.message, /\d+% full/);
    assert.ok(stored.length > 100, `${stored.length} messages of 1 KiB in 256 KiB`);

    // Every message accepted is delivered with a response, and its receiver remembers what it answered.
    const response = (i: number) => ({ status: 200, headers: [{ name: 'content-type', value: 'application/json' }], body: Buffer.alloc(400, i) });
    const outcomes = await Promise.allSettled(stored.map((id, i) =>
      store.settle(id, { state: 'delivered', attempts: 1, nextAttemptAt: 0, response: response(i) })));
    assert.deepEqual(outcomes.filter((o) => o.status === 'rejected'), []);
    for (let i = 0; i < 40; i++) await store.remember({ key: `billing|k${i}`, messageId: `r${i}`, at: i, response: response(i) });
    assert.deepEqual(await store.counts(), { queued: 0, delivered: stored.length, failed: 0, dead: 0 });
    assert.deepEqual((await store.get(stored.at(-1)!))?.response, response(stored.length - 1));
    assert.deepEqual((await store.seen('billing|k39'))?.response, response(39));

    // Still full for new messages until the delivered ones are purged.
    await rejectsWith(store.accept([message('late')]), 'STORAGE_FULL');
    assert.equal(await store.purgeFinished(Date.now() + 1), stored.length);
    await store.accept([message('late')]);
  });

  it('rounds fractional numbers for its integer columns instead of failing the write', async (t) => {
    const store = await open(t);
    t.mock.timers.enable({ apis: ['Date'], now: 10_000.7 }); // settle stamps updatedAt with Date.now()
    await store.accept([message('m', { createdAt: 1_000.4 })]);
    assert.deepEqual(await store.get('m'), { ...accepted(message('m'), 1), createdAt: 1_000, nextAttemptAt: 1_000, updatedAt: 1_000 });

    await store.settle('m', { state: 'queued', attempts: 1, nextAttemptAt: 1234.56 }); // a back-off with jitter
    let m = await store.get('m');
    assert.deepEqual([m?.nextAttemptAt, m?.updatedAt, m?.attempts], [1235, 10_001, 1]);
    assert.deepEqual((await store.unfinished()).map((u) => u.nextAttemptAt), [1235]);

    await store.settle('m', { state: 'dead', attempts: 2.5, nextAttemptAt: 0.2, response: { status: 503.4, headers: [], body: Buffer.from('x') } });
    m = await store.get('m');
    assert.deepEqual([m?.state, m?.attempts, m?.nextAttemptAt, m?.response?.status], ['dead', 3, 0, 503]);
    const replayed = await store.replay('m', 2_000.5);
    assert.deepEqual([replayed?.nextAttemptAt, replayed?.updatedAt, replayed?.replayedAt], [2_001, 2_001, 2_001]);
    await store.settle('m', { state: 'dead', attempts: 1, nextAttemptAt: 0 });
    assert.deepEqual((await store.replayAll(3_000.5)).map((r) => r.nextAttemptAt), [3_001]);

    await store.remember({ key: 'k', messageId: 'm', at: 5.5, response: { status: 200.2, headers: [], body: Buffer.from('ok') } });
    const seen = await store.seen('k');
    assert.deepEqual([seen?.at, seen?.response.status], [6, 200]);

    // Not a number at all: the caller's bug, a plain error for that write only.
    await assert.rejects(store.settle('m', { state: 'queued', attempts: 1, nextAttemptAt: Number.NaN }), (err: unknown) =>
      err instanceof Error && !(err instanceof StorageError) && /nextAttemptAt must be a finite number, got NaN/.test(err.message));
    await assert.rejects(store.accept([message('inf', { createdAt: Infinity })]), /createdAt must be a finite number/);
    assert.equal((await store.get('m'))?.nextAttemptAt, 3_001);
    assert.equal(await store.get('inf'), undefined);
  });

  it('drops the request body of a delivered or failed message, and keeps it while it may be sent again', async (t) => {
    const store = await open(t);
    await seed(store, { ok: 'queued', bad: 'queued', retry: 'queued', dead: 'queued' });
    const response = { status: 201, headers: [{ name: 'location', value: '/orders/1' }], body: Buffer.from('created') };
    await store.settle('ok', { state: 'delivered', attempts: 1, nextAttemptAt: 0, response });
    await store.settle('bad', { state: 'failed', attempts: 1, nextAttemptAt: 0, response: { status: 400, headers: [], body: Buffer.from('no') } });
    await store.settle('retry', { state: 'queued', attempts: 1, nextAttemptAt: 5_000, lastError: { code: 'APP_STATUS', message: 'busy', status: 503 } });
    await store.settle('dead', { state: 'dead', attempts: 5, nextAttemptAt: 0 });

    const ok = await store.get('ok');
    assert.ok(Buffer.isBuffer(ok?.request.body));
    assert.equal(ok.request.body.length, 0);
    assert.deepEqual({ ...ok.request, body: undefined }, { ...message('ok').request, body: undefined }, 'the request head stays');
    assert.deepEqual(ok.response, response);
    assert.equal((await store.get('bad'))?.request.body.length, 0);
    assert.deepEqual((await store.get('retry'))?.request.body, message('retry').request.body);
    assert.deepEqual((await store.get('dead'))?.request.body, message('dead').request.body, 'a dead letter may be replayed');
    await store.replay('dead', 6_000);
    assert.deepEqual((await store.get('dead'))?.request.body, message('dead').request.body);
  });

  it('lists dead letters without reading their request bodies', async (t) => {
    const store = await open(t);
    await seed(store, { d1: 'dead', d2: 'dead' });
    const response = { status: 503, headers: [], body: Buffer.from('try later') };
    await store.settle('d2', { state: 'dead', attempts: 3, nextAttemptAt: 0, response });
    const dead = await store.deadLetters({ limit: 10 });
    assert.deepEqual(ids(dead), ['d1', 'd2']);
    for (const m of dead) {
      assert.ok(Buffer.isBuffer(m.request.body));
      assert.equal(m.request.body.length, 0, m.id);
      assert.deepEqual({ ...m.request, body: undefined }, { ...message(m.id).request, body: undefined });
    }
    assert.deepEqual(dead[1]!.response, response);
    assert.deepEqual((await store.get('d1'))?.request.body, message('d1').request.body, 'get() still reads it');
    assert.deepEqual(dead, await Promise.all(['d1', 'd2'].map(async (id) => {
      const m = (await store.get(id))!;
      return { ...m, request: { ...m.request, body: Buffer.alloc(0) } };
    })));
  });

  for (const how of ['terminate', 'crash'] as const) {
    it(`tells its failure listeners once, and refuses every later call, when its worker dies (${how})`, async (t) => {
      const store = await open(t);
      assert.ok(store instanceof SqliteMessageStore);
      await store.accept([message('m')]);
      const calls: StorageError[][] = [[], []];
      store.onFailure((err) => calls[0]!.push(err));
      store.onFailure((err) => calls[1]!.push(err));

      await store.failForTesting(how);
      assert.equal(calls[0]!.length, 1);
      assert.deepEqual(calls[1], calls[0]);
      const failure = calls[0]![0]!;
      assert.ok(failure instanceof StorageError);
      assert.equal(failure.code, 'STORAGE_UNAVAILABLE');
      assert.match(failure.message, how === 'crash' ? /failed: .*crashed/ : /stopped: its worker exited/);

      await rejectsWith(store.counts(), 'STORAGE_UNAVAILABLE');
      await rejectsWith(store.accept([message('n')]), 'STORAGE_UNAVAILABLE');
      const late = new Promise<StorageError>((resolve) => store.onFailure(resolve));
      assert.equal(await late, failure, 'a listener added after the failure hears of it too');
      await store.close();
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(calls[0]!.length, 1, 'once');
    });
  }

  it('rejects the calls in flight when its worker dies', async (t) => {
    const store = await open(t);
    assert.ok(store instanceof SqliteMessageStore);
    const failures: StorageError[] = [];
    store.onFailure((err) => failures.push(err));
    const inFlight = store.accept([message('m')]).then(() => 'accepted', (err: unknown) => err);
    await store.failForTesting('crash'); // the crash travels in the same batch
    const result = await inFlight;
    assert.ok(result instanceof StorageError);
    assert.equal(result, failures[0]);
  });

  it('does not call its failure listeners on close', async (t) => {
    const store = await openMessageStore(tempDir(t), { maxBytes: 0 });
    const failures: StorageError[] = [];
    store.onFailure((err) => failures.push(err));
    await store.accept([message('m')]);
    await store.close();
    store.onFailure((err) => failures.push(err));
    // close() has seen the worker exit; a listener added after a failure is called from a microtask.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(failures, []);
    await rejectsWith(store.counts(), 'STORAGE_UNAVAILABLE', /closed/);
  });

  it('commits writes made at the same moment together (group commit)', async (t) => {
    const store = await open(t);
    assert.ok(store instanceof SqliteMessageStore);
    const body = Buffer.alloc(1024, 1);
    const commitsBefore = store.commits;
    await Promise.all(Array.from({ length: 200 }, (_, i) =>
      store.accept([message(`g${i}`, { request: { method: 'POST', path: '/', authority: 'a', headers: [], body } })])));
    assert.equal(store.commits - commitsBefore, 1, 'calls made in one tick share one transaction');
    const all = await store.getMany(Array.from({ length: 200 }, (_, i) => `g${i}`));
    assert.equal(all.length, 200);
    assert.deepEqual(all.map((m) => m.seq), Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('fails only the write that breaks a constraint, not the rest of its group', async (t) => {
    const store = await open(t);
    await store.accept([message('taken')]);
    const results = await Promise.allSettled([
      store.accept([message('a')]),
      store.accept([message('b'), message('taken')]), // all or nothing: b is not stored either
      store.accept([message('c')]),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    const reason = (results[1] as PromiseRejectedResult).reason as Error;
    assert.ok(!(reason instanceof StorageError), 'a duplicate id is not a storage failure');
    assert.match(reason.message, /taken is already in the store/);
    assert.deepEqual(ids(await store.unfinished()), ['taken', 'a', 'c']);
  });

  it('has every accepted message on disk once accept resolves (the process is killed right after)', async (t) => {
    const dir = tempDir(t);
    const child = spawnChild(t, 'wait', dir, '50');
    assert.equal(await child.nextLine(), 'accepted');
    child.child.kill('SIGKILL');
    assert.deepEqual(await child.exited, [null, 'SIGKILL']);

    const store = await open(t, dir);
    assert.equal((await store.counts()).queued, 50);
    const messages = await store.getMany(Array.from({ length: 50 }, (_, i) => `child-${i}`));
    assert.equal(messages.length, 50);
    assert.ok(messages.every((m) => m.request.body.equals(Buffer.alloc(1024, 7))));
  });

  it('does not keep the process alive while idle', async (t) => {
    const child = spawnChild(t, 'exit', tempDir(t), '3');
    assert.equal(await child.nextLine(), 'accepted');
    assert.deepEqual(await child.exited, [0, null], 'the child ended without closing its store');
  });
});
