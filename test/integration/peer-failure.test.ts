// A peer sidecar that dies or goes silent: calls fail with coded mesh errors (never a hang or a
// dropped connection), and the link recovers when the peer is back.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startTestApp, type Echo, type TestApp } from '../helpers/apps.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';
import { ERROR_CODES, type ErrorCode } from '../../sidecar/src/errors/codes.ts';

/** Fast reconnects and failure detection so the test is quick; the behaviour is the same as with defaults. */
const LINK = { reconnectBase: '50ms', reconnectMax: '250ms', heartbeatInterval: '100ms', unhealthyAfter: '500ms' };
// CIRCUIT_OPEN: once enough calls failed, the service's breaker fails the rest fast.
const FAILURE_CODES = new Set(['LINK_BROKEN', 'PEER_UNAVAILABLE', 'NO_HEALTHY_ENDPOINT', 'CIRCUIT_OPEN']);

interface Outcome {
  ok: boolean;
  status: number;
  code: string | undefined;
  /** Sent after the peer was killed. */
  afterKill: boolean;
}

describe('peer sidecar failure and recovery', { timeout: 120_000 }, () => {
  let app: TestApp;
  let payments: SidecarProcess;
  let orders: SidecarProcess;
  let agent: Agent;
  let inboundPort: number;

  const paymentsConfig = (port: number) => sidecarConfig({ service: 'payments', appPort: app.port, inboundPort: port, extra: { link: LINK } });

  before(async () => {
    app = await startTestApp();
    payments = await SidecarProcess.start({ config: paymentsConfig(0), name: 'payments#1' });
    inboundPort = payments.ports.inbound;
    orders = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: [payments.inboundAddress] }, extra: { link: LINK, timeouts: { connect: '300ms' } } }),
    });
    await orders.waitForLog((l) => l.msg === 'link ready' && l.peer === payments.inboundAddress);
    agent = new Agent({ connections: 16 });
  });
  after(async () => {
    await agent?.close();
    await Promise.all([orders, payments].map((s) => s?.stop()));
    await app?.close();
  });

  /** One echo call; any answer is recorded, a transport failure (no answer at all) is an error. */
  async function echoCall(afterKill: () => boolean): Promise<Outcome> {
    const id = randomUUID();
    const sentAfterKill = afterKill();
    const response = await request(`${orders.outboundUrl}/load`, { method: 'POST', headers: { host: 'payments' }, body: id, dispatcher: agent });
    const text = await response.body.text();
    if (response.statusCode === 200) {
      assert.equal((JSON.parse(text) as Echo).body, id, 'a successful call got its own answer');
      return { ok: true, status: 200, code: undefined, afterKill: sentAfterKill };
    }
    const code = response.headers['mcp-mesh-error'] as string | undefined;
    assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, code, `coded error body: ${text}`);
    return { ok: false, status: response.statusCode, code, afterKill: sentAfterKill };
  }

  async function assertCallsSucceed(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const outcome = await echoCall(() => false);
      assert.ok(outcome.ok, `call ${i} after recovery: ${outcome.status} ${outcome.code}`);
    }
  }

  test('SIGKILL mid-load: in-flight and new calls fail with coded errors; after a restart on the same port the link recovers', async () => {
    // A call the app is holding is certainly in flight on the link when the peer dies.
    const heldArrived = app.nextHeld();
    const inFlight = request(`${orders.outboundUrl}/hold/in-flight`, { method: 'POST', headers: { host: 'payments' }, body: 'x', dispatcher: agent });
    await within(heldArrived, 5000, 'the app never got the held call');

    // Bounded load: 6 workers, at most 3,000 calls or 20 s in all.
    let killed = false;
    let stop = false;
    let successesBeforeKill = 0;
    let failuresAfterKill = 0;
    let onProgress: () => void = () => {};
    const outcomes: Outcome[] = [];
    const deadline = Date.now() + 20_000;
    const worker = async () => {
      while (!stop && outcomes.length < 3000 && Date.now() < deadline) {
        const outcome = await echoCall(() => killed);
        outcomes.push(outcome);
        if (outcome.ok && !outcome.afterKill) successesBeforeKill++;
        if (!outcome.ok && outcome.afterKill) failuresAfterKill++;
        onProgress();
      }
    };
    const until = (condition: () => boolean) => new Promise<void>((resolve) => {
      onProgress = () => { if (condition()) resolve(); };
      onProgress();
    });
    const load = Promise.all(Array.from({ length: 6 }, worker));

    // `load` ends on its own bounds if a condition is never met; the asserts below then say so.
    await Promise.race([until(() => successesBeforeKill >= 100), load]);
    assert.ok(successesBeforeKill >= 100, `load ran before the kill (${successesBeforeKill} ok)`);
    const linkDown = orders.mark();
    payments.signal('SIGKILL');
    assert.equal((await payments.exited).signal, 'SIGKILL');
    killed = true; // calls sent from now on cannot have reached the peer
    await orders.waitForLog((l) => l.msg.startsWith('link down') && l.peer === `127.0.0.1:${inboundPort}`, { since: linkDown });
    await Promise.race([until(() => failuresAfterKill >= 20), load]);
    stop = true;
    await load;

    // The held call was on the wire: it fails as LINK_BROKEN, promptly, not at some timeout.
    const held = await within(inFlight, 10_000, 'the in-flight call was never answered');
    const heldBody = await held.body.json() as { error: { code: string } };
    assert.equal(held.statusCode, 502);
    assert.equal(held.headers['mcp-mesh-error'], 'LINK_BROKEN');
    assert.equal(heldBody.error.code, 'LINK_BROKEN');

    assert.ok(successesBeforeKill >= 100 && failuresAfterKill >= 20, `load ran on both sides of the kill (${successesBeforeKill} ok before, ${failuresAfterKill} failed after)`);
    for (const outcome of outcomes.filter((o) => !o.ok)) {
      assert.ok(FAILURE_CODES.has(outcome.code ?? ''), `a failed call carries a link/peer code, got ${outcome.status} ${outcome.code}`);
      assert.equal(outcome.status, ERROR_CODES[outcome.code as ErrorCode].status);
    }
    assert.ok(outcomes.filter((o) => o.afterKill).every((o) => !o.ok), 'nothing succeeded while the peer was dead');

    // The peer comes back on the same address: the link reconnects by itself and calls succeed.
    const linkUp = orders.mark();
    payments = await SidecarProcess.start({ config: paymentsConfig(inboundPort), name: 'payments#2' });
    assert.equal(payments.ports.inbound, inboundPort);
    await orders.waitForLog((l) => l.msg === 'link ready' && l.peer === `127.0.0.1:${inboundPort}`, { since: linkUp, timeoutMs: 15_000 });
    await assertCallsSucceed(20);
  });

  test('a peer that goes silent (SIGSTOP) is marked unhealthy and gets no new calls; it recovers on SIGCONT', async () => {
    const address = `127.0.0.1:${inboundPort}`;
    const silent = orders.mark();
    payments.signal('SIGSTOP');
    try {
      // No heartbeat for link.unhealthyAfter: the link is declared down without any TCP error.
      const down = await orders.waitForLog((l) => l.msg.startsWith('link down') && l.peer === address, { since: silent });
      assert.match(down.msg, /silent/);
      // The silent peer is not offered the call: it fails for want of a ready endpoint (after the
      // 300 ms connect timeout of each try) or by the open breaker, where a call sent to the silent
      // peer would have waited for its 15 s deadline (DEADLINE_EXCEEDED) or its link (LINK_BROKEN).
      // The limit is only a bound on that wait.
      const outcome = await within(echoCall(() => true), 10_000, 'the call waited on the silent peer');
      assert.equal(outcome.ok, false);
      assert.ok(['NO_HEALTHY_ENDPOINT', 'CIRCUIT_OPEN'].includes(outcome.code ?? ''), `refused without trying the silent peer, got ${outcome.status} ${outcome.code}`);
    } finally {
      payments.signal('SIGCONT');
    }
    const back = orders.mark();
    await orders.waitForLog((l) => l.msg === 'link ready' && l.peer === address, { since: back, timeoutMs: 15_000 });
    await assertCallsSucceed(10);
  });
});
