// The plain manifests in deploy/: every object valid against the Kubernetes schema (kubernetes-models),
// every kustomization complete, gen-certs.sh producing a certificate the API server would accept, and
// the demo shaped as documented.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { validatePolicies } from '../../../sidecar/src/policy/validate.ts';

const ROOT = path.join(import.meta.dirname, '../../..');
const DEPLOY = path.join(ROOT, 'deploy');

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [k: string]: any };

/** apiVersion/kind → the kubernetes-models class that validates it. */
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
};

const kustomizations = readdirSync(DEPLOY).filter((d) => existsSync(path.join(DEPLOY, d, 'kustomization.yaml')));

function load(folder: string): { resources: string[]; objects: (Obj & { file: string })[] } {
  const dir = path.join(DEPLOY, folder);
  const k = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  const objects = k.resources.flatMap((r) => {
    const file = path.join(dir, r);
    return parseAllDocuments(readFileSync(file, 'utf8')).map((doc) => {
      assert.deepEqual(doc.errors.map((e) => e.message), [], `deploy/${folder}/${r}`);
      return { ...(doc.toJS() as Obj), file: `deploy/${folder}/${r}` };
    });
  });
  return { resources: k.resources, objects };
}

test('deploy/ has the injector and the demo kustomizations', () => {
  assert.deepEqual(kustomizations.sort(), ['demo', 'injector']);
});

for (const folder of kustomizations) {
  describe(`deploy/${folder}`, () => {
    test('every listed resource exists, and every YAML file in the folder is listed', () => {
      const { resources } = load(folder);
      const dir = path.join(DEPLOY, folder);
      for (const r of resources) assert.ok(existsSync(path.join(dir, r)) && statSync(path.join(dir, r)).isFile(), `${r} listed in deploy/${folder}/kustomization.yaml is missing`);
      const yamls = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
      assert.deepEqual(yamls.sort(), [...resources].sort());
    });

    test('every object is valid against the Kubernetes schema', () => {
      const { objects } = load(folder);
      assert.ok(objects.length > 0);
      for (const obj of objects) {
        const { file, ...data } = obj;
        const Model = MODELS[`${data.apiVersion}/${data.kind}`];
        assert.ok(Model, `${file}: no schema known for ${data.apiVersion} ${data.kind}`);
        assert.doesNotThrow(() => new Model(data).validate(), `${file}: ${data.kind} ${data.metadata?.name}`);
      }
    });

    test('kubectl kustomize builds it (when kubectl is installed)', (t) => {
      const probe = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
      if (probe.error || probe.status !== 0) return t.skip('kubectl not installed');
      const out = execFileSync('kubectl', ['kustomize', path.join(DEPLOY, folder)], { encoding: 'utf8', timeout: 30_000 });
      const built = parseAllDocuments(out).map((d) => d.toJS() as Obj);
      assert.equal(built.length, load(folder).objects.length);
    });
  });
}

test('an invalid object is caught by the schema check (the check is not vacuous)', () => {
  const { objects } = load('injector');
  const dep = structuredClone(objects.find((o) => o.kind === 'Deployment')!) as Obj;
  delete dep.file;
  dep.spec.template.spec.containers[0].ports[0].containerPort = 'https';
  assert.throws(() => new Deployment(dep).validate());
});

