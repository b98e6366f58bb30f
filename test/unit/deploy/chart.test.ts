// The Helm chart, without a helm binary: values against the schema, every template sound YAML once its
// actions are set aside, and the objects it makes agree field by field with the plain manifests in
// deploy/ (rendered with a small subset of the template language: see template-lite.ts).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Ajv } from 'ajv';
import { parse, parseAllDocuments } from 'yaml';
import { Chart, hasPlaceholder, type RenderContext } from './template-lite.ts';

const ROOT = path.join(import.meta.dirname, '../../..');
const CHART = path.join(ROOT, 'charts/mcp-mesh');
const TEMPLATES = path.join(CHART, 'templates');
const RELEASE = 'mcp-mesh';
const NAMESPACE = 'mcp-mesh-system'; // the namespace of deploy/injector
const DEMO_NAMESPACE = 'mcp-mesh-demo';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown };

const values = parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, any>;
const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as object;
const chartMeta = parse(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')) as Record<string, string>;
const helpers = readFileSync(path.join(TEMPLATES, '_helpers.tpl'), 'utf8');
const templateFiles = readdirSync(TEMPLATES).filter((f) => f.endsWith('.yaml'));

function docs(text: string, where: string): Obj[] {
  const out: Obj[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) assert.fail(`${where}: ${doc.errors.map((e) => e.message).join('; ')}\n${text}`);
    const obj = doc.toJS() as Obj | null;
    if (obj !== null) out.push(obj);
  }
  return out;
}

function render(overrides: Record<string, unknown> = {}): Obj[] {
  const ctx: RenderContext = {
    values: { ...structuredClone(values), ...overrides },
    release: { Name: RELEASE, Namespace: NAMESPACE, Service: 'Helm' },
    chart: { Name: chartMeta.name!, Version: chartMeta.version!, AppVersion: chartMeta.appVersion! },
    // The one define with logic the subset does not evaluate: release "mcp-mesh" gives "mcp-mesh".
    fixedDefines: { 'mcp-mesh.fullname': RELEASE, 'mcp-mesh.name': 'mcp-mesh' },
  };
  const chart = new Chart(helpers, ctx);
  return templateFiles.flatMap((f) => docs(chart.render(readFileSync(path.join(TEMPLATES, f), 'utf8')), `${f} (rendered)`));
}

function deployObjects(folder: string): Obj[] {
  const dir = path.join(ROOT, 'deploy', folder);
  const kustomization = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  return kustomization.resources.flatMap((r) => docs(readFileSync(path.join(dir, r), 'utf8'), `deploy/${folder}/${r}`));
}

function find(objects: Obj[], kind: string, name: string, namespace?: string): Obj {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name && (namespace === undefined || o.metadata.namespace === namespace));
  assert.equal(found.length, 1, `exactly one ${kind} ${name}${namespace ? ` in ${namespace}` : ''}: found ${found.length}`);
  return found[0]!;
}

/**
 * Deep equality where the chart side may hold placeholders (what the subset cannot render). Returns the
 * paths it could not compare, so a test can require that exactly the expected ones were skipped.
 */
