// Async calls survive process deaths and report storage trouble clearly (real sidecars, real apps):
//   - the receiving sidecar SIGKILLed twice during a 5,000-message run: nothing lost, and the only
//     duplicates are deliveries that were in flight at a kill (same message id); without kills,
//     exactly once;
//   - the sending sidecar SIGKILLed after its 202s and before any delivery: after a restart on the
//     same data directory every message is delivered;
//   - an unusable data directory (immutable, under a file, over its quota): async requests get a
//     coded 503/507, synchronous calls through the same sidecar keep working.
//
//   test ─HTTP (Prefer: respond-async)─▶ orders sidecar ══link══▶ inventory sidecar ─HTTP─▶ recording app
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { closedPort } from '../helpers/apps.ts';
import {
  asyncPolicy, FAST_LINK, inParallel, messageStatus, meshApi, metric, policyFolder, removeDir, sendAsync, startRecordingApp, tempDir,
  untilState, type Accepted, type MessageView, type RecordingApp,
} from '../helpers/async.ts';
import { callService } from '../helpers/fleet.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { until } from '../helpers/wait.ts';

/** Redelivery quick enough for a test, and never a dead letter within it. */
const PATIENT = asyncPolicy('inventory', { attempts: 1000, base: '20ms', max: '200ms' });

interface Pair {
  app: RecordingApp;
  receiver: SidecarProcess;
  caller: SidecarProcess;
  receiverDir: string;
  callerDir: string;
  policies: string;
  agent: Agent;
  close(): Promise<void>;
}

const receiverConfig = (app: RecordingApp, inboundPort = 0) =>
  sidecarConfig({ service: 'inventory', appPort: app.port, inboundPort, extra: { link: FAST_LINK } });

const callerConfig = (peer: string, policies: string, storage: Record<string, unknown> = {}) =>
  sidecarConfig({ service: 'orders', appPort: 1, peers: { inventory: [peer] }, extra: { link: FAST_LINK, policies: [policies], storage } });

/**
 * A caller and a receiver, each on a data directory of its own that outlives its process (a restart
 * with `dir` finds the same data). `pair.receiver` is replaced by restarts; close() stops whatever runs.
 */
async function startPair(storage: Record<string, unknown>): Promise<Pair> {
  const app = await startRecordingApp('inventory');
  const receiverDir = tempDir('receiver');
  const callerDir = tempDir('caller');
  const policies = policyFolder({ 'inventory.yaml': PATIENT });
  const agent = new Agent({ connections: 32 });
  const pair: Pair = {
    app, receiverDir, callerDir, policies, agent,
    receiver: undefined as unknown as SidecarProcess,
    caller: undefined as unknown as SidecarProcess,
    close: async () => {
      await agent.close();
      await Promise.all([pair.caller?.stop(), pair.receiver?.stop()]);
      await app.close();
      for (const dir of [receiverDir, callerDir, policies]) removeDir(dir);
    },
  };
  try {
    pair.receiver = await SidecarProcess.start({ config: receiverConfig(app), dir: receiverDir, name: 'inventory#1' });
    pair.caller = await SidecarProcess.start({ config: callerConfig(pair.receiver.inboundAddress, policies, storage), dir: callerDir, name: 'orders' });
    await pair.caller.waitForLog((l) => l.msg === 'link ready' && l.peer === pair.receiver.inboundAddress);
  } catch (err) {
    await pair.close();
    throw err;
  }
  return pair;
}

/** Send `count` messages numbered from `first` (the number is the body); every answer must be a 202. */
async function sendNumbered(pair: Pair, first: number, count: number): Promise<Accepted[]> {
  const accepted = await inParallel(count, 32, (i) => sendAsync(pair.caller, 'inventory', `/stock/${first + i}`, { body: String(first + i), dispatcher: pair.agent }));
  accepted.forEach((a, i) => assert.equal(a.status, 202, `message ${first + i}: ${a.status} ${JSON.stringify(a.json)}`));
  return accepted;
}

