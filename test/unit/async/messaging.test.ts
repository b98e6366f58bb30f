// AsyncMessaging over the real SQLite store, with a stand-in pipeline (no sidecars): the store's
// worker dying is survived by reopening it, and a publish to broadcast-only subscribers with no
// replica known is refused rather than accepted for nobody.
import diagnostics from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { AsyncMessaging } from '../../../sidecar/src/async/messaging.ts';
import type { SqliteMessageStore } from '../../../sidecar/src/async/store.ts';
import type { CallPipeline } from '../../../sidecar/src/call/pipeline.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { compilePolicies } from '../../../sidecar/src/policy/resolve.ts';
import type { Subscriber } from '../../../sidecar/src/policy/resolve.ts';
import { DEFAULTS } from '../../helpers/policies.ts';
import { until } from '../../helpers/wait.ts';

const logger = pino({ level: 'silent' });
const policy = compilePolicies({ policies: [] }, DEFAULTS).table.defaults;

async function start(t: { after: (fn: () => Promise<void>) => void }, subscribers: Subscriber[] = []) {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-messaging-'));
  const delivered: string[] = [];
  const pipeline: CallPipeline = async (call) => {
    delivered.push(call.delivery!.messageId);
    return { status: 200, headers: [{ name: 'content-type', value: 'text/plain' }], body: Buffer.from('ok'), endpoint: '127.0.0.1:1' };
  };
  const messaging = await AsyncMessaging.start({
    storage: { dir, maxBytes: 0, maxMessageBytes: 1 << 20, retentionMs: 60_000, dedupWindowMs: 60_000, deliveryConcurrency: 4 },
    pipeline, logger, endpoints: () => [],
    policies: { resolve: () => policy, subscribers: () => subscribers },
  });
  t.after(async () => {
    await messaging.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { messaging, delivered };
}

const request = { method: 'POST', path: '/x', authority: 'payments', headers: [], body: Buffer.from('hi') };

async function untilDelivered(messaging: AsyncMessaging, id: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await messaging.status(id))?.state === 'delivered') return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail(`message ${id} was not delivered`);
}

describe('AsyncMessaging', () => {
  it('accepts, delivers and shows the answer', async (t) => {
    const { messaging, delivered } = await start(t);
    const id = await messaging.accept({ service: 'payments', namespace: 'default', priority: undefined, orderingKey: undefined, request });
    await untilDelivered(messaging, id);
    assert.deepEqual(delivered, [id]);
    assert.equal((await messaging.status(id))?.response?.body, 'ok');
  });

  it('reopens the store after its worker died, and goes on accepting', async (t) => {
    const { messaging } = await start(t);
    const store = await messaging.store() as SqliteMessageStore; // opened on first use
    await store.failForTesting('crash');
    // The failure is reported by the worker's exit event; the reopen follows at once.
    const reopened = () => { const now = messaging.storeOrProblem(); return now !== store && !(now instanceof MeshError); };
    await until(async () => reopened(), { ms: 10_000, message: 'the store was not reopened' });
    assert.notEqual(messaging.storeOrProblem(), store, 'a new store');
    assert.ok(!(messaging.storeOrProblem() instanceof MeshError), 'and it is open');
    const accepted = await messaging.accept({ service: 'payments', namespace: 'default', priority: undefined, orderingKey: undefined, request });
    await untilDelivered(messaging, accepted);
  });

  it('refuses a publish whose only subscribers are broadcasts with no replica known', async (t) => {
    const { messaging } = await start(t, [{ service: 'audit', namespace: 'default', path: '/e', delivery: 'broadcast' }]);
    await assert.rejects(messaging.publish('t', { headers: [], body: Buffer.from('e'), priority: undefined, orderingKey: undefined }),
      (err: MeshError) => err.code === 'NO_HEALTHY_ENDPOINT');
  });
});

describe('AsyncMessaging: the store opens on first use', () => {
  it('a fresh data directory is not opened at start (no worker thread), but at the first async message', async (t) => {
    const { messaging } = await start(t);
    assert.equal((messaging.storeOrProblem() as MeshError).code, 'STORAGE_UNAVAILABLE', 'nothing opened yet');
    const id = await messaging.accept({ service: 'payments', namespace: 'default', priority: undefined, orderingKey: undefined, request });
    assert.ok(!(messaging.storeOrProblem() instanceof MeshError), 'open now');
    await untilDelivered(messaging, id);
  });

  it('the periodic upkeep does not open a store that was never used', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const { messaging } = await start(t);
    // An open starts the store's worker thread at once, within the upkeep's tick: Node announces each
    // new worker on this channel, so "no open" is seen when it would happen, without waiting.
    let workers = 0;
    const counted = () => { workers++; };
    diagnostics.subscribe('worker_threads', counted);
    t.after(() => diagnostics.unsubscribe('worker_threads', counted));
    t.mock.timers.tick(3 * 60_000);
    assert.equal(workers, 0, 'the upkeep started no store worker');
    assert.equal((messaging.storeOrProblem() as MeshError).code, 'STORAGE_UNAVAILABLE', 'still nothing opened');
    const id = await messaging.accept({ service: 'payments', namespace: 'default', priority: undefined, orderingKey: undefined, request });
    assert.equal(workers, 1, 'the first use does start one (the channel sees opens)');
    await untilDelivered(messaging, id);
  });
});