function compare(chart: unknown, plain: unknown, at: string, skipped: string[] = []): string[] {
  if (typeof chart === 'string' && chart.includes('__tpl_')) {
    skipped.push(at);
    return skipped;
  }
  if (Array.isArray(chart)) {
    assert.ok(Array.isArray(plain), `${at}: chart has a list, deploy/ has ${JSON.stringify(plain)}`);
    assert.equal(chart.length, plain.length, `${at}: list lengths differ\nchart:  ${JSON.stringify(chart)}\nplain:  ${JSON.stringify(plain)}`);
    chart.forEach((c, i) => compare(c, plain[i], `${at}[${i}]`, skipped));
    return skipped;
  }
  if (chart !== null && typeof chart === 'object') {
    assert.ok(plain !== null && typeof plain === 'object' && !Array.isArray(plain), `${at}: chart has a mapping, deploy/ has ${JSON.stringify(plain)}`);
    const c = chart as Record<string, unknown>;
    const p = plain as Record<string, unknown>;
    const placeholderKeys = Object.keys(c).filter((k) => k.startsWith('__tpl_'));
    if (placeholderKeys.length > 0) skipped.push(`${at}{included}`);
    for (const key of Object.keys(c)) if (!key.startsWith('__tpl_')) compare(c[key], p[key], `${at}.${key}`, skipped);
    const extra = Object.keys(p).filter((k) => !(k in c));
    if (placeholderKeys.length === 0) assert.deepEqual(extra, [], `${at}: keys only in deploy/: ${extra.join(', ')}`);
    return skipped;
  }
  assert.deepEqual(plain, chart, `${at}: deploy/ has ${JSON.stringify(plain)}, the chart ${JSON.stringify(chart)}`);
  return skipped;
}

describe('values', () => {
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
  const validate = ajv.compile(schema);

  test('values.yaml validates against values.schema.json (draft-07)', () => {
    assert.equal((schema as { $schema: string }).$schema, 'http://json-schema.org/draft-07/schema#');
    assert.ok(validate(values), ajv.errorsText(validate.errors));
  });

  test('the schema covers every value: unknown keys and bad values are rejected', () => {
    const bad: [string, Record<string, unknown>][] = [
      ['unknown top-level key', { ...values, replicas: 3 }],
      ['unknown nested key', { ...values, injector: { ...values.injector, replicaCount: 3 } }],
      ['failurePolicy outside Fail/Ignore', { ...values, webhook: { ...values.webhook, failurePolicy: 'Maybe' } }],
      ['webhook timeout above 30 s', { ...values, webhook: { ...values.webhook, timeoutSeconds: 31 } }],
      ['short token key', { ...values, tokenKey: { value: 'too-short' } }],
      ['namespace that is not a DNS label', { ...values, meshNamespaces: ['Shop_1'] }],
      ['policy file name that is not a ConfigMap key', { ...values, policies: { 'a b.yaml': 'x' } }],
    ];
    for (const [why, v] of bad) assert.equal(validate(v), false, why);
    assert.ok(validate({ ...values, tokenKey: { value: 'x'.repeat(32) }, meshNamespaces: ['shop'], webhook: { ...values.webhook, failurePolicy: 'Ignore' } }));
    // Every key of values.yaml is declared in the schema (walk both).
    const walk = (v: unknown, s: Record<string, any>, at: string): void => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return;
      if (s.additionalProperties && typeof s.additionalProperties === 'object' && !s.properties) return;
      for (const [k, child] of Object.entries(v)) {
        const sub = s.properties?.[k] as Record<string, any> | undefined;
        assert.ok(sub, `${at}.${k} is not in values.schema.json`);
        walk(child, sub.$ref ? (schema as any).definitions[sub.$ref.split('/').pop()] : sub, `${at}.${k}`);
      }
    };
    walk(values, schema as Record<string, any>, 'values');
  });

  test('Chart.yaml: appVersion = image tag = package version; defaults as documented', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(chartMeta.apiVersion, 'v2');
    assert.equal(chartMeta.appVersion, pkg.version);
    assert.equal(values.image.tag, pkg.version);
    assert.equal(values.injector.replicas, 2);
    assert.equal(values.injector.podDisruptionBudget.minAvailable, 1);
    assert.equal(values.webhook.failurePolicy, 'Fail');
    assert.deepEqual(values.webhook.excludeNamespaces, []);
  });
});

