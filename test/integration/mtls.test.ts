// Mutual TLS between real sidecar processes, with certificates from the mesh's development CA.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { rawValues, startTestApp, type Echo, type TestApp } from '../helpers/apps.ts';
import { makeCertDir, type CertDir } from '../helpers/certs.ts';
import { startMesh, type Mesh } from '../helpers/mesh.ts';
import { runCli, SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

async function echo(caller: SidecarProcess, service = 'payments'): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const response = await request(`${caller.outboundUrl}/echo`, { headers: { host: service } });
  return { status: response.statusCode, body: await response.body.text(), headers: response.headers };
}

/** The certificate the inbound listener presents to a new connection (made with `certs`' client cert). */
function presentedFingerprint(port: number, certs: CertDir, as: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = connect({
      host: '127.0.0.1', port, ca: readFileSync(`${certs.dir}/ca.crt`), cert: readFileSync(`${certs.dir}/${as}.crt`), key: readFileSync(`${certs.dir}/${as}.key`),
      ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
    }, () => { resolve(socket.getPeerX509Certificate()!.fingerprint256); socket.destroy(); });
    socket.once('error', reject);
  });
}

describe('mutual TLS between sidecars', { timeout: 60_000 }, () => {
  let app: TestApp;
  let certs: CertDir;
  let otherCa: CertDir;
  let callee: SidecarProcess;
  let caller: SidecarProcess;
  let mesh: Mesh;

  before(async () => {
    certs = makeCertDir(['payments', 'orders']);
    otherCa = makeCertDir(['orders']);
    mesh = await startMesh({ calleeExtra: { tls: certs.tls('payments', { required: true }) }, callerExtra: { tls: certs.tls('orders') } });
    ({ app, callee, caller } = mesh);
  });
  after(async () => {
    await mesh?.close();
    certs?.remove();
    otherCa?.remove();
  });

  test('a call succeeds over mTLS and the app sees the verified source', async () => {
    const { status, body } = await echo(caller);
    assert.equal(status, 200);
    assert.deepEqual(rawValues((JSON.parse(body) as Echo).rawHeaders, 'mcp-mesh-source'), ['orders']);
    const start = callee.logs.find((l) => typeof l.ports === 'object');
    assert.equal(start?.mode, 'mutual');
  });

  test('a claimed source that disagrees with the certificate is replaced by the certificate identity', async () => {
    // This sidecar calls itself "forger" but holds orders' certificate: the app must see "orders".
    const forger = await mesh.addCaller('forger', { tls: certs.tls('orders') });
    assert.ok(forger.logs.some((l) => l.code === 'TLS_IDENTITY_MISMATCH'));
    await forger.waitForLog((l) => l.msg === 'link ready');
    const { status, body } = await echo(forger);
    assert.equal(status, 200);
    assert.deepEqual(rawValues((JSON.parse(body) as Echo).rawHeaders, 'mcp-mesh-source'), ['orders']);
  });

  test('a sidecar with a certificate from another CA cannot connect', async () => {
    const stranger = await mesh.addCaller('orders', { tls: otherCa.tls('orders'), timeouts: { connect: '300ms' } });
    await stranger.waitForLog((l) => l.msg.startsWith('link down'));
    const { status, headers } = await echo(stranger);
    assert.ok(status === 502 || status === 503, `status ${status}`);
    assert.ok(headers['mcp-mesh-error'], 'a coded mesh error');
    assert.ok(!stranger.logs.some((l) => l.msg === 'link ready'), 'the link never became ready');
    await stranger.stop();
  });

  test('a plaintext sidecar cannot reach a TLS sidecar', async () => {
    const plain = await mesh.addCaller('orders', { timeouts: { connect: '300ms' } });
    await plain.waitForLog((l) => l.msg.startsWith('link down'));
    const { status } = await echo(plain);
    assert.ok(status === 502 || status === 503, `status ${status}`);
    assert.ok(!plain.logs.some((l) => l.msg === 'link ready'));
    await plain.stop();
  });

  test('a TLS client without a certificate is refused in the handshake', async () => {
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: callee.ports.inbound, ca: readFileSync(`${certs.dir}/ca.crt`), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
      socket.once('error', () => resolve(true));
      // TLS 1.3: the client learns of the refusal after its side of the handshake, as an alert or a close.
      socket.once('close', () => resolve(true));
      socket.once('data', () => resolve(false));
    });
    assert.equal(refused, true);
  });

  test('rotated certificates are used for new connections while an open stream goes on', async () => {
    const before = await presentedFingerprint(callee.ports.inbound, certs, 'orders');
    assert.equal(before, new X509Certificate(readFileSync(`${certs.dir}/payments.crt`)).fingerprint256);
    // An SSE stream open on the old connection.
    const response = await request(`${caller.outboundUrl}/sse`, { headers: { host: 'payments', accept: 'text/event-stream' } });
    const events = response.body[Symbol.asyncIterator]();
    const first = await events.next();
    assert.match(Buffer.from(first.value as Uint8Array).toString(), /data: one/);
    const finish = await app.nextSse();

    const mark = callee.mark();
    certs.issue('payments');
    const fresh = new X509Certificate(readFileSync(`${certs.dir}/payments.crt`)).fingerprint256;
    await callee.waitForLog((l) => l.code === 'TLS_RELOADED' && l.fingerprint === fresh, { since: mark });
    assert.equal(await presentedFingerprint(callee.ports.inbound, certs, 'orders'), fresh, 'a new connection gets the new certificate');

    finish();
    let rest = '';
    for (let next = await events.next(); !next.done; next = await events.next()) rest += Buffer.from(next.value as Uint8Array).toString();
    assert.match(rest, /data: two/, 'the stream on the old connection went on');
    assert.equal((await echo(caller)).status, 200, 'the link keeps working');
  });
});

