// Discovery with real sidecar processes. kubernetes: the caller watches EndpointSlices on a double of
// the API server (test/helpers/kube-api-double.ts); the callee's inbound address is in a slice.
// dns: the caller resolves the callee's A record on a test DNS server (test/helpers/dns-server.ts).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startTestApp, type TestApp } from '../helpers/apps.ts';
import { TestDnsServer } from '../helpers/dns-server.ts';
import { endpointSlice, KubeApiDouble, pod } from '../helpers/kube-api-double.ts';
import { assertMeshError } from '../helpers/mesh.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { until, within } from '../helpers/wait.ts';

describe('discovery.mode kubernetes (real sidecars, API server double)', { timeout: 120_000 }, () => {
  let api: KubeApiDouble;
  let app: TestApp;
  let callee: SidecarProcess;
  let caller: SidecarProcess;
  let releaseLists: () => void;
  const slice = (ready: boolean) => endpointSlice({
    name: 'payments-x1', service: 'payments',
    ports: [{ name: 'http', port: 8080 }, { name: 'mcp-inbound', port: callee.ports.inbound }],
    endpoints: [{ address: '127.0.0.1', ready, pod: 'payments-0' }],
  });

  before(async () => {
    api = await KubeApiDouble.start();
    app = await startTestApp();
    callee = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port }) });
    api.apply(pod({ name: 'payments-0', labels: { app: 'payments', version: 'v1' }, ip: '127.0.0.1' }));
    api.apply(slice(true));
    releaseLists = api.holdLists();
    caller = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: 1, extra: { discovery: { mode: 'kubernetes', kubernetes: { server: api.url, namespaces: ['default'] } } } }),
    });
  });
  after(async () => {
    releaseLists?.();
    await Promise.all([caller?.stop(), callee?.stop()]);
    await app?.close();
    await api?.close();
  });

  const readyz = async () => {
    const response = await request(`http://127.0.0.1:${caller.ports.admin}/readyz`);
    return { status: response.statusCode, body: await response.body.json() as { status: string } };
  };
  const call = () => request(`${caller.outboundUrl}/echo`, { headers: { host: 'payments' } });

  test('/readyz says not ready until the first list of EndpointSlices and pods has arrived', async () => {
    await within(api.until(() => api.counts.lists >= 2), 10_000, 'the caller lists slices and pods');
    assert.deepEqual(await readyz(), { status: 503, body: { status: 'starting' } });
    const since = caller.mark();
    releaseLists();
    await caller.waitForLog('discovery ready', { since });
    await until(async () => (await readyz()).status === 200, { message: '/readyz 200 after the first list' });
    assert.ok(api.requests.some((q) => q.startsWith('GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices?')), api.requests.join('\n'));
  });

  test('a call reaches the callee whose address is in the EndpointSlice (its mcp-inbound port), with the pod\'s labels', async () => {
    const response = await call();
    assert.equal(response.statusCode, 200, await response.body.text());
    const view = await (await request(`http://127.0.0.1:${caller.ports.admin}/endpoints`)).body.text();
    assert.ok(view.includes(callee.inboundAddress), view);
    assert.match(view, /"labels":\{"app":"payments","version":"v1"\}/, 'the pod\'s labels (for subsets)');
  });

  test('the endpoint turning not ready: NO_HEALTHY_ENDPOINT; back to ready: calls work again', async () => {
    api.apply(slice(false));
    await until(async () => (await call().then(async (r) => { await r.body.dump(); return r.statusCode; })) === 503, { message: 'calls fail once the endpoint is not ready' });
    await assertMeshError(await call(), 503, 'NO_HEALTHY_ENDPOINT');
    api.apply(slice(true));
    await until(async () => (await call().then(async (r) => { await r.body.dump(); return r.statusCode; })) === 200, { ms: 10_000, message: 'calls work again' });
  });

  test('the slice deleted: UNKNOWN_SERVICE, even after the watch was dropped and the history compacted', async () => {
    api.dropWatches('reset');
    api.remove('endpointslices', 'default', 'payments-x1');
    api.compact();
    await until(async () => (await call().then(async (r) => { await r.body.dump(); return r.statusCode; })) === 404, { ms: 10_000, message: 'the service is unknown once the relist saw the deletion' });
    await assertMeshError(await call(), 404, 'UNKNOWN_SERVICE');
    assert.deepEqual(await readyz(), { status: 200, body: { status: 'ready' } }, 'a dropped watch does not make the sidecar unready');
  });

  test('SIGTERM: the watches are closed and the sidecar exits by itself', async () => {
    await within(api.until(() => api.openWatches() >= 2), 10_000, 'watching again after the relist');
    const status = await caller.stop(20_000);
    assert.deepEqual(status, { code: 0, signal: null });
    await within(api.until(() => api.openWatches() === 0), 5000, 'no watch left open');
  });
});