describe('templates', () => {
  const stripper = new Chart(helpers, undefined);
  for (const file of templateFiles) {
    test(`${file} is sound YAML with its actions set aside`, () => {
      const text = stripper.render(readFileSync(path.join(TEMPLATES, file), 'utf8'));
      const objects = docs(text, file);
      assert.ok(objects.length > 0, `${file} holds no object`);
      for (const o of objects) {
        assert.equal(typeof o.apiVersion, 'string', `${file}: apiVersion`);
        assert.equal(typeof o.kind, 'string', `${file}: kind`);
        assert.ok(o.metadata?.name, `${file}: metadata.name`);
      }
    });
  }

  test('the stripper keeps YAML valid for actions in key, value, nindent and multi-line positions', () => {
    const text = new Chart('', undefined).render([
      'a:',
      '  {{ .Values.key }}: {{ .Values.value | quote }}',
      '  labels: {{- include "x" . | nindent 4 }}',
      '  list:',
      '    {{- range .Values.items }}',
      '    - {{ . }}',
      '    {{- end }}',
      '  multi: {{ printf "%s"',
      '    .Values.a }}',
      '{{- /* a comment */ -}}',
      '',
    ].join('\n'));
    const parsed = parse(text) as { a: Record<string, unknown> };
    assert.equal(Object.keys(parsed.a).length, 4);
    assert.equal((parsed.a.list as unknown[]).length, 1);
    assert.equal(Object.keys(parsed.a.labels as object).length, 1);
  });
});