/** Receipts by the sequence number in their body. */
function bySeq(app: RecordingApp): Map<number, RecordingApp['receipts']> {
  const map = new Map<number, RecordingApp['receipts']>();
  for (const receipt of app.receipts) {
    const seq = Number(receipt.body);
    map.set(seq, [...(map.get(seq) ?? []), receipt]);
  }
  return map;
}

/** Wait until the caller's outbox holds nothing queued and `delivered` messages delivered. */
async function untilAllDelivered(caller: SidecarProcess, delivered: number, ms: number): Promise<void> {
  await until(async () => {
    const counts = await outboxCounts(caller);
    return counts.queued === 0 && counts.delivered === delivered;
  }, { ms, message: `the outbox never showed ${delivered} delivered and none queued` });
}

async function outboxCounts(caller: SidecarProcess): Promise<{ queued: number; delivered: number }> {
  return {
    queued: await metric(caller, 'mcp_outbox_messages', { state: 'queued' }),
    delivered: await metric(caller, 'mcp_outbox_messages', { state: 'delivered' }),
  };
}

describe('async delivery across SIGKILLs of the receiving sidecar', { timeout: 180_000 }, () => {
  const TOTAL = 5000;
  /** Deliveries in flight at once on the caller (one lane: every message is medium priority). */
  const SLOTS = 16;

  test(`${TOTAL} messages, the receiver killed twice mid-delivery: none lost; duplicates only of deliveries in flight at a kill, with the same id`, async (t) => {
    const pair = await startPair({ deliveryConcurrency: SLOTS });
    t.after(() => pair.close());
    const { app, caller } = pair;
    const port = pair.receiver.ports.inbound;
    const address = `127.0.0.1:${port}`;

    // The app kills the receiving sidecar the moment it has seen this many requests (duplicates included).
    const killAt = [1500, 3300];
    let armed: number | undefined;
    app.onReceipt = () => {
      if (armed !== undefined && app.receipts.length >= armed) {
        armed = undefined;
        pair.receiver.child.kill('SIGKILL');
      }
    };
    armed = killAt[0];
    let linkDownMark = caller.mark();
    const started = performance.now();
    const sending = sendNumbered(pair, 0, TOTAL);
    sending.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile

    /**
     * Per kill: the messages the app received since the receiver (re)started that the caller had not
     * marked delivered when it died. Only those can reach the app again: within one receiver process a
     * message reaches the app once (the record, or the delivery already running, answers a redelivery),
     * and a record on disk answers it in every later process too.
     */
    const inFlightAtKill: Set<string>[] = [];
    let periodStart = 0;
    for (let kill = 0; kill < killAt.length; kill++) {
      const victim = pair.receiver;
      await app.waitFor(() => armed === undefined, 60_000, `the app never reached ${killAt[kill]} requests (kill ${kill + 1})`);
      assert.equal((await victim.exited).signal, 'SIGKILL');
      await caller.waitForLog((l) => l.msg.startsWith('link down') && l.peer === address, { since: linkDownMark });
      // Every request the dead sidecar had written to the app has been read (its connections closed):
      // from here on the app's receipts cannot grow until the restart.
      await app.idle(10_000, 'connections of the killed sidecar to the app stayed open');

      // With the receiver dead nothing more can be marked delivered: this set is final for this kill.
      const received = [...new Set(app.receipts.slice(periodStart).map((r) => r.messageId!))];
      const states = await inParallel(received.length, 16, (i) => messageStatus(caller, received[i]!, pair.agent));
      const unsettled = new Set<string>();
      states.forEach((view, i) => {
        assert.ok(view, `the caller knows message ${received[i]}`);
        if (view.state !== 'delivered') unsettled.add(view.id);
      });
      inFlightAtKill.push(unsettled);
      t.diagnostic(`kill ${kill + 1}: the app had ${app.receipts.length} requests, ${received.length} since the last start; ${unsettled.size} of those not marked delivered`);
      assert.ok(unsettled.size <= SLOTS, `no more than the caller's ${SLOTS} delivery slots were in flight (${unsettled.size})`);

      // Back on the same port and data directory.
      const linkUp = caller.mark();
      linkDownMark = linkUp;
      periodStart = app.receipts.length;
      pair.receiver = await SidecarProcess.start({ config: receiverConfig(app, port), dir: pair.receiverDir, name: `inventory#${kill + 2}` });
      assert.equal(pair.receiver.ports.inbound, port);
      armed = killAt[kill + 1];
      await caller.waitForLog((l) => l.msg === 'link ready' && l.peer === address, { since: linkUp, timeoutMs: 15_000 });
    }

    const accepted = await sending;
    await app.waitForCount(() => bySeq(app).size, TOTAL, { ms: 90_000, stallMs: 15_000, what: 'distinct messages at the app' });
    await untilAllDelivered(caller, TOTAL, 30_000);
    t.diagnostic(`all ${TOTAL} delivered in ${Math.round(performance.now() - started)} ms`);

    // Nothing lost, and every receipt of a message carries the id its 202 gave.
    const receipts = bySeq(app);
    let duplicates = 0;
    for (let seq = 0; seq < TOTAL; seq++) {
      const got = receipts.get(seq);
      assert.ok(got && got.length >= 1, `message ${seq} reached the app`);
      const id = accepted[seq]!.id;
      for (const receipt of got) {
        assert.equal(receipt.messageId, id, `message ${seq}: every delivery carries the id of its 202`);
        assert.equal(receipt.idempotencyKey, id, `message ${seq}: Idempotency-Key is the message id`);
        assert.equal(receipt.url, `/stock/${seq}`);
      }
      const extra = got.length - 1;
      duplicates += extra;
      // A message can reach the app again only if it was in flight at a kill, once per such kill.
      const inFlightCount = inFlightAtKill.filter((s) => s.has(id)).length;
      assert.ok(extra <= inFlightCount, `message ${seq} (${id}) reached the app ${got.length} times; in flight at ${inFlightCount} kills`);
    }
    const inFlight = inFlightAtKill.reduce((sum, set) => sum + set.size, 0);
    t.diagnostic(`duplicates: ${duplicates}; in flight at the kills: ${inFlightAtKill.map((set) => set.size).join(' + ')}`);
    assert.equal(app.receipts.length, TOTAL + duplicates);
    assert.ok(duplicates <= inFlight, `duplicates (${duplicates}) at most the deliveries in flight at the kills (${inFlight})`);
    assert.ok(inFlight <= killAt.length * SLOTS, `and so at most ${killAt.length} × ${SLOTS} delivery slots`);
  });

  test(`${TOTAL} messages without a kill: each reaches the app exactly once, at the first attempt`, async (t) => {
    const pair = await startPair({ deliveryConcurrency: SLOTS });
    t.after(() => pair.close());
    const { app, caller } = pair;
    const started = performance.now();
    const accepted = await sendNumbered(pair, 0, TOTAL);
    await app.waitForCount(() => bySeq(app).size, TOTAL, { ms: 90_000, stallMs: 15_000, what: 'distinct messages at the app' });
    await untilAllDelivered(caller, TOTAL, 30_000);
    t.diagnostic(`all ${TOTAL} delivered in ${Math.round(performance.now() - started)} ms`);

    assert.equal(app.receipts.length, TOTAL, 'no duplicates at all');
    const receipts = bySeq(app);
    for (let seq = 0; seq < TOTAL; seq++) {
      const [receipt] = receipts.get(seq)!;
      assert.equal(receipt!.messageId, accepted[seq]!.id, `message ${seq} carries the id of its 202`);
      assert.equal(receipt!.status, 200);
    }
    assert.equal(await metric(caller, 'mcp_async_deliveries_total', { outcome: 'delivered' }), TOTAL);
    assert.equal(await metric(caller, 'mcp_async_deliveries_total', { outcome: 'retry' }), 0, 'no attempt was repeated');
    assert.equal(await metric(pair.receiver, 'mcp_async_duplicates_dropped_total'), 0, 'the receiver dropped no redelivery: there was none');
    // A sample of statuses: delivered at the first attempt, with the app's answer kept.
    for (const seq of [0, 1, TOTAL / 2, TOTAL - 1]) {
      const view = await messageStatus(caller, accepted[seq]!.id);
      assert.equal(view?.state, 'delivered');
      assert.equal(view?.attempts, 1);
      assert.equal(view?.response?.status, 200);
      assert.equal(JSON.parse(view!.response!.body!).body, String(seq));
    }
  });
});

