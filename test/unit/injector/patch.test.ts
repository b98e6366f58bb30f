// buildPatch on real AdmissionReview requests (test/fixtures/admission): the patch is applied to the
// original pod with fast-json-patch, the result must be a valid Pod for the Kubernetes OpenAPI schema
// (kubernetes-models), and must be exactly what we expect.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { Pod as PodModel } from 'kubernetes-models/v1/Pod';
import { buildPatch, deploymentName, escapePointer, type Container, type InjectResult, type Pod } from '../../../sidecar/src/injector/patch.ts';
import { admit, defaultImage } from '../../../sidecar/src/injector/webhook.ts';

const IMAGE = 'ghcr.io/mcp-mesh/mcp-mesh:0.1.0';
const OPTIONS = { image: IMAGE, mode: 'native' } as const;

interface Review { request: { uid: string; object: Pod; [key: string]: unknown } }

function fixture(name: string): Review {
  return JSON.parse(readFileSync(new URL(`../../fixtures/admission/${name}.json`, import.meta.url), 'utf8')) as Review;
}

/** The API server keeps `creationTimestamp: null` in admission objects; the schema types it as a string. */
function withoutNulls<T>(value: T): T {
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v === null ? undefined : v))) as T;
}

function validate(pod: Pod): void {
  new PodModel(withoutNulls(pod) as ConstructorParameters<typeof PodModel>[0]).validate();
}

/** Apply like the API server: to a copy, every operation must succeed (validateOperation on). */
function applied(pod: Pod, result: InjectResult): Pod {
  assert.equal(result.kind, 'inject', JSON.stringify(result));
  if (result.kind !== 'inject') throw new Error('unreachable');
  const out = jsonpatch.applyPatch(structuredClone(pod), result.patch as jsonpatch.Operation[], true, false).newDocument;
  validate(out);
  return out;
}

function inject(name: string, options: { image: string; mode: 'native' | 'container'; scope?: 'selected' | 'opted-in' } = OPTIONS) {
  const { object } = fixture(name).request;
  validate(object);
  const result = buildPatch(object, options);
  return { original: object, result, pod: result.kind === 'inject' ? applied(object, result) : undefined };
}

const field = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });
const probe = (path: string) => ({ path, port: 'mcp-admin', scheme: 'HTTP' });