describe('TLS at start-up', { timeout: 30_000 }, () => {
  test('tls.required without certificate files: exit 1 with a clear message', async () => {
    const result = await runCli(['sidecar'], { env: { MESH_SERVICE: 'payments', MESH_APP_PORT: '1', MESH_TLS_REQUIRED: 'true', MESH_LISTEN_INBOUND: '127.0.0.1:0', MESH_LISTEN_OUTBOUND: '127.0.0.1:0', MESH_LISTEN_ADMIN: '127.0.0.1:0' } });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /tls\.required/);
  });

  test('certificate files that cannot be read: exit 1, never plaintext', async () => {
    const result = await runCli(['sidecar'], { env: { MESH_SERVICE: 'payments', MESH_APP_PORT: '1', MESH_TLS_CERT: '/nonexistent/a.crt', MESH_TLS_KEY: '/nonexistent/a.key', MESH_TLS_CA: '/nonexistent/ca.crt', MESH_LISTEN_INBOUND: '127.0.0.1:0', MESH_LISTEN_OUTBOUND: '127.0.0.1:0', MESH_LISTEN_ADMIN: '127.0.0.1:0' } });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /tls error: cannot read tls\.cert/);
  });

  test('plaintext mode: a warning, config_dump and the mcp_tls_mode gauge say so', async () => {
    const sidecar = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: 1 }) });
    try {
      assert.ok(sidecar.logs.some((l) => l.code === 'TLS_PLAINTEXT' && l.level === 40));
      const dump = await (await request(`http://127.0.0.1:${sidecar.ports.admin}/config_dump`)).body.json() as { tls: { mode: string } };
      assert.deepEqual(dump.tls, { mode: 'plaintext' });
      const metrics = await (await request(`http://127.0.0.1:${sidecar.ports.admin}/metrics`)).body.text();
      assert.match(metrics, /mcp_tls_mode\{[^}]*mode="plaintext"[^}]*\} 1/);
      assert.match(metrics, /mcp_tls_mode\{[^}]*mode="mutual"[^}]*\} 0/);
    } finally {
      await sidecar.stop();
    }
  });

  test('mcp-mesh certs writes a CA and per-service certificates with SPIFFE IDs', async () => {
    const certs = makeCertDir([]);
    try {
      const result = await runCli(['certs', '--out', certs.dir, '--trust-domain', 'example.org', '--service', 'payments.shop']);
      assert.equal(result.code, 0, result.stderr);
      const cert = new X509Certificate(readFileSync(`${certs.dir}/payments.shop.crt`));
      assert.match(cert.subjectAltName ?? '', /URI:spiffe:\/\/example\.org\/ns\/shop\/sa\/payments/);
      assert.ok(cert.checkIssued(new X509Certificate(readFileSync(`${certs.dir}/ca.crt`))));
    } finally {
      certs.remove();
    }
  });
});

describe('mTLS: a rotated client certificate', { timeout: 60_000 }, () => {
  test('after rotation, the link presents the new certificate on its next connection', async () => {
    const app = await startTestApp();
    const certs = makeCertDir(['payments', 'orders']);
    const started: SidecarProcess[] = [];
    try {
      const calleeConfig = (port = 0) => sidecarConfig({ service: 'payments', appPort: app.port, inboundPort: port, extra: { tls: certs.tls('payments', { required: true }), log: { level: 'debug' } } });
      let callee = await SidecarProcess.start({ config: calleeConfig() });
      started.push(callee);
      const port = callee.ports.inbound;
      const caller = await SidecarProcess.start({
        config: sidecarConfig({ service: 'orders', appPort: 1, peers: { payments: [callee.inboundAddress] }, extra: { tls: certs.tls('orders'), link: { reconnectBase: '20ms', reconnectMax: '200ms' } } }),
      });
      started.push(caller);
      const fingerprint = () => new X509Certificate(readFileSync(`${certs.dir}/orders.crt`)).fingerprint256;
      const old = fingerprint();
      const first = await callee.waitForLog((l) => l.msg === 'link accepted');
      assert.equal(first.fingerprint, old, 'the caller presents its certificate');

      const mark = caller.mark();
      certs.issue('orders');
      const fresh = fingerprint();
      assert.notEqual(fresh, old);
      await caller.waitForLog((l) => l.code === 'TLS_RELOADED' && l.fingerprint === fresh, { since: mark });
      // The next connection (here: the callee restarts on the same port) carries the new certificate.
      await callee.stop();
      callee = await SidecarProcess.start({ config: calleeConfig(port) });
      started.push(callee);
      const second = await callee.waitForLog((l) => l.msg === 'link accepted', { timeoutMs: 15_000 });
      assert.equal(second.fingerprint, fresh, 'the reconnected link presents the rotated certificate');
      assert.equal((await echo(caller)).status, 200);
    } finally {
      await Promise.all(started.map((s) => s.stop()));
      await app.close();
      certs.remove();
    }
  });
});
