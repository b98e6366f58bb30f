// SIGTERM: stop taking new calls, finish the ones in flight (within shutdown.grace), close links,
// exit 0. Each test gets its own sidecars, since it stops them.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { assertMeshError, startMesh, type Mesh } from '../helpers/mesh.ts';
import { within } from '../helpers/wait.ts';
import { createServer } from 'node:http';
import { listen, type HeldRequest } from '../helpers/apps.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { ERROR_CODES, type ErrorCode } from '../../sidecar/src/errors/codes.ts';

/**
 * A sidecar stopped with a call held by the app (never released, so only the grace can end the wait),
 * under shutdown.grace 300ms: the grace in force is the one configured, the call was still held when
 * the sidecar gave up on it, and it gave up no earlier than the grace. That lower bound cannot flake
 * (a timer never fires early). How long past the grace the exit came is not measured: the held call
 * carries CALL_DEADLINE, and the tests assert that the grace, not that deadline, ended it.
 */
function assertCutAtGrace(sidecar: SidecarProcess, call: HeldRequest, signalledAt: number): void {
  assert.ok(!call.res.writableFinished, 'the app never answered: the grace, not the call, ended the wait');
  const draining = sidecar.logs.find((l) => l.msg === 'shutting down: draining');
  assert.equal(draining?.graceMs, 300, 'the configured grace is the one in force');
  assert.ok(sidecar.logs.some((l) => l.msg === 'shut down'), 'shut down in order');
  const waited = performance.now() - signalledAt;
  assert.ok(waited >= 290, `not cut before the grace ended (exited ${waited.toFixed(0)} ms after SIGTERM)`);
}

/**
 * The deadline of a call held past a 300 ms grace, shorter than the 5 s default grace: the mesh's own
 * clock for the order of events. A sidecar that kept the call longer than its grace (the default
 * instead of the configured one) would answer DEADLINE_EXCEEDED before cutting it.
 */
const CALL_DEADLINE = { 'mcp-mesh-timeout': '4s' };