/** The sidecar as injected into the Deployment pod fixture: the whole spec, field by field. */
function expectedSidecar(over: { service: string; appPort: number; native: boolean; policies?: boolean; tls?: boolean; resources?: unknown }): Container {
  return {
    name: 'mcp-mesh-proxy',
    image: IMAGE,
    imagePullPolicy: 'IfNotPresent',
    args: ['sidecar'],
    ...(over.native ? { restartPolicy: 'Always' } : {}),
    env: [
      field('POD_NAME', 'metadata.name'),
      field('POD_NAMESPACE', 'metadata.namespace'),
      field('POD_IP', 'status.podIP'),
      field('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      { name: 'MESH_SERVICE', value: over.service },
      field('MESH_NAMESPACE', 'metadata.namespace'),
      field('MESH_INSTANCE', 'metadata.name'),
      { name: 'MESH_APP_PORT', value: String(over.appPort) },
      { name: 'MESH_LISTEN_OUTBOUND', value: '127.0.0.1:15001' },
      { name: 'MESH_LISTEN_INBOUND', value: '0.0.0.0:15002' },
      { name: 'MESH_LISTEN_ADMIN', value: '0.0.0.0:15000' },
      { name: 'MESH_DATA_DIR', value: '/var/lib/mcp-mesh' },
      { name: 'MESH_DISCOVERY_MODE', value: 'kubernetes' },
      ...(over.policies ? [{ name: 'MESH_POLICIES', value: '/etc/mcp-mesh/policies' }] : []),
      ...(over.tls ? [
        { name: 'MESH_TLS_CERT', value: '/etc/mcp-mesh/tls/tls.crt' },
        { name: 'MESH_TLS_KEY', value: '/etc/mcp-mesh/tls/tls.key' },
        { name: 'MESH_TLS_CA', value: '/etc/mcp-mesh/tls/ca.crt' },
        { name: 'MESH_TLS_REQUIRED', value: 'true' },
      ] : []),
    ],
    ports: [
      { name: 'mcp-outbound', containerPort: 15001, protocol: 'TCP' },
      { name: 'mcp-inbound', containerPort: 15002, protocol: 'TCP' },
      { name: 'mcp-admin', containerPort: 15000, protocol: 'TCP' },
    ],
    startupProbe: { httpGet: probe('/readyz'), periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 120 },
    readinessProbe: { httpGet: probe('/readyz'), periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 },
    livenessProbe: { httpGet: probe('/healthz'), periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 },
    resources: over.resources ?? { requests: { cpu: '50m', memory: '128Mi' } },
    volumeMounts: [
      { name: 'mcp-mesh-data', mountPath: '/var/lib/mcp-mesh' },
      { name: 'mcp-mesh-tmp', mountPath: '/tmp' },
      ...(over.policies ? [{ name: 'mcp-mesh-policies', mountPath: '/etc/mcp-mesh/policies', readOnly: true }] : []),
      ...(over.tls ? [{ name: 'mcp-mesh-tls', mountPath: '/etc/mcp-mesh/tls', readOnly: true }] : []),
    ],
    securityContext: {
      runAsNonRoot: true, runAsUser: 1337, runAsGroup: 1337, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

const PROXY_ENV = [
  { name: 'HTTP_PROXY', value: 'http://127.0.0.1:15001' },
  { name: 'http_proxy', value: 'http://127.0.0.1:15001' },
  { name: 'NO_PROXY', value: 'localhost,127.0.0.1,::1,kubernetes.default.svc' },
  { name: 'no_proxy', value: 'localhost,127.0.0.1,::1,kubernetes.default.svc' },
  { name: 'NODE_USE_ENV_PROXY', value: '1' },
];

describe('injector patch', () => {
  test("a Deployment's pod: native sidecar first, service from the app label, port from the first container, policy mounted", () => {
    const { original, pod, result } = inject('deployment-pod');
    assert.ok(pod && result.kind === 'inject');
    assert.equal(result.service, 'payments');
    assert.equal(result.appPort, 8080);
    assert.deepEqual(result.warnings, []);
    const expected = structuredClone(original);
    expected.metadata!.annotations!['mcp-mesh.io/status'] = 'injected';
    expected.spec!.initContainers = [expectedSidecar({ service: 'payments', appPort: 8080, native: true, policies: true })];
    expected.spec!.containers![0]!.env!.push(...PROXY_ENV);
    expected.spec!.volumes!.push(
      { name: 'mcp-mesh-data', emptyDir: {} },
      { name: 'mcp-mesh-tmp', emptyDir: {} },
      { name: 'mcp-mesh-policies', configMap: { name: 'payments-policies' } },
    );
    assert.deepEqual(pod, expected);
    // The patch escapes the annotation key (RFC 6901) and appends into the existing maps and arrays.
    assert.deepEqual(result.patch.map((op) => `${op.op} ${op.path}`), [
      'add /metadata/annotations/mcp-mesh.io~1status',
      'add /spec/containers/0/env/-', 'add /spec/containers/0/env/-', 'add /spec/containers/0/env/-', 'add /spec/containers/0/env/-', 'add /spec/containers/0/env/-',
      'add /spec/initContainers',
      'add /spec/volumes/-', 'add /spec/volumes/-', 'add /spec/volumes/-',
    ]);
  });

  test('a bare pod selected by its namespace: annotations map created, service from the pod name', () => {
    const { pod, result } = inject('bare-pod');
    assert.ok(pod && result.kind === 'inject');
    assert.deepEqual(pod.metadata!.annotations, { 'mcp-mesh.io/status': 'injected' });
    assert.equal(result.patch[0]!.path, '/metadata/annotations');
    assert.equal(result.service, 'debug');
    assert.equal(result.appPort, 3000);
    assert.deepEqual(pod.spec!.containers![0]!.env, PROXY_ENV, 'env created whole where the container had none');
    assert.deepEqual(pod.spec!.initContainers, [expectedSidecar({ service: 'debug', appPort: 3000, native: true })]);
  });

  test('scope "opted-in": the pod must opt in itself, by annotation or label', () => {
    const { object } = fixture('bare-pod').request;
    const optedIn = { ...OPTIONS, scope: 'opted-in' } as const;
    assert.deepEqual(buildPatch(object, optedIn), { kind: 'skip', reason: 'not annotated mcp-mesh.io/inject: "true"', warnings: [] });
    object.metadata!.labels = { 'mcp-mesh.io/inject': 'true' };
    assert.equal(buildPatch(object, optedIn).kind, 'inject');
    object.metadata!.labels = { 'mcp-mesh.io/inject': 'false' };
    assert.equal(buildPatch(object, OPTIONS).kind, 'skip', 'a label "false" opts out too');
  });

  test('with a token Secret configured, the sidecar reads the shared MCP token key from it (optional)', () => {
    const { object } = fixture('deployment-pod').request;
    const result = buildPatch(object, { ...OPTIONS, tokenSecret: 'mcp-mesh-token-key' });
    const pod = applied(object, result);
    const sidecar = pod.spec!.initContainers!.find((c) => c.name === 'mcp-mesh-proxy')!;
    assert.deepEqual(sidecar.env!.find((e) => e.name === 'MESH_MCP_TOKEN_KEY'),
      { name: 'MESH_MCP_TOKEN_KEY', valueFrom: { secretKeyRef: { name: 'mcp-mesh-token-key', key: 'tokenKey', optional: true } } });
    const without = applied(object, buildPatch(object, OPTIONS)).spec!.initContainers!.find((c) => c.name === 'mcp-mesh-proxy')!;
    assert.equal(without.env!.some((e) => e.name === 'MESH_MCP_TOKEN_KEY'), false);
  });

  test('existing init containers: the sidecar goes before them', () => {
    const { original, pod, result } = inject('init-containers');
    assert.ok(pod && result.kind === 'inject');
    assert.equal(result.service, 'orders', 'from app.kubernetes.io/name');
    assert.deepEqual(pod.spec!.initContainers!.map((c) => c.name), ['mcp-mesh-proxy', 'migrate']);
    assert.deepEqual(pod.spec!.initContainers![1], original.spec!.initContainers![0]);
    assert.ok(result.patch.some((op) => op.path === '/spec/initContainers/0'));
    assert.equal(pod.spec!.initContainers![1]!.env, undefined, 'init containers get no proxy variables');
  });

  test('containers that set their own proxy keep it; envFrom is warned about', () => {
    const { pod, result } = inject('own-proxy-env');
    assert.ok(pod && result.kind === 'inject');
    const [crawler, exporter] = pod.spec!.containers!;
    assert.deepEqual(crawler!.env, [
      { name: 'HTTP_PROXY', value: 'http://squid.infra:3128' },
      { name: 'no_proxy', value: '.internal' },
      { name: 'NODE_USE_ENV_PROXY', value: '1' },
    ]);
    assert.deepEqual(exporter!.env, PROXY_ENV);
    assert.deepEqual(result.warnings, [
      'mcp-mesh: container exporter uses envFrom; the injected HTTP_PROXY, http_proxy, NO_PROXY, no_proxy, NODE_USE_ENV_PROXY take precedence over the same names there (set mcp-mesh.io/proxy-env: "false" to keep yours)',
    ]);
  });

  test('no ports, annotated app port, service, TLS secret and resources', () => {
    const { pod, result } = inject('no-ports-app-port');
    assert.ok(pod && result.kind === 'inject');
    assert.deepEqual(pod.spec!.initContainers, [expectedSidecar({
      service: 'jobs-worker', appPort: 8081, native: true, tls: true,
      resources: { requests: { cpu: '100m', memory: '96Mi' }, limits: { cpu: '1', memory: '256Mi' } },
    })]);
    assert.deepEqual(pod.spec!.volumes!.slice(-3), [
      { name: 'mcp-mesh-data', emptyDir: {} },
      { name: 'mcp-mesh-tmp', emptyDir: {} },
      { name: 'mcp-mesh-tls', secret: { secretName: 'mcp-mesh-tls-jobs-worker' } },
    ]);
  });

  test('no ports and no app-port annotation: refused, saying which annotation to set', () => {
    const { object } = fixture('no-ports-app-port').request;
    delete object.metadata!.annotations!['mcp-mesh.io/app-port'];
    assert.deepEqual(buildPatch(object, OPTIONS), {
      kind: 'deny',
      message: 'mcp-mesh injector: mcp-mesh.io/app-port is required: container worker declares no TCP containerPort to take it from',
    });
  });

  test('already injected: left alone, whether by annotation or by container name', () => {
    const { object } = fixture('already-injected').request;
    assert.deepEqual(buildPatch(object, OPTIONS), { kind: 'skip', reason: 'sidecar injected already', warnings: [] });
    delete object.metadata!.annotations!['mcp-mesh.io/status'];
    assert.equal(buildPatch(object, OPTIONS).kind, 'skip');
    // Injecting twice is the same as once: the patched pod is seen as injected.
    const once = inject('deployment-pod');
    assert.equal(buildPatch(once.pod!, OPTIONS).kind, 'skip');
  });

  test('opted out with inject "false": left alone even with other bad annotations', () => {
    const { object } = fixture('opted-out').request;
    object.metadata!.annotations!['mcp-mesh.io/app-port'] = 'http';
    assert.deepEqual(buildPatch(object, OPTIONS), { kind: 'skip', reason: 'annotated mcp-mesh.io/inject: "false"', warnings: [] });
  });

  test('hostNetwork pod: skipped with a warning', () => {
    const { object } = fixture('host-network').request;
    const result = buildPatch(object, OPTIONS);
    assert.equal(result.kind, 'skip');
    assert.deepEqual(result.kind === 'skip' && result.warnings, ['mcp-mesh: hostNetwork pod: the sidecar\'s ports would be the node\'s; not injected']);
  });

  test('bad annotations: refused, every problem named', () => {
    const { object } = fixture('bad-annotations').request;
    assert.deepEqual(buildPatch(object, OPTIONS), {
      kind: 'deny',
      message: 'mcp-mesh injector: mcp-mesh.io/app-port: "http" must be a port number 1–65535; '
        + 'mcp-mesh.io/sidecar-mode: "sidecar" must be "native" or "container"; '
        + 'mcp-mesh.io/proxy-memory-limit: "lots" must be a Kubernetes quantity (e.g. 64Mi or 1Gi)',
    });
  });

  test("container mode by annotation: appended to containers, no restartPolicy, and a Job's pod is warned", () => {
    const { original, pod, result } = inject('container-mode-job');
    assert.ok(pod && result.kind === 'inject');
    assert.equal(result.mode, 'container');
    assert.equal(pod.spec!.initContainers, undefined);
    assert.deepEqual(pod.spec!.containers!.map((c) => c.name), ['report', 'mcp-mesh-proxy']);
    assert.deepEqual(pod.spec!.containers![1], expectedSidecar({ service: 'nightly-report', appPort: 8080, native: false }));
    assert.deepEqual(pod.spec!.containers![0], { ...original.spec!.containers![0], env: PROXY_ENV });
    assert.match(result.warnings[0]!, /restartPolicy Never: the sidecar keeps running after the app ends/);
  });

  test('container mode by the injector default; a pod annotation "native" wins over it', () => {
    const container = inject('deployment-pod', { image: IMAGE, mode: 'container' });
    assert.equal(container.result.kind === 'inject' && container.result.mode, 'container');
    assert.equal(container.pod!.spec!.containers!.at(-1)!.name, 'mcp-mesh-proxy');
    const { object } = fixture('deployment-pod').request;
    object.metadata!.annotations!['mcp-mesh.io/sidecar-mode'] = 'native';
    const result = buildPatch(object, { image: IMAGE, mode: 'container' });
    assert.equal(result.kind === 'inject' && result.mode, 'native');
  });

  test('proxy-env "false": the app containers are not touched', () => {
    const { object } = fixture('deployment-pod').request;
    object.metadata!.annotations!['mcp-mesh.io/proxy-env'] = 'false';
    const result = buildPatch(object, OPTIONS);
    const pod = applied(object, result);
    assert.deepEqual(pod.spec!.containers, object.spec!.containers);
  });

  test('service from the owner: a ReplicaSet loses its pod-template-hash, other owners give their name', () => {
    const { object } = fixture('deployment-pod').request;
    delete object.metadata!.labels!.app;
    const result = buildPatch(object, OPTIONS);
    assert.equal(result.kind === 'inject' && result.service, 'payments');
    assert.equal(deploymentName('payments-api-7d9f8b6c5d', '7d9f8b6c5d'), 'payments-api');
    assert.equal(deploymentName('payments-api-7d9f8b6c5d', undefined), 'payments-api');
    const worker = fixture('no-ports-app-port').request.object;
    delete worker.metadata!.annotations!['mcp-mesh.io/service'];
    const fromStatefulSet = buildPatch(worker, OPTIONS);
    assert.equal(fromStatefulSet.kind === 'inject' && fromStatefulSet.service, 'worker');
  });

  test('a label that is no service name: refused, asking for the annotation', () => {
    const { object } = fixture('deployment-pod').request;
    object.metadata!.labels!.app = 'Payments_API';
    assert.deepEqual(buildPatch(object, OPTIONS), {
      kind: 'deny',
      message: 'mcp-mesh injector: service name "Payments_API" (from the label app) is not a valid service name (lower-case letters, digits and "-", at most 63): set mcp-mesh.io/service',
    });
  });

  test("an app using the sidecar's ports is refused", () => {
    const { object } = fixture('deployment-pod').request;
    object.spec!.containers![0]!.ports!.push({ containerPort: 15000, protocol: 'TCP' });
    const result = buildPatch(object, OPTIONS);
    assert.equal(result.kind, 'deny');
    assert.match(result.kind === 'deny' ? result.message : '', /container payments: port 15000 is taken by the mcp-mesh sidecar/);
  });

  test('kubectl.kubernetes.io/default-container picks the container whose port is the app port', () => {
    const { object } = fixture('own-proxy-env').request;
    object.spec!.containers![1]!.ports = [{ containerPort: 9102, protocol: 'TCP' }];
    object.metadata!.annotations!['kubectl.kubernetes.io/default-container'] = 'exporter';
    const result = buildPatch(object, OPTIONS);
    assert.equal(result.kind === 'inject' && result.appPort, 9102);
  });

  test('only a limit annotated below the default request: the request follows the limit', () => {
    const { object } = fixture('deployment-pod').request;
    object.metadata!.annotations!['mcp-mesh.io/proxy-cpu-limit'] = '20m';
    const pod = applied(object, buildPatch(object, OPTIONS));
    assert.deepEqual(pod.spec!.initContainers![0]!.resources, { requests: { cpu: '20m', memory: '128Mi' }, limits: { cpu: '20m' } });
  });

  test('the default image is this release', () => {
    const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(defaultImage(), `ghcr.io/mcp-mesh/mcp-mesh:${version}`);
  });

  test('RFC 6901 escaping', () => {
    assert.equal(escapePointer('mcp-mesh.io/status'), 'mcp-mesh.io~1status');
    assert.equal(escapePointer('a~b/c'), 'a~0b~1c');
  });
});

describe('injector admission answers', () => {
  test('inject: allowed, JSONPatch, base64 of the patch, the request uid', () => {
    const { request } = fixture('deployment-pod');
    const { response } = admit(request as Parameters<typeof admit>[0], OPTIONS);
    assert.equal(response.uid, '0f2a1d8e-6b1c-4c2e-9d8f-1a2b3c4d5e01');
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(response.patch!, 'base64').toString('utf8')) as unknown;
    assert.deepEqual(patch, (buildPatch(request.object, OPTIONS) as { patch: unknown }).patch);
  });

  test('deny: allowed false with the message; skip: allowed without patch, with warnings', () => {
    const denied = admit(fixture('bad-annotations').request as Parameters<typeof admit>[0], OPTIONS).response;
    assert.equal(denied.allowed, false);
    assert.equal(denied.status?.code, 400);
    assert.match(denied.status?.message ?? '', /mcp-mesh\.io\/app-port: "http" must be a port number 1–65535/);
    const skipped = admit(fixture('host-network').request as Parameters<typeof admit>[0], OPTIONS).response;
    assert.deepEqual(skipped, { uid: '0f2a1d8e-6b1c-4c2e-9d8f-1a2b3c4d5e07', allowed: true, warnings: ['mcp-mesh: hostNetwork pod: the sidecar\'s ports would be the node\'s; not injected'] });
  });

  test('not a pod creation: allowed untouched', () => {
    const request = fixture('deployment-pod').request as Parameters<typeof admit>[0];
    assert.deepEqual(admit({ ...request, operation: 'UPDATE' }, OPTIONS).response, { uid: request.uid, allowed: true });
    assert.deepEqual(admit({ ...request, subResource: 'ephemeralcontainers' }, OPTIONS).response, { uid: request.uid, allowed: true });
    assert.deepEqual(admit({ ...request, kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }, OPTIONS).response, { uid: request.uid, allowed: true });
  });
});