describe('async messages survive a SIGKILL of the sending sidecar', { timeout: 60_000 }, () => {
  test('killed after its 202s and before any delivery (the receiver not started yet): after a restart on the same data directory all are delivered, once', async (t) => {
    const COUNT = 300;
    const app = await startRecordingApp('inventory');
    const receiverDir = tempDir('receiver');
    const callerDir = tempDir('caller');
    const policies = policyFolder({ 'inventory.yaml': PATIENT });
    // The receiver's address is fixed but nothing listens there yet: no delivery can happen.
    const port = await closedPort();
    const address = `127.0.0.1:${port}`;
    let caller = await SidecarProcess.start({ config: callerConfig(address, policies), dir: callerDir, name: 'orders#1' });
    let receiver: SidecarProcess | undefined;
    t.after(async () => {
      await Promise.all([caller.stop(), receiver?.stop()]);
      await app.close();
      for (const dir of [receiverDir, callerDir, policies]) removeDir(dir);
    });

    const agent = new Agent({ connections: 16 });
    t.after(() => agent.close());
    const accepted = await inParallel(COUNT, 16, (i) => sendAsync(caller, 'inventory', `/stock/${i}`, { body: String(i), dispatcher: agent }));
    accepted.forEach((a, i) => assert.equal(a.status, 202, `message ${i}: ${a.status} ${JSON.stringify(a.json)}`));
    // The dispatcher is trying (and failing) to deliver: the receiver is not there.
    let tried: MessageView | undefined;
    await until(async () => {
      tried = await messageStatus(caller, accepted[0]!.id);
      return tried?.state === 'in-flight' || tried?.lastError !== undefined || (tried?.attempts ?? 0) >= 1;
    }, { ms: 10_000, message: 'delivery of the first message was never tried' });
    assert.notEqual(tried!.state, 'delivered');

    caller.child.kill('SIGKILL');
    assert.equal((await caller.exited).signal, 'SIGKILL');
    assert.equal(app.receipts.length, 0, 'nothing was delivered before the kill');

    receiver = await SidecarProcess.start({ config: receiverConfig(app, port), dir: receiverDir, name: 'inventory' });
    caller = await SidecarProcess.start({ config: callerConfig(address, policies), dir: callerDir, name: 'orders#2' });
    // The restarted sidecar found every accepted message in its outbox.
    const open = await caller.waitForLog('async storage open');
    assert.equal(open.queued, COUNT, `the restarted caller loaded ${COUNT} queued messages: ${JSON.stringify(open)}`);

    await app.waitForCount(() => bySeq(app).size, COUNT, { ms: 30_000, stallMs: 10_000, what: 'distinct messages at the app' });
    await untilAllDelivered(caller, COUNT, 30_000);
    assert.equal(app.receipts.length, COUNT, 'each message reached the app once');
    const receipts = bySeq(app);
    for (let seq = 0; seq < COUNT; seq++) {
      assert.equal(receipts.get(seq)![0]!.messageId, accepted[seq]!.id, `message ${seq} carries the id of its 202`);
      assert.equal(receipts.get(seq)![0]!.body, String(seq));
    }
    const view = await messageStatus(caller, accepted[0]!.id);
    assert.equal(view?.state, 'delivered');
    assert.equal(view?.response?.status, 200);
  });
});