describe('graceful shutdown', { timeout: 120_000 }, () => {
  let mesh: Mesh | undefined;
  let agent: Agent | undefined;
  afterEach(async () => {
    await agent?.close();
    await mesh?.close();
    mesh = undefined;
    agent = undefined;
  });

  test('SIGTERM to the callee\'s sidecar: the call in flight completes, new calls are refused with a code, exit 0', async () => {
    mesh = await startMesh();
    const { app, caller, callee } = mesh;
    const held = app.nextHeld();
    const inFlight = request(`${caller.outboundUrl}/hold/draining`, { method: 'POST', headers: { host: 'payments' }, body: 'slow' });
    const call = await within(held, 5000, 'the app never got the call');

    const drainSeen = caller.mark();
    callee.signal('SIGTERM');
    await callee.waitForLog('shutting down');
    await caller.waitForLog((l) => l.msg === 'peer is draining' && l.peer === callee.inboundAddress, { since: drainSeen });

    // A draining peer takes no new calls; the caller answers at once with a coded 503.
    const refused = await request(`${caller.outboundUrl}/new`, { headers: { host: 'payments' } });
    const error = await assertMeshError(refused, 503, refused.headers['mcp-mesh-error'] as string);
    assert.ok(['NO_HEALTHY_ENDPOINT', 'SHUTTING_DOWN'].includes(error.code), error.code);
    assert.equal(app.count('/new'), 0, 'the new call never reached the app');

    // The slow call still finishes, then the sidecar exits cleanly.
    call.release('finished during drain');
    const response = await inFlight;
    assert.equal(response.statusCode, 200);
    assert.equal(await response.body.text(), 'finished during drain');
    assert.deepEqual(await within(callee.exited, 15_000, 'callee did not exit'), { code: 0, signal: null });
    assert.ok(callee.logs.some((l) => l.msg === 'shut down'));
  });

  test('SIGTERM to the caller\'s sidecar: the call in flight completes, exit 0', async () => {
    mesh = await startMesh();
    const { app, caller } = mesh;
    agent = new Agent({ connections: 2 });
    const held = app.nextHeld();
    const inFlight = request(`${caller.outboundUrl}/hold/outbound`, { headers: { host: 'payments' }, dispatcher: agent });
    const call = await within(held, 5000, 'the app never got the call');

    caller.signal('SIGTERM');
    await caller.waitForLog('shutting down');
    call.release('finished while the caller drained');
    const response = await inFlight;
    assert.equal(response.statusCode, 200);
    assert.equal(await response.body.text(), 'finished while the caller drained');
    assert.deepEqual(await within(caller.exited, 15_000, 'caller did not exit'), { code: 0, signal: null });
  });

  test('a call still running when shutdown.grace ends is cut with a coded error, and the sidecar still exits 0', async () => {
    // A short connect timeout: the caller's retry of the cut call finds the only replica gone sooner.
    mesh = await startMesh({ calleeExtra: { shutdown: { grace: '300ms' } }, callerExtra: { timeouts: { connect: '200ms' } } });
    const { app, caller, callee } = mesh;
    const held = app.nextHeld();
    const inFlight = request(`${caller.outboundUrl}/hold/too-slow`, { headers: { host: 'payments', ...CALL_DEADLINE } });
    const call = await within(held, 5000, 'the app never got the call');
    const started = performance.now();
    callee.signal('SIGTERM');
    assert.deepEqual(await within(callee.exited, 15_000, 'callee did not exit at the end of its grace'), { code: 0, signal: null });
    assertCutAtGrace(callee, call, started);
    const response = await inFlight;
    // The GET is idempotent, so the caller retries the broken call; with the only replica gone the
    // retry finds no endpoint. Either way the answer is a coded mesh error, and not DEADLINE_EXCEEDED.
    const code = response.headers['mcp-mesh-error'] as ErrorCode;
    assert.ok(['LINK_BROKEN', 'SHUTTING_DOWN', 'APP_RESET', 'NO_HEALTHY_ENDPOINT'].includes(code), `cut by the grace, not ended by its deadline: ${code}`);
    assert.equal(response.statusCode, ERROR_CODES[code].status);
    await response.body.dump();
    await within(call.aborted, 5000, 'the app\'s request was not abandoned');
  });

  test('the caller\'s sidecar cuts a call still running when shutdown.grace ends, and exits 0', async () => {
    mesh = await startMesh({ callerExtra: { shutdown: { grace: '300ms' } } });
    const { app, caller } = mesh;
    const held = app.nextHeld();
    const inFlight = request(`${caller.outboundUrl}/hold/never`, { headers: { host: 'payments', ...CALL_DEADLINE } });
    const outcome = inFlight.then((response) => response.statusCode, (err: Error) => err);
    const call = await within(held, 5000, 'the app never got the call');
    const started = performance.now();
    caller.signal('SIGTERM');
    assert.deepEqual(await within(caller.exited, 15_000, 'caller did not exit at the end of its grace'), { code: 0, signal: null });
    assertCutAtGrace(caller, call, started);
    assert.ok((await outcome) instanceof Error, `the connection to the calling app was cut (not answered: ${String(await outcome)})`);
    await within(call.aborted, 5000, 'the call was not abandoned at the far end');
  });

  test('during its shutdown the sidecar keeps serving its app\'s calls, and exits as soon as the app has gone', async () => {
    mesh = await startMesh();
    const { callee } = mesh;
    // A caller whose app is alive (any server on the port will do): its sidecar must wait for it.
    const callerApp = await listen(createServer((_req, res) => res.end('caller app')));
    const caller = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: callerApp.port, peers: { payments: [callee.inboundAddress] }, extra: { shutdown: { grace: '20s' } } }),
      env: { MESH_SHUTDOWN_WAIT_FOR_APP: 'true' },
    });
    try {
      await caller.waitForLog((l) => l.msg === 'link ready');
      caller.signal('SIGTERM');
      await caller.waitForLog('shutting down');
      // The app is still up (finishing its own work): its new calls still go through.
      const lastCall = await request(`${caller.outboundUrl}/last-call`, { method: 'POST', headers: { host: 'payments' }, body: 'flush' });
      assert.equal(lastCall.statusCode, 200);
      assert.equal(JSON.parse(await lastCall.body.text()).body, 'flush');
      const readiness = await request(`http://127.0.0.1:${caller.ports.admin}/readyz`);
      assert.equal(readiness.statusCode, 503, 'not ready while draining');
      await readiness.body.dump();
      assert.equal(caller.exitStatus, undefined, 'still running while the app is');
      // The app exits: the sidecar follows at once, long before the 20 s grace. Its log says which
      // ended the wait (the app gone, not the grace over); the limit below is shorter than the grace.
      await callerApp.close();
      assert.deepEqual(await within(caller.exited, 15_000, 'caller did not exit after its app (it waited out its 20 s grace?)'), { code: 0, signal: null });
      const closing = caller.logs.find((l) => l.msg.endsWith(': closing the outbound listener'));
      assert.equal(closing?.msg, 'the app has gone: closing the outbound listener');
      assert.equal(closing?.appGone, true);
    } finally {
      await caller.stop();
      await callerApp.close().catch(() => {});
    }
  });

  test('SIGTERM with nothing in flight: exit 0', async () => {
    mesh = await startMesh();
    mesh.caller.signal('SIGTERM');
    mesh.callee.signal('SIGTERM');
    assert.deepEqual(await within(mesh.caller.exited, 15_000, 'caller did not exit'), { code: 0, signal: null });
    assert.deepEqual(await within(mesh.callee.exited, 15_000, 'callee did not exit'), { code: 0, signal: null });
  });
});