describe('the chart agrees with deploy/', () => {
  const demo = deployObjects('demo');
  const demoPolicies = find(demo, 'ConfigMap', 'mcp-mesh-policies', DEMO_NAMESPACE);
  const chart = render({ meshNamespaces: [DEMO_NAMESPACE], policies: demoPolicies.data });
  const plain = [...deployObjects('injector'), ...demo];

  test('the same kinds and names (release "mcp-mesh" in namespace mcp-mesh-system)', () => {
    const key = (o: Obj) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    // Made in deploy/ by gen-certs.sh (Secrets); in the chart by templates. Namespaces are created by
    // `helm install --create-namespace`; the demo's apps are not the chart's business.
    const chartOnly = new Set(['Secret']);
    const plainOnly = (o: Obj) => o.kind === 'Namespace' || (o.metadata.namespace === DEMO_NAMESPACE && o.metadata.name !== 'mcp-mesh-policies');
    const chartKeys = chart.filter((o) => !chartOnly.has(o.kind)).map(key).sort();
    const plainKeys = plain.filter((o) => !plainOnly(o)).map(key).sort();
    assert.deepEqual(chartKeys, plainKeys);
    assert.deepEqual(chartKeys, [
      'ClusterRole//mcp-mesh-sidecar',
      'ClusterRoleBinding//mcp-mesh-sidecar',
      `ConfigMap/${DEMO_NAMESPACE}/mcp-mesh-policies`,
      `Deployment/${NAMESPACE}/mcp-mesh-injector`,
      'MutatingWebhookConfiguration//mcp-mesh-injector',
      `PodDisruptionBudget/${NAMESPACE}/mcp-mesh-injector`,
      `Service/${NAMESPACE}/mcp-mesh-injector`,
      `ServiceAccount/${NAMESPACE}/mcp-mesh-injector`,
    ].sort());
    // The Secrets the chart makes are the ones gen-certs.sh makes.
    const script = readFileSync(path.join(ROOT, 'deploy/injector/gen-certs.sh'), 'utf8');
    for (const secret of chart.filter((o) => o.kind === 'Secret')) assert.ok(script.includes(`secret generic ${secret.metadata.name}`), `gen-certs.sh makes ${secret.metadata.name}`);
    const tls = find(chart, 'Secret', 'mcp-mesh-webhook-tls', NAMESPACE);
    assert.equal(tls.type, 'kubernetes.io/tls');
    assert.deepEqual(Object.keys(tls.data as object).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
  });

  test('labels: deploy/ carries every label the chart renders, and the selector labels', () => {
    for (const c of chart.filter((o) => o.kind !== 'Secret')) {
      const p = find(plain, c.kind, c.metadata.name, c.metadata.namespace);
      for (const [k, v] of Object.entries(c.metadata.labels ?? {})) if (!hasPlaceholder(k) && !hasPlaceholder(v)) assert.equal(p.metadata.labels?.[k], v, `${c.kind} ${c.metadata.name} label ${k}`);
      assert.equal(p.metadata.labels?.['app.kubernetes.io/name'], 'mcp-mesh');
      assert.equal(p.metadata.labels?.['app.kubernetes.io/instance'], RELEASE);
    }
  });

  test('Deployment: every field of the spec', () => {
    const c = find(chart, 'Deployment', 'mcp-mesh-injector', NAMESPACE);
    const p = find(plain, 'Deployment', 'mcp-mesh-injector', NAMESPACE);
    const skipped = compare(c.spec, p.spec, 'spec');
    assert.deepEqual(skipped, []);
    const env = (c.spec as any).template.spec.containers[0].env as { name: string; value?: string }[];
    assert.deepEqual(env.find((e) => e.name === 'MESH_INJECTOR_IMAGE')?.value, `${values.image.repository}:${values.image.tag}`);
    assert.deepEqual(env.find((e) => e.name === 'MESH_INJECTOR_TOKEN_SECRET')?.value, 'mcp-mesh-token-key');
    const pod = (c.spec as any).template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.containers[0].securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(pod.containers[0].args, ['injector', '--cert', '/etc/mcp-mesh/webhook/tls.crt', '--key', '/etc/mcp-mesh/webhook/tls.key', '--port', '9443', '--sidecar-mode', 'native']);
    assert.ok(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution, 'soft anti-affinity');
    assert.equal(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution, undefined);
  });

  test('Service (443 → the https port 9443) and PodDisruptionBudget', () => {
    for (const kind of ['Service', 'PodDisruptionBudget']) {
      const c = find(chart, kind, 'mcp-mesh-injector', NAMESPACE);
      assert.deepEqual(compare(c.spec, find(plain, kind, 'mcp-mesh-injector', NAMESPACE).spec, 'spec'), []);
    }
    const svc = find(chart, 'Service', 'mcp-mesh-injector', NAMESPACE).spec as any;
    const dep = find(chart, 'Deployment', 'mcp-mesh-injector', NAMESPACE).spec as any;
    assert.equal(svc.ports[0].port, 443);
    const port = dep.template.spec.containers[0].ports.find((p: { name: string }) => p.name === svc.ports[0].targetPort);
    assert.equal(port.containerPort, 9443);
    assert.deepEqual(svc.selector, dep.selector.matchLabels);
    assert.deepEqual((find(chart, 'PodDisruptionBudget', 'mcp-mesh-injector', NAMESPACE).spec as any).selector.matchLabels, dep.selector.matchLabels);
  });

  test('MutatingWebhookConfiguration: rules, selectors, match conditions, failurePolicy', () => {
    const c = find(chart, 'MutatingWebhookConfiguration', 'mcp-mesh-injector');
    const p = find(plain, 'MutatingWebhookConfiguration', 'mcp-mesh-injector');
    const skipped = compare(c.webhooks, p.webhooks, 'webhooks');
    // The caBundle comes from the generated CA (chart) or is a placeholder patched by gen-certs.sh (deploy/).
    assert.deepEqual(skipped, ['webhooks[0].clientConfig.caBundle', 'webhooks[1].clientConfig.caBundle']);
    for (const hook of p.webhooks as any[]) assert.equal(hook.clientConfig.caBundle, 'Cg==');
    assert.equal(c.metadata.annotations, undefined, 'no cert-manager annotation without cert-manager');
    for (const hook of c.webhooks as any[]) {
      assert.equal(hook.failurePolicy, 'Fail');
      assert.deepEqual(hook.admissionReviewVersions, ['v1']);
      assert.equal(hook.sideEffects, 'None');
      const names = hook.namespaceSelector.matchExpressions.find((e: { key: string }) => e.key === 'kubernetes.io/metadata.name');
      assert.equal(names.operator, 'NotIn');
      assert.deepEqual(names.values, [NAMESPACE, 'kube-system']);
    }
    // /mutate trusts the selectors; /mutate/opted-in has the injector check the pod's own opt-in again.
    assert.deepEqual((c.webhooks as any[]).map((h) => [h.name, h.clientConfig.service]), [
      ['namespace.inject.mcp-mesh.io', { name: 'mcp-mesh-injector', namespace: NAMESPACE, path: '/mutate', port: 443 }],
      ['pod.inject.mcp-mesh.io', { name: 'mcp-mesh-injector', namespace: NAMESPACE, path: '/mutate/opted-in', port: 443 }],
    ]);
    // The two webhooks never both match one namespace: In [enabled] vs NotIn [enabled].
    const byName = Object.fromEntries((c.webhooks as any[]).map((h) => [h.name, h]));
    const injectExpr = (h: any) => h.namespaceSelector.matchExpressions.find((e: { key: string }) => e.key === 'mcp-mesh.io/inject');
    assert.deepEqual(injectExpr(byName['namespace.inject.mcp-mesh.io']), { key: 'mcp-mesh.io/inject', operator: 'In', values: ['enabled'] });
    assert.deepEqual(injectExpr(byName['pod.inject.mcp-mesh.io']), { key: 'mcp-mesh.io/inject', operator: 'NotIn', values: ['enabled'] });
  });

  test('sidecar RBAC: the ClusterRole rules and the binding of the mesh namespaces', () => {
    const role = find(chart, 'ClusterRole', 'mcp-mesh-sidecar');
    assert.deepEqual(compare(role.rules, find(plain, 'ClusterRole', 'mcp-mesh-sidecar').rules, 'rules'), []);
    assert.deepEqual(role.rules, [
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
    ]);
    const c = find(chart, 'ClusterRoleBinding', 'mcp-mesh-sidecar');
    const p = find(plain, 'ClusterRoleBinding', 'mcp-mesh-sidecar');
    assert.deepEqual(compare({ roleRef: c.roleRef, subjects: c.subjects }, { roleRef: p.roleRef, subjects: p.subjects }, 'binding'), []);
    assert.deepEqual(c.subjects, [{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: `system:serviceaccounts:${DEMO_NAMESPACE}` }]);
  });

  test('the policies ConfigMap holds values.policies as the demo holds its policies', () => {
    const c = find(chart, 'ConfigMap', 'mcp-mesh-policies', DEMO_NAMESPACE);
    assert.deepEqual(compare(c.data, demoPolicies.data, 'data'), []);
  });

  test('ServiceAccount: no token mounted', () => {
    const c = find(chart, 'ServiceAccount', 'mcp-mesh-injector', NAMESPACE);
    assert.equal(c.automountServiceAccountToken, false);
    assert.equal(find(plain, 'ServiceAccount', 'mcp-mesh-injector', NAMESPACE).automountServiceAccountToken, false);
  });
});

describe('chart variants', () => {
  test('default meshNamespaces: no binding, no policies ConfigMap; the token key stays in the release namespace', () => {
    const objects = render();
    assert.equal(objects.filter((o) => o.kind === 'ClusterRoleBinding').length, 0);
    assert.equal(objects.filter((o) => o.kind === 'ConfigMap').length, 0);
    assert.equal(objects.filter((o) => o.kind === 'Secret' && o.metadata.name === 'mcp-mesh-token-key').length, 1);
  });

  test('certManager.enabled: Issuer, Certificate for the Service, CA injected by annotation, no generated Secret', () => {
    const objects = render({ certManager: { ...values.certManager, enabled: true } });
    assert.equal(objects.filter((o) => o.kind === 'Secret' && o.metadata.name === 'mcp-mesh-webhook-tls').length, 0);
    const issuer = find(objects, 'Issuer', 'mcp-mesh-selfsigned', NAMESPACE);
    assert.equal(issuer.apiVersion, 'cert-manager.io/v1');
    const cert = find(objects, 'Certificate', 'mcp-mesh-webhook', NAMESPACE) as any;
    assert.equal(cert.apiVersion, 'cert-manager.io/v1');
    assert.deepEqual(cert.spec.issuerRef, { group: 'cert-manager.io', kind: 'Issuer', name: 'mcp-mesh-selfsigned' });
    assert.ok(cert.spec.dnsNames.includes(`mcp-mesh-injector.${NAMESPACE}.svc`));
    const dep = find(objects, 'Deployment', 'mcp-mesh-injector', NAMESPACE) as any;
    assert.equal(dep.spec.template.spec.volumes.find((v: any) => v.name === 'webhook-tls').secret.secretName, cert.spec.secretName);
    const mwc = find(objects, 'MutatingWebhookConfiguration', 'mcp-mesh-injector') as any;
    assert.equal(mwc.metadata.annotations['cert-manager.io/inject-ca-from'], `${NAMESPACE}/mcp-mesh-webhook`);
    for (const hook of mwc.webhooks) assert.equal(hook.clientConfig.caBundle, undefined);
  });

  test('certManager with an issuer of yours: no Issuer made, the Certificate names yours', () => {
    const objects = render({ certManager: { ...values.certManager, enabled: true, issuerRef: { name: 'corp-ca', kind: 'ClusterIssuer' } } });
    assert.equal(objects.filter((o) => o.kind === 'Issuer').length, 0);
    assert.deepEqual((find(objects, 'Certificate', 'mcp-mesh-webhook', NAMESPACE) as any).spec.issuerRef, { group: 'cert-manager.io', kind: 'ClusterIssuer', name: 'corp-ca' });
  });

  test('failurePolicy, excluded namespaces and replicas come from values; the PDB can be turned off', () => {
    const objects = render({
      webhook: { failurePolicy: 'Ignore', timeoutSeconds: 5, excludeNamespaces: ['monitoring'] },
      injector: { ...values.injector, replicas: 3, podDisruptionBudget: { enabled: false, minAvailable: 1 } },
    });
    const mwc = find(objects, 'MutatingWebhookConfiguration', 'mcp-mesh-injector') as any;
    for (const hook of mwc.webhooks) {
      assert.equal(hook.failurePolicy, 'Ignore');
      assert.equal(hook.timeoutSeconds, 5);
      assert.deepEqual(hook.namespaceSelector.matchExpressions[1].values, [NAMESPACE, 'kube-system', 'monitoring']);
    }
    assert.equal((find(objects, 'Deployment', 'mcp-mesh-injector', NAMESPACE) as any).spec.replicas, 3);
    assert.equal(objects.filter((o) => o.kind === 'PodDisruptionBudget').length, 0);
  });

  test('the webhook TLS Secret and the caBundle come from one template run, with reuse on upgrade', () => {
    const text = readFileSync(path.join(TEMPLATES, 'webhook.yaml'), 'utf8');
    assert.equal(text.match(/include "mcp-mesh.webhookTLS"/g)?.length, 1, 'certificates generated once per run');
    assert.match(text, /ca\.crt: \{\{ \$tls\.caCert \}\}/);
    assert.equal(text.match(/caBundle: \{\{ \$tls\.caCert \}\}/g)?.length, 2);
    assert.match(helpers, /lookup "v1" "Secret" \.Release\.Namespace \(printf "%s-webhook-tls"/);
    assert.match(helpers, /genCA /);
    assert.match(helpers, /genSignedCert /);
    const token = readFileSync(path.join(TEMPLATES, 'token-key-secret.yaml'), 'utf8');
    assert.match(token, /lookup "v1" "Secret" \.Release\.Namespace/);
    assert.match(token, /randAlphaNum 48/);
  });
});