// ---- storage failures ----------------------------------------------------------------------------

/** chattr +i: even root cannot create files in the folder (chmod does not stop root). */
function immutable(dir: string, on: boolean): void {
  execFileSync('chattr', [on ? '+i' : '-i', dir]);
}

describe('an unusable data directory', { timeout: 60_000 }, () => {
  let app: RecordingApp;
  let receiver: SidecarProcess;
  const dirs: string[] = [];
  const locked: string[] = [];

  before(async () => {
    app = await startRecordingApp('inventory');
    receiver = await SidecarProcess.start({ config: receiverConfig(app), name: 'inventory' });
  });
  after(async () => {
    for (const dir of locked) immutable(dir, false);
    await receiver?.stop();
    await app?.close();
    for (const dir of dirs) removeDir(dir);
  });

  /** A caller whose data directory is `<dir>/data`, prepared by `prepare` before it starts. */
  async function callerWith(prepare: (dataDir: string) => void, storage: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<SidecarProcess> {
    const dir = tempDir('caller');
    dirs.push(dir);
    const policies = policyFolder({ 'inventory.yaml': PATIENT });
    dirs.push(policies);
    prepare(path.join(dir, 'data'));
    const caller = await SidecarProcess.start({ config: callerConfig(receiver.inboundAddress, policies, storage), dir, env, name: 'orders' });
    await caller.waitForLog((l) => l.msg === 'link ready');
    return caller;
  }

  async function assertSyncWorks(caller: SidecarProcess): Promise<void> {
    const body = `sync-${Math.random()}`;
    const sync = await callService(caller, 'inventory', '/sync-check', { method: 'POST', body });
    assert.equal(sync.status, 200, `a synchronous call through the same sidecar works: ${sync.status} ${sync.code} ${sync.body}`);
    const seen = app.receipts.filter((r) => r.body === body);
    assert.equal(seen.length, 1, 'the app got the synchronous call once');
    assert.equal(seen[0]!.messageId, undefined, 'a synchronous call is not a durable message');
  }

  test('an immutable data directory: async requests get 503 STORAGE_UNAVAILABLE, sync calls work; once writable, async works again', async (t) => {
    let dataDir = '';
    const caller = await callerWith((data) => {
      dataDir = data;
      mkdirSync(data);
      immutable(data, true);
      locked.push(data);
    });
    t.after(() => caller.stop());

    // The store opens on first use: the first async request finds the directory unusable, says why in the log.
    const refused = await sendAsync(caller, 'inventory', '/stock/1', { body: '1' });
    await caller.waitForLog((l) => l.code === 'STORAGE_UNAVAILABLE' && l.msg.startsWith('async calls and pub/sub are unavailable'));
    assert.equal(refused.status, 503);
    assert.equal(refused.code, 'STORAGE_UNAVAILABLE');
    assert.equal((refused.json.error as { code: string }).code, 'STORAGE_UNAVAILABLE');
    const status = await meshApi(caller, 'GET', '/mesh/v1/dead-letters');
    assert.equal(status.status, 503, 'the mesh API says so too');
    assert.equal(status.code, 'STORAGE_UNAVAILABLE');
    await assertSyncWorks(caller);

    // The store is opened again (at most once a second) when asked: it recovers by itself.
    immutable(dataDir, false);
    locked.splice(locked.indexOf(dataDir), 1);
    let accepted: Accepted | undefined;
    await until(async () => {
      accepted = await sendAsync(caller, 'inventory', '/stock/2', { body: '2' });
      return accepted.status === 202;
    }, { ms: 10_000, message: 'async requests were still refused once the directory was writable' });
    await untilState(caller, accepted!.id, ['delivered']);
    assert.equal(app.receipts.filter((r) => r.messageId === accepted!.id).length, 1);
  });

  test('a data directory under a regular file: 503 STORAGE_UNAVAILABLE, sync calls work', async (t) => {
    const dir = tempDir('not-a-dir');
    dirs.push(dir);
    writeFileSync(path.join(dir, 'file'), 'not a directory');
    const caller = await callerWith(() => {}, {}, { MESH_DATA_DIR: path.join(dir, 'file', 'data') });
    t.after(() => caller.stop());
    const refused = await sendAsync(caller, 'inventory', '/stock/1', { body: '1' });
    assert.equal(refused.status, 503);
    assert.equal(refused.code, 'STORAGE_UNAVAILABLE');
    await assertSyncWorks(caller);
  });

  /** Fill a caller's quota with 4 KiB messages; resolves with what was accepted and the first refusal. */
  async function fill(caller: SidecarProcess): Promise<{ accepted: Accepted[]; full: Accepted }> {
    const body = 'x'.repeat(4096);
    const accepted: Accepted[] = [];
    for (let i = 0; i < 100; i++) {
      const answer = await sendAsync(caller, 'inventory', `/bulk/${i}`, { body });
      if (answer.status !== 202) return { accepted, full: answer };
      accepted.push(answer);
    }
    assert.fail('the quota was not reached within 100 messages of 4 KiB');
  }

  test('storage.maxBytes reached: async requests get 507 STORAGE_FULL, sync calls through the same sidecar work', async (t) => {
    const caller = await callerWith(() => {}, { maxBytes: 65536 });
    t.after(() => caller.stop());
    const { accepted, full } = await fill(caller);
    assert.equal(full.status, 507, `${full.status} ${JSON.stringify(full.json)}`);
    assert.equal(full.code, 'STORAGE_FULL');
    assert.equal((full.json.error as { code: string }).code, 'STORAGE_FULL');
    assert.ok(accepted.length >= 1, 'some messages fitted before the quota');
    await assertSyncWorks(caller);
  });

  test('storage.maxBytes reached: the messages accepted before it are still delivered and shown delivered', async (t) => {
    const caller = await callerWith(() => {}, { maxBytes: 65536 });
    t.after(() => caller.stop());
    const { accepted, full } = await fill(caller);
    assert.equal(full.status, 507);
    for (const message of accepted) {
      const view = await untilState(caller, message.id, ['delivered', 'dead', 'failed'], 10_000);
      assert.equal(view.state, 'delivered', `a message accepted (202) before the quota was reached is delivered: ${JSON.stringify(view)}`);
      assert.equal(app.receipts.filter((r) => r.messageId === message.id).length, 1);
    }
  });

  test('the receiving sidecar cannot record deliveries: it refuses them (no risk of a duplicate), the message waits, sync calls work; then it is delivered once', async (t) => {
    const receiverDir = tempDir('receiver');
    dirs.push(receiverDir);
    const data = path.join(receiverDir, 'data');
    mkdirSync(data);
    immutable(data, true);
    locked.push(data);
    const brokenApp = await startRecordingApp('inventory-2');
    const broken = await SidecarProcess.start({ config: receiverConfig(brokenApp), dir: receiverDir, name: 'inventory (no storage)' });
    const policies = policyFolder({ 'inventory.yaml': PATIENT });
    dirs.push(policies);
    const caller = await SidecarProcess.start({ config: callerConfig(broken.inboundAddress, policies), name: 'orders' });
    t.after(async () => {
      await Promise.all([caller.stop(), broken.stop()]);
      await brokenApp.close();
    });
    await caller.waitForLog((l) => l.msg === 'link ready');

    const message = await sendAsync(caller, 'inventory', '/stock/1', { body: '1' });
    assert.equal(message.status, 202);
    let view: MessageView | undefined;
    await until(async () => {
      view = await messageStatus(caller, message.id);
      return view?.lastError !== undefined;
    }, { ms: 10_000, message: 'no delivery attempt was made' });
    assert.notEqual(view!.state, 'delivered');
    assert.equal(view!.lastError?.code, 'STORAGE_UNAVAILABLE', `the receiver's refusal is the reason: ${JSON.stringify(view!)}`);
    assert.equal(view!.attempts, 0, 'a refusal never reached the app, so it uses up no attempt');
    assert.equal(brokenApp.receipts.length, 0, 'the app never got a message the receiver could not record');
    const sync = await callService(caller, 'inventory', '/sync-check', { method: 'POST', body: 'sync' });
    assert.equal(sync.status, 200, 'synchronous calls to that receiver work');

    immutable(data, false);
    locked.splice(locked.indexOf(data), 1);
    await untilState(caller, message.id, ['delivered'], 15_000);
    assert.equal(brokenApp.receipts.filter((r) => r.messageId === message.id).length, 1);
  });
});
