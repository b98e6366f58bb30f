// The Kubernetes resolver against a double of the API server that speaks the real list/watch
// protocol (test/helpers/kube-api-double.ts), through @kubernetes/client-node as in a cluster.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { kubeConfigFor, KubernetesResolver, type KubernetesResolverOptions } from '../../../sidecar/src/discovery/kubernetes.ts';
import type { DiscoveryLogger } from '../../../sidecar/src/discovery/table.ts';
import { endpointSlice, KubeApiDouble, pod } from '../../helpers/kube-api-double.ts';
import { within } from '../../helpers/wait.ts';

const PORT = [{ name: 'mcp-inbound', port: 25002 }];

function until(resolver: KubernetesResolver, check: () => boolean, message: string, ms = 5000): Promise<void> {
  if (check()) return Promise.resolve();
  return within(new Promise<void>((resolve) => {
    let done = false;
    resolver.onChange(() => { if (!done && check()) { done = true; resolve(); } });
  }), ms, message);
}

const addresses = (resolver: KubernetesResolver, service: string, namespace = 'default') => resolver.endpoints(service, namespace)?.map((e) => e.address);

describe('KubernetesResolver', () => {
  let api: KubeApiDouble;
  let resolver: KubernetesResolver | undefined;
  let warnings: Record<string, unknown>[];
  const logger: DiscoveryLogger = { debug() {}, info() {}, warn: (obj) => { warnings.push(obj as Record<string, unknown>); }, error() {} };

  beforeEach(async () => {
    api = await KubeApiDouble.start();
    warnings = [];
    api.apply(pod({ name: 'payments-a', labels: { app: 'payments', version: 'v1' } }));
    api.apply(pod({ name: 'payments-b', labels: { app: 'payments', version: 'v2' }, serviceAccount: 'payments' }));
    api.apply(endpointSlice({
      name: 'payments-abc', service: 'payments', ports: PORT,
      endpoints: [{ address: '10.0.0.1', ready: true, pod: 'payments-a' }, { address: '10.0.0.2', ready: true, pod: 'payments-b' }],
    }));
  });
  afterEach(async () => {
    resolver?.close();
    resolver = undefined;
    await api.close();
  });

  function start(options: Partial<KubernetesResolverOptions> = {}): KubernetesResolver {
    resolver = new KubernetesResolver({
      namespaces: [], inboundPort: 15002, portName: 'mcp-inbound', podLabels: true, kubeconfig: undefined, server: undefined,
      kubeConfig: kubeConfigFor({ server: api.url, kubeconfig: undefined }), logger, retryBaseMs: 20, retryMaxMs: 200, ...options,
    });
    return resolver;
  }

  test('ready() only after the first list; endpoints use the mcp-inbound port and carry the pod labels and service account', async () => {
    const release = api.holdLists();
    const r = start();
    let ready = false;
    void r.ready().then(() => { ready = true; });
    await within(api.until(() => api.counts.lists >= 2), 5000, 'slices and pods are being listed');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(ready, false, 'not ready while the lists are held');
    assert.equal(r.endpoints('payments', 'default'), undefined);
    release();
    await within(r.ready(), 5000, 'ready after the first list');
    assert.deepEqual(r.endpoints('payments', 'default'), [
      { address: '10.0.0.1:25002', labels: { app: 'payments', version: 'v1' }, weight: 1, identities: ['default.default'] },
      { address: '10.0.0.2:25002', labels: { app: 'payments', version: 'v2' }, weight: 1, identities: ['payments.default'] },
    ]);
    assert.deepEqual([...r.allAddresses()].sort(), ['10.0.0.1:25002', '10.0.0.2:25002']);
    assert.deepEqual(r.servicesOf('10.0.0.2:25002'), ['payments.default']);
    assert.ok(api.requests.some((q) => q.includes('/apis/discovery.k8s.io/v1/endpointslices?') && q.includes('labelSelector=kubernetes.io%2Fservice-name')), api.requests.join('\n'));
  });

  test('endpoints follow ADDED, MODIFIED (ready → not ready removes) and DELETED', async () => {
    const r = start();
    await within(r.ready(), 5000, 'ready');
    await within(api.until(() => api.openWatches() === 2), 5000, 'watching');
    // ADDED: a new service, without an mcp-inbound port: the configured inbound port.
    api.apply(endpointSlice({ name: 'ledger-1', service: 'ledger', endpoints: [{ address: '10.0.1.1', pod: 'ledger-x' }] }));
    await until(r, () => addresses(r, 'ledger') !== undefined, 'ledger added');
    assert.deepEqual(addresses(r, 'ledger'), ['10.0.1.1:15002'], 'no ready condition means ready; the default inbound port');
    assert.deepEqual(r.endpoints('ledger', 'default')![0]!.labels, {}, 'a pod not (yet) seen: no labels');
    api.apply(pod({ name: 'ledger-x', labels: { zone: 'a' } }));
    await until(r, () => r.endpoints('ledger', 'default')?.[0]?.labels.zone === 'a', 'the pod\'s labels arrive with the pod');
    // MODIFIED: one endpoint not ready.
    api.apply(endpointSlice({
      name: 'payments-abc', service: 'payments', ports: PORT,
      endpoints: [{ address: '10.0.0.1', ready: false, pod: 'payments-a' }, { address: '10.0.0.2', ready: true, pod: 'payments-b' }],
    }));
    await until(r, () => addresses(r, 'payments')?.length === 1, 'not ready endpoint removed');
    assert.deepEqual(addresses(r, 'payments'), ['10.0.0.2:25002']);
    api.apply(endpointSlice({ name: 'payments-abc', service: 'payments', ports: PORT, endpoints: [{ address: '10.0.0.2', ready: false, pod: 'payments-b' }] }));
    await until(r, () => addresses(r, 'payments')?.length === 0, 'no ready endpoint');
    assert.deepEqual(r.endpoints('payments', 'default'), [], 'known but empty (NO_HEALTHY_ENDPOINT)');
    // A pod's labels change: the endpoint's labels follow.
    api.apply(endpointSlice({ name: 'payments-abc', service: 'payments', ports: PORT, endpoints: [{ address: '10.0.0.2', ready: true, pod: 'payments-b' }] }));
    api.apply(pod({ name: 'payments-b', labels: { app: 'payments', version: 'v3' } }));
    await until(r, () => r.endpoints('payments', 'default')?.[0]?.labels.version === 'v3', 'labels follow the pod');
    // DELETED: the service is gone.
    api.remove('endpointslices', 'default', 'payments-abc');
    await until(r, () => r.endpoints('payments', 'default') === undefined, 'slice deleted');
    assert.equal(r.endpoints('payments', 'default'), undefined, 'unknown (UNKNOWN_SERVICE)');
  });

  test('several slices of one service are merged; dual-stack pods are reached once, over IPv4; FQDN slices are ignored', async () => {
    api.apply(endpointSlice({ name: 'payments-def', service: 'payments', ports: PORT, endpoints: [{ address: '10.0.0.3', pod: 'payments-c' }] }));
    api.apply(endpointSlice({ name: 'payments-v6', service: 'payments', addressType: 'IPv6', ports: PORT, endpoints: [{ address: 'fd00::1', pod: 'payments-a' }, { address: 'fd00::9', pod: 'payments-v6only' }] }));
    api.apply(endpointSlice({ name: 'payments-fqdn', service: 'payments', addressType: 'FQDN', ports: PORT, endpoints: [{ address: 'example.com' }] }));
    const r = start({ podLabels: false });
    await within(r.ready(), 5000, 'ready');
    assert.deepEqual(addresses(r, 'payments'), ['10.0.0.1:25002', '10.0.0.2:25002', '10.0.0.3:25002', '[fd00::9]:25002']);
    assert.deepEqual(r.endpoints('payments', 'default')![0]!.labels, {}, 'podLabels: false: no labels');
    assert.ok(!api.requests.some((q) => q.includes('/pods')), 'and no pods are listed or watched');
  });

  test('only the configured namespaces are watched', async () => {
    api.apply(endpointSlice({ name: 'ledger-1', namespace: 'finance', service: 'ledger', endpoints: [{ address: '10.0.2.1' }] }));
    api.apply(endpointSlice({ name: 'search-1', namespace: 'other', service: 'search', endpoints: [{ address: '10.0.3.1' }] }));
    const r = start({ namespaces: ['default', 'finance'] });
    await within(r.ready(), 5000, 'ready');
    assert.deepEqual(addresses(r, 'payments'), ['10.0.0.1:25002', '10.0.0.2:25002']);
    assert.deepEqual(addresses(r, 'ledger', 'finance'), ['10.0.2.1:15002']);
    assert.equal(r.endpoints('search', 'other'), undefined);
    assert.ok(api.requests.some((q) => q.startsWith('GET /apis/discovery.k8s.io/v1/namespaces/finance/endpointslices')));
    assert.ok(api.requests.some((q) => q.startsWith('GET /api/v1/namespaces/default/pods')));
    assert.ok(!api.requests.some((q) => q.startsWith('GET /apis/discovery.k8s.io/v1/endpointslices')), 'no cluster-wide request');
  });

  test('a watch closed by the server resumes from the last resourceVersion: changes made meanwhile arrive', async () => {
    const r = start();
    await within(r.ready(), 5000, 'ready');
    await within(api.until(() => api.openWatches() === 2), 5000, 'watching');
    const lists = api.counts.lists;
    api.dropWatches('end');
    api.remove('endpointslices', 'default', 'payments-abc');
    api.apply(endpointSlice({ name: 'ledger-1', service: 'ledger', endpoints: [{ address: '10.0.1.1' }] }));
    await until(r, () => r.endpoints('payments', 'default') === undefined && addresses(r, 'ledger')?.length === 1, 'converged');
    assert.equal(api.counts.lists, lists, 'no relist was needed');
  });

  for (const goneAs of ['event', 'status'] as const) {
    test(`a watch answered 410 Gone (${goneAs === 'event' ? 'ERROR event' : 'HTTP 410'}) relists, and the relist converges`, async () => {
      api.goneAs = goneAs;
      const r = start();
      await within(r.ready(), 5000, 'ready');
      await within(api.until(() => api.openWatches() === 2), 5000, 'watching');
      const lists = api.counts.lists;
      api.dropWatches('end');
      // Changes while the sidecar is not watching, then the history is gone.
      api.remove('endpointslices', 'default', 'payments-abc');
      api.apply(endpointSlice({ name: 'ledger-1', service: 'ledger', endpoints: [{ address: '10.0.1.1', pod: 'ledger-x' }] }));
      api.apply(pod({ name: 'ledger-x', labels: { version: 'v9' } }));
      api.compact();
      await until(r, () => r.endpoints('payments', 'default') === undefined && r.endpoints('ledger', 'default')?.[0]?.labels.version === 'v9', 'converged after the relist');
      assert.ok(api.counts.gone >= 1, 'the resumed watch got 410 Gone');
      assert.ok(api.counts.lists > lists, 'and the resolver listed again');
    });
  }

  test('a reset watch connection leads to a relist (after a back-off) that converges; endpoints stay meanwhile', async () => {
    const r = start();
    await within(r.ready(), 5000, 'ready');
    await within(api.until(() => api.openWatches() === 2), 5000, 'watching');
    const lists = api.counts.listsByKind.endpointslices;
    const release = api.holdLists();
    api.dropWatches('reset');
    api.remove('endpointslices', 'default', 'payments-abc');
    api.apply(endpointSlice({ name: 'ledger-1', service: 'ledger', endpoints: [{ address: '10.0.1.1' }] }));
    await within(api.until(() => api.counts.listsByKind.endpointslices > lists), 5000, 'relisting');
    assert.deepEqual(addresses(r, 'payments'), ['10.0.0.1:25002', '10.0.0.2:25002'], 'the last known endpoints stay until the relist');
    assert.ok(warnings.some((w) => w.code === 'KUBERNETES_WATCH_FAILED'), 'the failure is logged');
    release();
    await until(r, () => r.endpoints('payments', 'default') === undefined && addresses(r, 'ledger')?.length === 1, 'converged');
    // And it watches again: later changes still arrive.
    api.apply(endpointSlice({ name: 'ledger-1', service: 'ledger', endpoints: [{ address: '10.0.1.2' }] }));
    await until(r, () => addresses(r, 'ledger')?.[0] === '10.0.1.2:15002', 'watching again');
  });

  test('failed lists are retried; ready() waits for the first that works', async () => {
    api.failLists(3);
    const r = start({ podLabels: false });
    await within(r.ready(), 5000, 'ready after the retries');
    assert.ok(api.counts.lists >= 4);
    assert.deepEqual(addresses(r, 'payments'), ['10.0.0.1:25002', '10.0.0.2:25002']);
    assert.ok(warnings.filter((w) => w.code === 'KUBERNETES_WATCH_FAILED').length >= 3);
  });

  test('close() stops watching', async () => {
    const r = start();
    await within(r.ready(), 5000, 'ready');
    await within(api.until(() => api.openWatches() === 2), 5000, 'watching');
    r.close();
    await within(api.until(() => api.openWatches() === 0), 5000, 'watches closed');
  });

  test('kubeConfigFor: a clear error outside a cluster without kubeconfig or server', () => {
    assert.throws(() => kubeConfigFor({ kubeconfig: undefined, server: undefined }, {}), /KUBERNETES_SERVICE_HOST/);
    assert.throws(() => kubeConfigFor({ kubeconfig: '/nonexistent/kubeconfig', server: undefined }, {}), /discovery\.kubernetes\.kubeconfig/);
    assert.equal(kubeConfigFor({ server: 'http://127.0.0.1:1', kubeconfig: undefined }).getCurrentCluster()?.server, 'http://127.0.0.1:1');
  });
});
