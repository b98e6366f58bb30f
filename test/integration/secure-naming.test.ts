// Secure naming, with real sidecar processes: under mutual TLS the calling sidecar sends a call only to
// a peer whose certificate may serve the called service; the called sidecar refuses calls for a
// service it does not serve (also in plaintext).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startTestApp, type TestApp } from '../helpers/apps.ts';
import { metricSum } from '../helpers/prometheus.ts';
import { makeCertDir, type CertDir } from '../helpers/certs.ts';
import { assertMeshError, startMesh, type Mesh } from '../helpers/mesh.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

function call(caller: SidecarProcess, service: string, path = '/echo') {
  return request(`${caller.outboundUrl}${path}`, { headers: { host: service } });
}

async function metrics(sidecar: SidecarProcess): Promise<string> {
  return (await request(`http://127.0.0.1:${sidecar.ports.admin}/metrics`)).body.text();
}

describe('secure naming under mutual TLS', { timeout: 60_000 }, () => {
  let certs: CertDir;
  let app: TestApp;
  let otherApp: TestApp;
  const started: SidecarProcess[] = [];
  /** Service payments, but its certificate is orders' (a reused address, a misconfigured pod). */
  let impostor: SidecarProcess;
  /** Service orders with orders' certificate, in front of otherApp. */
  let orders: SidecarProcess;

  const start = async (config: Record<string, unknown>) => {
    const sidecar = await SidecarProcess.start({ config });
    started.push(sidecar);
    return sidecar;
  };
  /** A caller "web" whose static discovery says payments is at `peer`. */
  const caller = async (peer: SidecarProcess, tls: Record<string, unknown> = {}) => {
    const sidecar = await start(sidecarConfig({ service: 'web', appPort: 1, peers: { payments: [peer.inboundAddress] }, extra: { tls: certs.tls('web', tls) } }));
    await sidecar.waitForLog((l) => l.msg === 'link ready' && l.peer === peer.inboundAddress);
    return sidecar;
  };

  before(async () => {
    certs = makeCertDir(['orders', 'web']);
    [app, otherApp] = await Promise.all([startTestApp(), startTestApp()]);
    [impostor, orders] = await Promise.all([
      start(sidecarConfig({ service: 'payments', appPort: app.port, extra: { tls: certs.tls('orders') } })),
      start(sidecarConfig({ service: 'orders', appPort: otherApp.port, extra: { tls: certs.tls('orders') } })),
    ]);
  });
  after(async () => {
    await Promise.all(started.map((s) => s.stop()));
    await Promise.all([app?.close(), otherApp?.close()]);
    certs?.remove();
  });

  test('a call for payments to a sidecar whose certificate is orders\' is refused before it is sent', async () => {
    const web = await caller(impostor);
    const link = web.logs.find((l) => l.msg === 'link ready');
    assert.equal(link?.identity, 'orders.default', 'the link records the identity the peer presented');
    const error = await assertMeshError(await call(web, 'payments'), 502, 'PEER_IDENTITY_MISMATCH');
    assert.equal(error.service, 'payments.default');
    assert.match(error.message, /orders\.default, which may not serve payments\.default/);
    assert.equal(app.count('/echo'), 0, 'the app behind the wrong sidecar saw nothing');
    const refusal = web.logs.find((l) => l.code === 'PEER_IDENTITY_MISMATCH');
    assert.equal(refusal?.service, 'payments.default');
    assert.ok(metricSum(await metrics(web), 'mcp_peer_refusals_total', { reason: 'peer_identity_mismatch' }) >= 1);
    // Streamed calls (SSE) are checked the same way.
    await assertMeshError(await request(`${web.outboundUrl}/sse`, { headers: { host: 'payments', accept: 'text/event-stream' } }), 502, 'PEER_IDENTITY_MISMATCH');
    assert.equal(app.count('/sse'), 0);
  });

  test('with the identity listed in tls.identities the call goes through', async () => {
    const web = await caller(impostor, { identities: { payments: ['orders'] } });
    const before = app.count('/echo');
    const response = await call(web, 'payments');
    assert.equal(response.statusCode, 200, await response.body.text());
    assert.equal(app.count('/echo'), before + 1);
  });

  test('a peer that may serve the service by its identity but does not serve it refuses the call: 421 MISDIRECTED', async () => {
    // Secure naming lets it pass (orders is allowed for payments here); the called sidecar serves orders only.
    const web = await caller(orders, { identities: { payments: ['orders'] } });
    await assertMeshError(await call(web, 'payments'), 421, 'MISDIRECTED');
    assert.equal(otherApp.count('/echo'), 0, 'the app behind it saw nothing');
    assert.ok(orders.logs.some((l) => l.code === 'MISDIRECTED' && l.destination === 'payments.default'));
    assert.ok(metricSum(await metrics(orders), 'mcp_peer_refusals_total', { reason: 'misdirected' }) >= 1);
  });
});

describe('misdirected calls in plaintext', { timeout: 60_000 }, () => {
  let mesh: Mesh;
  before(async () => { mesh = await startMesh({ aliases: ['ledger.shop'] }); });
  after(async () => { await mesh?.close(); });

  test('a caller whose discovery points another service at this sidecar gets 421 MISDIRECTED; the app sees nothing', async () => {
    const stale = await SidecarProcess.start({ config: sidecarConfig({ service: 'web', appPort: 1, peers: { billing: [mesh.callee.inboundAddress] } }) });
    try {
      await stale.waitForLog((l) => l.msg === 'link ready');
      assert.ok(stale.logs.some((l) => l.code === 'TLS_PLAINTEXT' && l.secureNaming === false), 'the start log says there is no secure naming');
      await assertMeshError(await call(stale, 'billing', '/misdirected'), 421, 'MISDIRECTED');
      assert.equal(mesh.app.count('/misdirected'), 0);
      // The callee's own service and its alias still pass.
      assert.equal((await call(mesh.caller, 'payments', '/served')).statusCode, 200);
      assert.equal((await call(mesh.caller, 'ledger.shop', '/served')).statusCode, 200);
      assert.equal(mesh.app.count('/served'), 2);
    } finally {
      await stale.stop();
    }
  });
});
