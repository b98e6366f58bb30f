// Access rules enforced by the called sidecar, with real sidecars: allowed callers reach the app,
// others get 403 ACCESS_DENIED (and a metric, and the rule in the debug log); under mutual TLS the
// caller is the identity in its certificate, so claiming to be an allowed service does not help.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import type { TestApp } from '../helpers/apps.ts';
import { makeCertDir, type CertDir } from '../helpers/certs.ts';
import { metricsText, policyFolder, removeDir } from '../helpers/async.ts';
import { metricSum } from '../helpers/prometheus.ts';
import { startMesh, type Mesh } from '../helpers/mesh.ts';
import type { SidecarProcess } from '../helpers/sidecar-process.ts';

const POLICY = `apiVersion: mcp-mesh.io/v1
kind: Policy
metadata: { name: payments-access }
spec:
  service: payments
  access:
    allow: [orders]
---
apiVersion: mcp-mesh.io/v1
kind: Policy
metadata: { name: payments-admin }
spec:
  service: payments
  route:
    name: admin
    match: { path: { prefix: /admin } }
  access:
    allow: []          # a route inherits the service's list unless it sets its own
    defaultDeny: true
`;

describe('access rules', { timeout: 60_000 }, () => {
  let app: TestApp;
  let certs: CertDir;
  let policies: string;
  let callee: SidecarProcess;
  let mesh: Mesh;

  before(async () => {
    certs = makeCertDir(['payments', 'orders', 'intruder']);
    policies = policyFolder({ 'access.yaml': POLICY });
    mesh = await startMesh({
      calleeExtra: { policies: [policies], tls: certs.tls('payments', { required: true }), log: { level: 'debug' } },
      callerExtra: { tls: certs.tls('orders') },
    });
    ({ app, callee } = mesh);
  });
  after(async () => {
    await mesh?.close();
    certs?.remove();
    removeDir(policies);
  });

  const caller = async (service: string, cert: string) => {
    const sidecar = await mesh.addCaller(service, { tls: certs.tls(cert) });
    await sidecar.waitForLog((l) => l.msg === 'link ready');
    return sidecar;
  };
  const call = async (from: SidecarProcess, path: string) => {
    const response = await request(`${from.outboundUrl}${path}`, { headers: { host: 'payments' } });
    return { status: response.statusCode, code: response.headers['mcp-mesh-error'], body: await response.body.text() };
  };

  test('an allowed caller reaches the app; a route with defaultDeny refuses even it', async () => {
    const orders = mesh.caller;
    assert.equal((await call(orders, '/charge')).status, 200);
    const admin = await call(orders, '/admin/reset');
    assert.deepEqual([admin.status, admin.code], [403, 'ACCESS_DENIED']);
    assert.equal(app.countPath('/admin/reset'), 0, 'the refused call never reached the app');
  });

  test('a caller the rules do not list gets 403 ACCESS_DENIED, counted, with the rule in the debug log', async () => {
    const intruder = await caller('intruder', 'intruder');
    const refused = await call(intruder, '/charge');
    assert.deepEqual([refused.status, refused.code], [403, 'ACCESS_DENIED']);
    assert.match(refused.body, /intruder\.default may not call payments\.default/);
    assert.equal(metricSum(await metricsText(callee), 'mcp_access_denied_total', { source: 'intruder.default', route: 'default' }), 1);
    assert.ok(callee.logs.some((l) => l.msg.startsWith('access denied') && l.source === 'intruder.default'));
  });

  test('a sidecar that claims to be an allowed service but holds another certificate is judged by its certificate', async () => {
    const forger = await caller('orders', 'intruder'); // says "orders", proves "intruder"
    const refused = await call(forger, '/charge');
    assert.deepEqual([refused.status, refused.code], [403, 'ACCESS_DENIED']);
    assert.match(refused.body, /intruder\.default may not call/);
  });
});
