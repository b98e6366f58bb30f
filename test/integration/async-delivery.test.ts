// Async calls between real sidecars: the 202 and the status API, coded refusals, dedup by
// Idempotency-Key, redelivery into the dead-letter queue and out of it again, ordering keys under
// failures, and the high-priority lane under a low-priority flood.
//
//   test ─HTTP (Prefer: respond-async)─▶ orders sidecar ══link══▶ billing sidecar ─HTTP─▶ recording app
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent } from 'undici';
import {
  asyncPolicy, FAST_LINK, inParallel, messageStatus, meshApi, metric, policyFolder, removeDir, sendAsync, startRecordingApp,
  untilMetric, untilState, type Accepted, type MessageView, type Receipt, type RecordingApp,
} from '../helpers/async.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { until } from '../helpers/wait.ts';

const SERVICE = 'billing';
const SERVICE_LABEL = { service: `${SERVICE}.default` };

interface Setup {
  app: RecordingApp;
  receiver: SidecarProcess;
  caller: SidecarProcess;
  agent: Agent;
  close(): Promise<void>;
}

/** An app behind a billing sidecar, and an orders sidecar calling it with `policyText` loaded. */
async function startSetup(options: { policy: string; storage?: Record<string, unknown> }): Promise<Setup> {
  const app = await startRecordingApp(SERVICE);
  const policies = policyFolder({ 'billing.yaml': options.policy });
  const agent = new Agent({ connections: 32 });
  const sidecars: SidecarProcess[] = [];
  const close = async () => {
    await agent.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await app.close();
    removeDir(policies);
  };
  try {
    const receiver = await SidecarProcess.start({ config: sidecarConfig({ service: SERVICE, appPort: app.port, extra: { link: FAST_LINK } }) });
    sidecars.push(receiver);
    const caller = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'orders', appPort: 1, peers: { [SERVICE]: [receiver.inboundAddress] },
        extra: { link: FAST_LINK, policies: [policies], ...(options.storage ? { storage: options.storage } : {}) },
      }),
    });
    sidecars.push(caller);
    await caller.waitForLog((l) => l.msg === 'link ready' && l.peer === receiver.inboundAddress);
    return { app, receiver, caller, agent, close };
  } catch (err) {
    await close();
    throw err;
  }
}

const receiptsOf = (app: RecordingApp, id: string): Receipt[] => app.receipts.filter((r) => r.messageId === id);

/**
 * For tests that make the app fail on purpose: no circuit breaker and no outlier ejection, so every
 * delivery attempt reaches the app (and is counted there) instead of failing fast in the caller.
 */
const NO_BREAKERS = '  circuitBreaker: { enabled: false }\n  outlierDetection: { enabled: false }\n';