describe('deploy/demo', () => {
  const { objects } = load('demo');
  const deployments = objects.filter((o) => o.kind === 'Deployment');

  test('two services (orders → payments) and an MCP server of 3 replicas, each pod annotated for injection', () => {
    assert.deepEqual(deployments.map((d) => d.metadata.name).sort(), ['mcp-server', 'orders', 'payments']);
    assert.equal(deployments.find((d) => d.metadata.name === 'mcp-server')!.spec.replicas, 3);
    for (const d of deployments) {
      const annotations = d.spec.template.metadata.annotations as Record<string, string>;
      assert.equal(annotations['mcp-mesh.io/inject'], 'true', d.metadata.name);
      assert.equal(annotations['mcp-mesh.io/service'], d.metadata.name);
      assert.equal(annotations['mcp-mesh.io/policy'], 'mcp-mesh-policies');
      assert.equal(annotations['mcp-mesh.io/app-port'], String(d.spec.template.spec.containers[0].ports[0].containerPort));
      const script = d.spec.template.spec.containers[0].command[1] as string;
      const apps = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'demo-apps')!;
      assert.ok(apps.data[path.basename(script)], `${d.metadata.name} runs ${script}, which demo-apps holds`);
    }
    const orders = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'demo-apps')!.data['orders.mjs'] as string;
    assert.match(orders, /host: 'payments'/);
  });

  test('each Deployment has a regular ClusterIP Service selecting its pods', () => {
    for (const d of deployments) {
      const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === d.metadata.name)!;
      assert.ok(svc, `Service ${d.metadata.name}`);
      assert.equal(svc.spec.type, 'ClusterIP');
      assert.equal(svc.spec.clusterIP, undefined, 'not headless');
      for (const [k, v] of Object.entries(svc.spec.selector as Record<string, string>)) assert.equal(d.spec.template.metadata.labels[k], v);
    }
  });

  test('the demo apps are valid JavaScript', () => {
    const apps = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'demo-apps')!;
    for (const [name, source] of Object.entries(apps.data as Record<string, string>)) {
      const r = spawnSync(process.execPath, ['--check', '--input-type=module'], { input: source, encoding: 'utf8' });
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    }
  });

  test('the demo policies pass the policy validator', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-demo-policies-'));
    try {
      const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'mcp-mesh-policies')!;
      for (const [file, body] of Object.entries(cm.data as Record<string, string>)) writeFileSync(path.join(dir, file), body);
      const { ok, errors } = validatePolicies([dir]);
      assert.deepEqual(errors, []);
      assert.equal(ok.length, Object.keys(cm.data).length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deploy/injector/gen-certs.sh (openssl for real, kubectl faked)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-gen-certs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const log = path.join(dir, 'kubectl.log');
  const fake = path.join(dir, 'kubectl');
  // Records each call; `get` finds nothing (a first install); `create … -o yaml` prints its args;
  // `apply -f -` records what it was given.
  writeFileSync(fake, `#!/bin/sh
echo "ARGS $*" >> "${log}"
case "$*" in
  *" get "*) exit 1 ;;
  *"apply -f -"*) sed 's/^/STDIN /' >> "${log}" ;;
  *"create "*) echo "created: $*" ;;
esac
exit 0
`);
  chmodSync(fake, 0o755);

  test('makes a CA and a serving certificate for the Service, patches both caBundles, shares one token key', (t) => {
    if (spawnSync('openssl', ['version']).status !== 0) return t.skip('openssl not installed');
    const out = path.join(dir, 'out');
    const r = spawnSync('sh', [path.join(DEPLOY, 'injector/gen-certs.sh'), 'mcp-mesh-system', 'shop', 'mcp-mesh-demo'], {
      env: { ...process.env, KUBECTL: fake, OUT_DIR: out }, encoding: 'utf8', timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const ca = new X509Certificate(readFileSync(path.join(out, 'ca.crt')));
    const cert = new X509Certificate(readFileSync(path.join(out, 'tls.crt')));
    assert.ok(ca.ca, 'the CA certificate is a CA');
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'the serving certificate is signed by the CA');
    assert.ok(!cert.ca);
    for (const name of ['mcp-mesh-injector.mcp-mesh-system.svc', 'mcp-mesh-injector.mcp-mesh-system.svc.cluster.local']) {
      assert.ok(cert.checkHost(name), `certificate valid for ${name}`);
    }
    const calls = readFileSync(log, 'utf8');
    assert.match(calls, /ARGS -n mcp-mesh-system create secret generic mcp-mesh-webhook-tls --type=kubernetes.io\/tls/);
    const patch = /ARGS patch mutatingwebhookconfiguration mcp-mesh-injector --type=json -p (.*)/.exec(calls);
    assert.ok(patch, calls);
    const ops = JSON.parse(patch[1]!) as { op: string; path: string; value: string }[];
    const caB64 = readFileSync(path.join(out, 'ca.crt')).toString('base64');
    assert.deepEqual(ops, [0, 1].map((i) => ({ op: 'replace', path: `/webhooks/${i}/clientConfig/caBundle`, value: caB64 })));
    const keys = [...calls.matchAll(/ARGS -n (\S+) create secret generic mcp-mesh-token-key --from-literal=tokenKey=(\S+)/g)];
    assert.deepEqual(keys.map((m) => m[1]), ['mcp-mesh-system', 'shop', 'mcp-mesh-demo']);
    assert.equal(new Set(keys.map((m) => m[2])).size, 1, 'one key for the whole mesh');
    assert.equal(keys[0]![2]!.length, 48);
  });
});