describe('discovery.mode dns (real sidecars, test DNS server)', { timeout: 120_000 }, () => {
  let dns: TestDnsServer;
  let app: TestApp;
  let callee: SidecarProcess;
  let caller: SidecarProcess;
  const NAME = 'payments.default.mesh.test';

  before(async () => {
    dns = await TestDnsServer.start();
    app = await startTestApp();
    // It serves ledger too: the test's DNS server gives ledger the same address.
    callee = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: app.port, extra: { aliases: ['ledger'] } }) });
    dns.setA(NAME, [{ address: '127.0.0.1', ttl: 1 }]);
    caller = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'orders', appPort: 1,
        extra: { discovery: { mode: 'dns', dns: { services: ['payments'], servers: [dns.address], clusterDomain: 'mesh.test', nameTemplate: '{service}.{namespace}.{clusterDomain}', inboundPort: callee.ports.inbound, recordTypes: ['A'], minInterval: '100ms' } } },
      }),
    });
  });
  after(async () => {
    await Promise.all([caller?.stop(), callee?.stop()]);
    await app?.close();
    await dns?.close();
  });

  const call = (host = 'payments') => request(`${caller.outboundUrl}/echo`, { headers: { host } });
  const statusOf = async (host?: string) => { const r = await call(host); await r.body.dump(); return r.statusCode; };

  test('ready once the listed service resolved; a call reaches the address of its A record', async () => {
    await until(async () => (await request(`http://127.0.0.1:${caller.ports.admin}/readyz`).then(async (r) => { await r.body.dump(); return r.statusCode; })) === 200, { message: 'ready' });
    assert.equal(await statusOf(), 200);
    assert.ok(dns.queries(NAME) >= 1);
  });

  test('records re-resolved: the record going away makes the service unknown; a name never seen is looked up on first use', async () => {
    dns.setA(NAME, []);
    await until(async () => (await statusOf()) === 404, { ms: 10_000, message: 'unknown once the record is gone' });
    dns.setA('ledger.default.mesh.test', [{ address: '127.0.0.1', ttl: 30 }]);
    const first = await call('ledger');
    if (first.statusCode !== 200) await assertMeshError(first, 503, 'NO_HEALTHY_ENDPOINT'); // the lookup still runs
    else await first.body.dump();
    await until(async () => (await statusOf('ledger')) === 200, { ms: 10_000, message: 'routed once the lookup answered' });
    // The first call may see the lookup still running (503) or, the test server being fast, its answer (404).
    const first404 = await call('nobody');
    if (first404.statusCode === 503) await assertMeshError(first404, 503, 'NO_HEALTHY_ENDPOINT');
    else await assertMeshError(first404, 404, 'UNKNOWN_SERVICE');
    await until(async () => (await statusOf('nobody')) === 404, { ms: 10_000, message: 'UNKNOWN_SERVICE after the lookup found nothing' });
  });
});
