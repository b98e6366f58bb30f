// The `discovery` config section: defaults, resolution, rules across keys, and the resolver it makes.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from '../../../sidecar/src/config/load.ts';
import { createResolver } from '../../../sidecar/src/discovery/create.ts';
import { DnsResolver } from '../../../sidecar/src/discovery/dns.ts';
import { KubernetesResolver } from '../../../sidecar/src/discovery/kubernetes.ts';
import { StaticResolver } from '../../../sidecar/src/discovery/static.ts';

const BASE = 'service: orders\napp: { port: 8080 }\n';

describe('discovery config', () => {
  test('defaults: static mode, DNS and Kubernetes settings filled in', () => {
    const { discovery } = parseConfig(BASE, undefined);
    assert.equal(discovery.mode, 'static');
    assert.deepEqual(discovery.dns, {
      services: [], nameTemplate: '{service}.{namespace}.svc.{clusterDomain}', clusterDomain: 'cluster.local', inboundPort: 15002,
      servers: [], recordTypes: ['A', 'AAAA'], minIntervalMs: 1000, maxIntervalMs: 30_000, timeoutMs: 2000,
    });
    assert.deepEqual(discovery.kubernetes, { namespaces: [], inboundPort: 15002, portName: 'mcp-inbound', podLabels: true, kubeconfig: undefined, server: undefined });
  });

  test('values from the file; the kubeconfig path is taken from the config file\'s folder', () => {
    const { discovery } = parseConfig(`${BASE}discovery:\n  mode: kubernetes\n  kubernetes: { namespaces: [shop, shop], inboundPort: 16002, kubeconfig: ./kube.yaml, podLabels: false }\n  dns: { services: [payments, ledger.finance], minInterval: 250ms, maxInterval: 1m }\n`, '/etc/mesh/mesh.yaml');
    assert.equal(discovery.mode, 'kubernetes');
    assert.deepEqual(discovery.kubernetes.namespaces, ['shop']);
    assert.equal(discovery.kubernetes.inboundPort, 16002);
    assert.equal(discovery.kubernetes.podLabels, false);
    assert.equal(discovery.kubernetes.kubeconfig, path.resolve('/etc/mesh/kube.yaml'));
    assert.deepEqual(discovery.dns.services, ['payments', 'ledger.finance']);
    assert.equal(discovery.dns.minIntervalMs, 250);
    assert.equal(discovery.dns.maxIntervalMs, 60_000);
  });

  test('environment variables', () => {
    const { discovery } = parseConfig(BASE, undefined, {
      MESH_DISCOVERY_MODE: 'dns', MESH_DISCOVERY_DNS_SERVICES: 'payments,ledger.finance', MESH_DISCOVERY_DNS_SERVERS: '10.96.0.10:53',
      MESH_DISCOVERY_KUBERNETES_POD_LABELS: 'false', MESH_DISCOVERY_KUBERNETES_SERVER: 'http://127.0.0.1:8001',
    });
    assert.equal(discovery.mode, 'dns');
    assert.deepEqual(discovery.dns.services, ['payments', 'ledger.finance']);
    assert.deepEqual(discovery.dns.servers, ['10.96.0.10:53']);
    assert.equal(discovery.kubernetes.podLabels, false);
    assert.equal(discovery.kubernetes.server, 'http://127.0.0.1:8001');
  });

  const bad: [string, RegExp][] = [
    ['discovery: { mode: consul }', /"discovery\.mode" must be one of static, dns, kubernetes/],
    ['discovery: { dns: { minInterval: 5s, maxInterval: 1s } }', /"discovery\.dns\.maxInterval" must not be shorter/],
    ['discovery: { dns: { minInterval: 0 } }', /"discovery\.dns\.minInterval" must be greater than 0/],
    ['discovery: { dns: { recordTypes: [MX] } }', /"discovery\.dns\.recordTypes\.0"/],
    ['discovery: { kubernetes: { namespace: [a] } }', /"discovery\.kubernetes\.namespace" unknown key/],
    ['discovery: { kubernetes: { server: 127.0.0.1:8001 } }', /"discovery\.kubernetes\.server"/],
    ['discovery: { kubernetes: { inboundPort: 0 } }', /"discovery\.kubernetes\.inboundPort"/],
  ];
  for (const [yaml, problem] of bad) {
    test(`refused: ${yaml}`, () => {
      assert.throws(() => parseConfig(`${BASE}${yaml}\n`, 'mesh.yaml'), (err: unknown) => err instanceof ConfigError && problem.test(err.message));
    });
  }

  test('createResolver picks the resolver of the mode', async () => {
    const make = (extra: string) => createResolver(parseConfig(`${BASE}${extra}`, undefined));
    const s = await make('');
    assert.ok(s instanceof StaticResolver);
    await s.ready();
    const d = await make('discovery: { mode: dns, dns: { servers: [127.0.0.1:9] } }\n');
    assert.ok(d instanceof DnsResolver);
    d.close();
    const k = await make('discovery: { mode: kubernetes, kubernetes: { server: "http://127.0.0.1:9" } }\n');
    assert.ok(k instanceof KubernetesResolver);
    k.close();
  });
});
