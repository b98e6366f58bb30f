// Pub/sub between real sidecars: subscriptions come from the policies the publishing sidecar loads.
// Two subscribing services with two replicas each; competing delivery gives each event to one
// replica of each service, broadcast to every replica, and each exactly once.
//
//   test ─POST /mesh/v1/publish/<topic>─▶ orders sidecar ══▶ billing#0, billing#1, shipping#0, shipping#1 sidecars ─▶ their apps
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import {
  asyncPolicy, FAST_LINK, inParallel, messageStatus, meshApi, metric, policyFolder, removeDir, startRecordingApp,
  type Receipt, type RecordingApp,
} from '../helpers/async.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { until } from '../helpers/wait.ts';

const ORDERS = 50;
const PRICES = 20;

interface Published {
  id: string;
  topic: string;
  messages: { id: string; service: string; namespace: string; endpoint?: string; location: string }[];
}

const FAST = { attempts: 10, base: '10ms', max: '50ms' };
const BILLING = asyncPolicy('billing', FAST, '  subscriptions:\n    - { topic: orders, path: /events/orders }\n');
const SHIPPING = asyncPolicy('shipping', FAST, [
  '  subscriptions:',
  '    - { topic: orders, path: /events/orders, delivery: competing }',
  '    - { topic: prices, path: /events/prices, delivery: broadcast }',
  '',
].join('\n'));