describe('async calls: the 202, the status API and coded refusals', { timeout: 60_000 }, () => {
  let setup: Setup;
  before(async () => { setup = await startSetup({ policy: asyncPolicy(SERVICE, { attempts: 5, base: '10ms', max: '50ms' }), storage: { maxMessageBytes: 1024 } }); });
  after(() => setup?.close());

  test('202 with Location once on disk; the app gets method, path, body and the message id; the status shows its answer', async () => {
    const { app, caller } = setup;
    const accepted = await sendAsync(caller, SERVICE, '/invoices?month=11', {
      method: 'PUT', body: '{"order":42}', headers: { 'content-type': 'application/json', prefer: 'respond-async, return=minimal', 'x-custom': 'kept' },
    });
    assert.equal(accepted.status, 202);
    assert.match(accepted.id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(accepted.location, `/mesh/v1/messages/${accepted.id}`);
    assert.deepEqual(accepted.json, { id: accepted.id, state: 'queued', location: accepted.location });

    const view = await untilState(caller, accepted.id, ['delivered']);
    assert.equal(view.attempts, 1);
    assert.equal(view.service, SERVICE);
    assert.equal(view.response?.status, 200);
    const [receipt, ...more] = receiptsOf(app, accepted.id);
    assert.equal(more.length, 0);
    assert.equal(receipt!.method, 'PUT');
    assert.equal(receipt!.url, '/invoices?month=11');
    assert.equal(receipt!.body, '{"order":42}');
    assert.equal(receipt!.headers['content-type'], 'application/json');
    assert.equal(receipt!.headers['x-custom'], 'kept');
    assert.equal(receipt!.idempotencyKey, accepted.id, 'Idempotency-Key is the message id when the caller set none');
    assert.equal(receipt!.headers.prefer, 'return=minimal', 'respond-async is for the sidecar; other preferences reach the app');
    assert.equal(JSON.parse(view.response!.body!).index, receipt!.index, 'the status holds the answer the app gave');
  });

  test('Prefer: respond-async to an unknown service: 404 UNKNOWN_SERVICE', async () => {
    const refused = await sendAsync(setup.caller, 'nowhere', '/x', { body: 'x' });
    assert.equal(refused.status, 404);
    assert.equal(refused.code, 'UNKNOWN_SERVICE');
    assert.equal((refused.json.error as { code: string }).code, 'UNKNOWN_SERVICE');
  });

  test('GET of an unknown message id: 404 MESSAGE_NOT_FOUND', async () => {
    const missing = await meshApi(setup.caller, 'GET', '/mesh/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV');
    assert.equal(missing.status, 404);
    assert.equal(missing.code, 'MESSAGE_NOT_FOUND');
  });

  test('a body over storage.maxMessageBytes: 413 BODY_TOO_LARGE, nothing is stored or delivered', async () => {
    const before = setup.app.receipts.length;
    const refused = await sendAsync(setup.caller, SERVICE, '/too-large', { body: 'x'.repeat(1025) });
    assert.equal(refused.status, 413);
    assert.equal(refused.code, 'BODY_TOO_LARGE');
    const fits = await sendAsync(setup.caller, SERVICE, '/fits', { body: 'x'.repeat(1024) });
    assert.equal(fits.status, 202, 'a body of exactly the limit is accepted');
    await untilState(setup.caller, fits.id, ['delivered']);
    assert.deepEqual(setup.app.receipts.slice(before).map((r) => r.url), ['/fits'], 'only the accepted message reached the app');
  });

  test('the caller\'s own Idempotency-Key: a second message with the same key is answered from the record and never reaches the app', async () => {
    const { app, caller, receiver } = setup;
    const duplicatesBefore = await metric(receiver, 'mcp_async_duplicates_dropped_total');
    const first = await sendAsync(caller, SERVICE, '/charge', { body: 'first', headers: { 'idempotency-key': 'order-42' } });
    await untilState(caller, first.id, ['delivered']);
    const second = await sendAsync(caller, SERVICE, '/charge', { body: 'second', headers: { 'idempotency-key': 'order-42' } });
    const view = await untilState(caller, second.id, ['delivered']);
    const seen = app.receipts.filter((r) => r.headers['idempotency-key'] === 'order-42');
    assert.equal(seen.length, 1, 'the app got the key once');
    assert.equal(seen[0]!.messageId, first.id);
    assert.equal(seen[0]!.body, 'first');
    assert.equal(view.response?.status, 200);
    assert.equal(view.response?.headers['mcp-mesh-duplicate'], 'true', 'the second was answered from the record');
    assert.equal(JSON.parse(view.response!.body!).body, 'first', 'with the answer the first one got');
    assert.equal(await metric(receiver, 'mcp_async_duplicates_dropped_total') - duplicatesBefore, 1);
  });
});

describe('redelivery and the dead-letter queue', { timeout: 90_000 }, () => {
  let setup: Setup;
  /** Paths the app answers 500 to while they are in here. */
  const broken = new Set<string>();
  before(async () => {
    setup = await startSetup({ policy: asyncPolicy(SERVICE, { attempts: 3, base: '10ms', max: '50ms' }, NO_BREAKERS) });
    setup.app.answer = (r) => (broken.has(r.url) ? 500 : 200);
  });
  after(() => setup?.close());

  const dead = (id: string) => untilState(setup.caller, id, ['dead', 'delivered', 'failed']).then((view) => {
    assert.equal(view.state, 'dead', `went to the dead-letter queue: ${JSON.stringify(view)}`);
    return view;
  });
  const deadGauge = (value: number) => untilMetric(setup.caller, 'mcp_outbox_messages', { state: 'dead' }, (v) => v === value);

  test('a 500 is retried up to async.attempts, then a dead letter (listed, counted); fixed and replayed, it reaches the app once more and is delivered', async () => {
    const { app, caller } = setup;
    broken.add('/charge/1');
    const accepted = await sendAsync(caller, SERVICE, '/charge/1', { body: 'one' });
    assert.equal(accepted.status, 202);

    const view = await dead(accepted.id);
    assert.equal(view.attempts, 3);
    assert.equal(view.lastError?.code, 'APP_STATUS');
    assert.equal(view.lastError?.status, 500);
    assert.equal(view.response?.status, 500, 'the last answer is kept');
    const tries = receiptsOf(app, accepted.id);
    assert.deepEqual(tries.map((r) => r.status), [500, 500, 500], 'three attempts reached the app');

    const list = await meshApi<{ deadLetters: MessageView[]; next?: string }>(caller, 'GET', '/mesh/v1/dead-letters');
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.deadLetters.map((d) => [d.id, d.state]), [[accepted.id, 'dead']]);
    const one = await meshApi<MessageView>(caller, 'GET', `/mesh/v1/dead-letters/${accepted.id}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.attempts, 3);
    await deadGauge(1);
    assert.equal(await metric(caller, 'mcp_async_deliveries_total', { ...SERVICE_LABEL, outcome: 'retry' }), 2);
    assert.equal(await metric(caller, 'mcp_async_deliveries_total', { ...SERVICE_LABEL, outcome: 'dead' }), 1);

    broken.delete('/charge/1');
    const replay = await meshApi<{ replayed: string[] }>(caller, 'POST', `/mesh/v1/dead-letters/${accepted.id}/replay`);
    assert.equal(replay.status, 200);
    assert.deepEqual(replay.json.replayed, [accepted.id]);
    const delivered = await untilState(caller, accepted.id, ['delivered', 'dead', 'failed']);
    assert.equal(delivered.state, 'delivered');
    assert.equal(delivered.attempts, 1, 'attempts start again from zero');
    assert.equal(delivered.response?.status, 200);
    const all = receiptsOf(app, accepted.id);
    assert.deepEqual(all.map((r) => r.status), [500, 500, 500, 200], 'after the fix the app got it exactly once more, and answered 2xx');
    assert.ok(all.every((r) => r.body === 'one'));

    const gone = await meshApi(caller, 'GET', `/mesh/v1/dead-letters/${accepted.id}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.code, 'MESSAGE_NOT_FOUND');
    await deadGauge(0);
    assert.equal(await metric(caller, 'mcp_async_deliveries_total', { ...SERVICE_LABEL, outcome: 'delivered' }), 1);
  });

  test('replay all: every dead letter (listed in pages) goes back to the queue and is delivered once', async () => {
    const { app, caller } = setup;
    const paths = ['/batch/a', '/batch/b', '/batch/c'];
    for (const p of paths) broken.add(p);
    const accepted: Accepted[] = [];
    for (const p of paths) accepted.push(await sendAsync(caller, SERVICE, p, { body: p }));
    for (const message of accepted) await dead(message.id);
    await deadGauge(3);

    const page1 = await meshApi<{ deadLetters: MessageView[]; next?: string }>(caller, 'GET', '/mesh/v1/dead-letters?limit=2');
    assert.deepEqual(page1.json.deadLetters.map((d) => d.id), accepted.slice(0, 2).map((a) => a.id), 'oldest first');
    assert.equal(page1.json.next, accepted[1]!.id);
    const page2 = await meshApi<{ deadLetters: MessageView[]; next?: string }>(caller, 'GET', `/mesh/v1/dead-letters?limit=2&after=${page1.json.next}`);
    assert.deepEqual(page2.json.deadLetters.map((d) => d.id), [accepted[2]!.id]);
    assert.equal(page2.json.next, undefined);

    for (const p of paths) broken.delete(p);
    const replay = await meshApi<{ replayed: string[] }>(caller, 'POST', '/mesh/v1/dead-letters/replay');
    assert.equal(replay.status, 200);
    assert.deepEqual([...replay.json.replayed].sort(), accepted.map((a) => a.id).sort());
    for (const message of accepted) {
      const view = await untilState(caller, message.id, ['delivered', 'dead', 'failed']);
      assert.equal(view.state, 'delivered');
      assert.deepEqual(receiptsOf(app, message.id).map((r) => r.status), [500, 500, 500, 200]);
    }
    await deadGauge(0);
    const empty = await meshApi<{ deadLetters: MessageView[] }>(caller, 'GET', '/mesh/v1/dead-letters');
    assert.deepEqual(empty.json.deadLetters, []);
  });

  test('delete one (204) and delete all: they are gone for good and never delivered', async () => {
    const { app, caller } = setup;
    const paths = ['/drop/a', '/drop/b'];
    for (const p of paths) broken.add(p);
    const [a, b] = [await sendAsync(caller, SERVICE, paths[0]!, { body: 'a' }), await sendAsync(caller, SERVICE, paths[1]!, { body: 'b' })];
    await dead(a!.id);
    await dead(b!.id);
    await deadGauge(2);
    for (const p of paths) broken.delete(p);

    const deleted = await meshApi(caller, 'DELETE', `/mesh/v1/dead-letters/${a!.id}`);
    assert.equal(deleted.status, 204);
    const gone = await meshApi(caller, 'GET', `/mesh/v1/dead-letters/${a!.id}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.code, 'MESSAGE_NOT_FOUND');
    const replayGone = await meshApi(caller, 'POST', `/mesh/v1/dead-letters/${a!.id}/replay`);
    assert.equal(replayGone.status, 404);
    const again = await meshApi(caller, 'DELETE', `/mesh/v1/dead-letters/${a!.id}`);
    assert.equal(again.status, 404, 'a second delete finds nothing');
    await deadGauge(1);

    const all = await meshApi<{ deleted: number }>(caller, 'DELETE', '/mesh/v1/dead-letters');
    assert.equal(all.status, 200);
    assert.deepEqual(all.json, { deleted: 1 });
    const empty = await meshApi<{ deadLetters: MessageView[] }>(caller, 'GET', '/mesh/v1/dead-letters');
    assert.deepEqual(empty.json.deadLetters, []);
    await deadGauge(0);
    const replayAll = await meshApi<{ replayed: string[] }>(caller, 'POST', '/mesh/v1/dead-letters/replay');
    assert.deepEqual(replayAll.json.replayed, [], 'nothing left to replay');
    for (const message of [a!, b!]) {
      assert.equal(await messageStatus(caller, message.id), undefined, 'the message is deleted, not just hidden');
      assert.deepEqual(receiptsOf(app, message.id).map((r) => r.status), [500, 500, 500], 'never delivered after its deletion');
    }
  });
});

describe('ordering keys under injected failures', { timeout: 60_000 }, () => {
  const KEYS = ['cust-a', 'cust-b', 'cust-c', 'cust-d'];
  const PER_KEY = 40;
  let setup: Setup;
  before(async () => {
    // Jittered back-off: without ordering, a retried message would land after later ones.
    setup = await startSetup({ policy: asyncPolicy(SERVICE, { attempts: 10, base: '10ms', max: '50ms' }, NO_BREAKERS) });
  });
  after(() => setup?.close());

  test('same key: the order of successful receipt equals the send order, and nothing overtakes a message being retried', async () => {
    const { app, caller, agent } = setup;
    // Every third message fails with 503 on its first delivery.
    const failedOnce = new Set<string>();
    app.answer = (r) => {
      const n = Number(r.body.split(':')[1]);
      if (n % 3 === 1 && !failedOnce.has(r.messageId!)) {
        failedOnce.add(r.messageId!);
        return 503;
      }
      return 200;
    };
    // Each key's messages are sent one after the other (202 before the next), the keys side by side.
    const sent = new Map<string, Accepted[]>();
    await Promise.all(KEYS.map(async (key) => {
      const list: Accepted[] = [];
      for (let n = 0; n < PER_KEY; n++) {
        const accepted = await sendAsync(caller, SERVICE, `/ledger/${key}`, { body: `${key}:${n}`, headers: { 'mcp-mesh-ordering-key': key }, dispatcher: agent });
        assert.equal(accepted.status, 202);
        list.push(accepted);
      }
      sent.set(key, list);
    }));
    const total = KEYS.length * PER_KEY;
    await app.waitForCount(() => app.successes().length, total, { ms: 30_000, stallMs: 10_000, what: 'successful receipts' });
    await untilMetric(caller, 'mcp_outbox_messages', { state: 'delivered' }, (v) => v === total, 10_000);

    for (const key of KEYS) {
      const mine = app.receipts.filter((r) => r.body.startsWith(`${key}:`));
      const order = mine.filter((r) => r.status === 200).map((r) => Number(r.body.split(':')[1]));
      assert.deepEqual(order, Array.from({ length: PER_KEY }, (_, n) => n), `${key}: successful receipts in send order`);
      // Stronger: one at a time. Each receipt is the next message, or a redelivery of the one just failed.
      let next = 0;
      for (const receipt of mine) {
        const n = Number(receipt.body.split(':')[1]);
        assert.equal(n, next, `${key}: receipt ${receipt.index} is message ${n} while ${next} was not delivered yet`);
        if (receipt.status === 200) next++;
      }
      assert.equal(mine.length, PER_KEY + Math.floor((PER_KEY + 1) / 3), `${key}: each failing message came exactly twice`);
      for (const [n, accepted] of sent.get(key)!.entries()) {
        assert.equal(mine.find((r) => r.body === `${key}:${n}`)!.messageId, accepted.id);
      }
    }
    const retried = await messageStatus(caller, sent.get(KEYS[0]!)![1]!.id);
    assert.equal(retried?.state, 'delivered');
    assert.equal(retried?.attempts, 2);
    assert.equal(retried?.orderingKey, KEYS[0]);
  });
});

// What keeps this deterministic: the flood cannot drain fast (SLOTS low-lane deliveries at a time, each
// holding the app 20 ms: at most 200 a second, so 2,000 take ≥ 10 s), and the high message is sent only
// once the whole flood is accepted and flowing. With working lanes it leaves at once on a high slot
// (milliseconds); with broken lanes it would queue behind the ~1,900 undelivered low ones (seconds).
// What is asserted is the order, not a time: when the high message reaches the app, at least a quarter
// of the flood, all accepted before it, is still undelivered. Its latency is printed, not asserted.
describe('priority lanes: a high-priority message under a low-priority flood', { timeout: 90_000 }, () => {
  const FLOOD = 2000;
  /** Deliveries per lane at once, and how long the app takes over each flood message. */
  const SLOTS = 4;
  const FLOOD_WORK_MS = 20;
  let setup: Setup;
  before(async () => {
    setup = await startSetup({ policy: asyncPolicy(SERVICE, { attempts: 10, base: '10ms', max: '50ms' }), storage: { deliveryConcurrency: SLOTS } });
    // The flood keeps the app busy: SLOTS × 20 ms at a time drains at most 200 messages a second.
    setup.app.answer = async (r) => {
      if (r.url.startsWith('/flood')) await delay(FLOOD_WORK_MS);
      return 200;
    };
  });
  after(() => setup?.close());

  /** Send one high-priority message; ms from sending it until the app has it. */
  async function urgent(label: string): Promise<{ ms: number; floodAtArrival: number; accepted: Accepted }> {
    const { app, caller } = setup;
    const started = performance.now();
    const accepted = await sendAsync(caller, SERVICE, `/urgent/${label}`, { body: label, headers: { 'mcp-mesh-priority': 'high' } });
    assert.equal(accepted.status, 202);
    await app.waitFor(() => receiptsOf(app, accepted.id).length > 0, 30_000, `urgent message ${label} never arrived`);
    const receipt = receiptsOf(app, accepted.id)[0]!;
    return { ms: receipt.at - started, floodAtArrival: app.receipts.filter((r) => r.url.startsWith('/flood') && r.index < receipt.index).length, accepted };
  }

  test('it overtakes the flood queued before it (latency printed, next to the idle latency)', async (t) => {
    const { app, caller, agent } = setup;
    const idle: number[] = [];
    for (let i = 0; i < 5; i++) idle.push((await urgent(`idle-${i}`)).ms);
    const idleMs = [...idle].sort((a, b) => a - b)[2]!;

    const flood = await inParallel(FLOOD, 32, (i) => sendAsync(caller, SERVICE, `/flood/${i}`, { body: String(i), headers: { 'mcp-mesh-priority': 'low' }, dispatcher: agent }));
    assert.ok(flood.every((a) => a.status === 202), 'the whole flood was accepted');
    // The low lane is saturated: the app is working through it.
    await app.waitFor(() => app.receipts.filter((r) => r.url.startsWith('/flood')).length >= 20, 10_000, 'the flood never started');

    const loaded: { ms: number; floodAtArrival: number }[] = [];
    for (let i = 0; i < 3; i++) loaded.push(await urgent(`loaded-${i}`));
    for (const [i, sample] of loaded.entries()) {
      const queuedBehind = FLOOD - sample.floodAtArrival;
      const drainMs = (queuedBehind * FLOOD_WORK_MS) / SLOTS;
      t.diagnostic(`high #${i} under the flood: ${sample.ms.toFixed(1)} ms (idle ${idleMs.toFixed(1)} ms); ${queuedBehind} low messages still undelivered, ≥ ${Math.round(drainMs)} ms of work`);
      assert.ok(queuedBehind >= FLOOD / 4, `the high message overtook the flood accepted before it (${queuedBehind} low messages still undelivered)`);
    }
    const view = await messageStatus(caller, (await urgent('check')).accepted.id);
    assert.equal(view?.priority, 'high');
    const low = await messageStatus(caller, flood[0]!.id);
    assert.equal(low?.priority, 'low');
  });
});