describe('pub/sub: competing and broadcast subscriptions across replicas', { timeout: 90_000 }, () => {
  const apps: Record<'billing' | 'shipping', RecordingApp[]> = { billing: [], shipping: [] };
  const replicas: Record<'billing' | 'shipping', SidecarProcess[]> = { billing: [], shipping: [] };
  let publisher: SidecarProcess;
  let policies: string;
  let agent: Agent;

  before(async () => {
    policies = policyFolder({ 'billing.yaml': BILLING, 'shipping.yaml': SHIPPING });
    agent = new Agent({ connections: 16 });
    for (const service of ['billing', 'shipping'] as const) {
      for (let i = 0; i < 2; i++) {
        const app = await startRecordingApp(`${service}#${i}`);
        apps[service].push(app);
        replicas[service].push(await SidecarProcess.start({ config: sidecarConfig({ service, appPort: app.port, extra: { link: FAST_LINK } }), name: `${service}#${i}` }));
      }
    }
    publisher = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'orders', appPort: 1,
        peers: { billing: replicas.billing.map((s) => s.inboundAddress), shipping: replicas.shipping.map((s) => s.inboundAddress) },
        extra: { link: FAST_LINK, policies: [policies] },
      }),
      name: 'orders (publisher)',
    });
    const all = [...replicas.billing, ...replicas.shipping];
    await Promise.all(all.map((s) => publisher.waitForLog((l) => l.msg === 'link ready' && l.peer === s.inboundAddress)));
  });
  after(async () => {
    await agent?.close();
    await Promise.all([publisher, ...replicas.billing, ...replicas.shipping].map((s) => s?.stop()));
    await Promise.all([...apps.billing, ...apps.shipping].map((a) => a.close()));
    removeDir(policies);
  });

  async function publish(topic: string, body: string): Promise<{ status: number; code: string | undefined; json: Published }> {
    return meshApi<Published>(publisher, 'POST', `/mesh/v1/publish/${topic}`, { body, headers: { 'content-type': 'application/json' }, dispatcher: agent });
  }

  /** Receipts of `path` across the apps, successful ones only. */
  const received = (list: RecordingApp[], path: string): Receipt[] => list.flatMap((a) => a.successes((r) => r.url === path));

  test(`${ORDERS} events to a competing topic reach each service exactly once; ${PRICES} to a broadcast topic reach every replica exactly once`, async (t) => {
    const orderEvents = await inParallel(ORDERS, 8, (i) => publish('orders', JSON.stringify({ order: i })));
    const priceEvents = await inParallel(PRICES, 8, (i) => publish('prices', JSON.stringify({ price: i })));

    // The 202 names one message per subscribing service, or per replica for broadcast.
    for (const event of orderEvents) {
      assert.equal(event.status, 202, JSON.stringify(event.json));
      assert.equal(event.json.topic, 'orders');
      assert.match(event.json.id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
      assert.deepEqual(event.json.messages.map((m) => m.service).sort(), ['billing', 'shipping']);
      for (const m of event.json.messages) {
        assert.equal(m.endpoint, undefined, 'competing: no replica chosen at publish time');
        assert.equal(m.location, `/mesh/v1/messages/${m.id}`);
      }
    }
    for (const event of priceEvents) {
      assert.equal(event.status, 202, JSON.stringify(event.json));
      assert.deepEqual(event.json.messages.map((m) => m.service), ['shipping', 'shipping']);
      assert.deepEqual(event.json.messages.map((m) => m.endpoint).sort(), replicas.shipping.map((s) => s.inboundAddress).sort(), 'broadcast: one message per replica');
    }

    const expected = ORDERS * 2 + PRICES * 2;
    const progress = () => received(apps.billing, '/events/orders').length + received(apps.shipping, '/events/orders').length
      + received(apps.shipping, '/events/prices').length;
    await apps.billing[0]!.waitForCount(progress, expected, { ms: 30_000, stallMs: 10_000, what: 'event deliveries' });
    // Every copy is settled at the publisher: nothing more can arrive after this.
    await until(async () => await metric(publisher, 'mcp_outbox_messages', { state: 'delivered' }) === expected
      && await metric(publisher, 'mcp_outbox_messages', { state: 'queued' }) === 0,
    { ms: 15_000, message: `the publisher never showed ${expected} copies delivered` });

    const bodies = (list: Receipt[]) => list.map((r) => r.body).sort();
    const orderBodies = Array.from({ length: ORDERS }, (_, i) => JSON.stringify({ order: i })).sort();
    const priceBodies = Array.from({ length: PRICES }, (_, i) => JSON.stringify({ price: i })).sort();
    for (const service of ['billing', 'shipping'] as const) {
      const all = apps[service].flatMap((a) => a.receipts.filter((r) => r.url === '/events/orders'));
      assert.deepEqual(bodies(all), orderBodies, `${service}: every orders event exactly once across its replicas`);
      const perReplica = apps[service].map((a) => a.receipts.filter((r) => r.url === '/events/orders').length);
      t.diagnostic(`${service}: orders events per replica ${perReplica.join(' + ')}`);
      assert.ok(perReplica.every((n) => n > 0), `competing consumers share the events (${perReplica.join(' + ')})`);
      const ids = new Set(orderEvents.map((e) => e.json.messages.find((m) => m.service === service)!.id));
      for (const receipt of all) {
        assert.equal(receipt.method, 'POST');
        assert.equal(receipt.topic, 'orders');
        assert.equal(receipt.headers['content-type'], 'application/json');
        assert.ok(ids.has(receipt.messageId!), `${service} got the message the 202 named for it`);
      }
    }
    for (const [i, app] of apps.shipping.entries()) {
      const got = app.receipts.filter((r) => r.url === '/events/prices');
      assert.deepEqual(bodies(got), priceBodies, `shipping#${i}: every prices event exactly once`);
      assert.ok(got.every((r) => r.topic === 'prices'));
      const mine = new Set(priceEvents.map((e) => e.json.messages.find((m) => m.endpoint === replicas.shipping[i]!.inboundAddress)!.id));
      assert.ok(got.every((r) => mine.has(r.messageId!)), `shipping#${i} got the copies addressed to it`);
    }
    assert.ok(apps.billing.every((a) => a.receipts.every((r) => r.url === '/events/orders')), 'billing subscribes to orders only');

    const copy = orderEvents[0]!.json.messages[0]!;
    const view = await messageStatus(publisher, copy.id);
    assert.equal(view?.state, 'delivered');
    assert.equal(view?.topic, 'orders');
    assert.equal(view?.eventId, orderEvents[0]!.json.id);
  });

  test('a topic nobody subscribes to: 404 UNKNOWN_TOPIC, nothing stored', async () => {
    const acceptedBefore = await metric(publisher, 'mcp_async_accepted_total');
    const refused = await publish('nobody-listens', '{}');
    assert.equal(refused.status, 404);
    assert.equal(refused.code, 'UNKNOWN_TOPIC');
    assert.equal(await metric(publisher, 'mcp_async_accepted_total'), acceptedBefore);
  });
});
