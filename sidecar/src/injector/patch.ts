// pod → RFC 6902 JSON patch that adds the mcp-mesh sidecar. Pure: the same pod and options always give
// the same answer; no I/O, no clock. The webhook (webhook.ts) only wraps it in an AdmissionReview.
import {
  ANNOTATIONS, DEFAULT_CONTAINER_ANNOTATION, parseAnnotations, quantityValue, isServiceName, STATUS_INJECTED,
  type PodSettings, type SidecarMode,
} from './annotations.ts';

/** The sidecar's container name; a pod with a container (or init container) of this name is injected already. */
export const SIDECAR_NAME = 'mcp-mesh-proxy';

/** Ports in the pod's network namespace. */
export const PORTS = { admin: 15000, outbound: 15001, inbound: 15002 } as const;
export const PORT_NAMES = { admin: 'mcp-admin', outbound: 'mcp-outbound', inbound: 'mcp-inbound' } as const;

/** Where things live in the sidecar container. */
export const PATHS = { data: '/var/lib/mcp-mesh', tmp: '/tmp', policies: '/etc/mcp-mesh/policies', tls: '/etc/mcp-mesh/tls' } as const;
export const VOLUMES = { data: 'mcp-mesh-data', tmp: 'mcp-mesh-tmp', policies: 'mcp-mesh-policies', tls: 'mcp-mesh-tls' } as const;

/** The sidecar's user: fixed, not root, and unlikely to be an app's (Istio's proxy uses the same). */
export const SIDECAR_UID = 1337;

export const DEFAULT_RESOURCES = { cpuRequest: '50m', memoryRequest: '128Mi' } as const; // a sidecar uses about 110–140 MB (README, Performance)

function isSidecarPort(port: number): boolean {
  return (Object.values(PORTS) as number[]).includes(port);
}

/** What the app's containers get so plain `fetch('http://payments/…')` goes through the sidecar. */
export const PROXY_URL = `http://127.0.0.1:${PORTS.outbound}`;
export const NO_PROXY = 'localhost,127.0.0.1,::1,kubernetes.default.svc';

// Just enough of the Kubernetes types for what the injector reads and writes (the API server has
// validated the pod already; we only read it).
export interface EnvVar { name: string; value?: string; valueFrom?: unknown }
export interface ContainerPort { containerPort: number; name?: string; protocol?: string }
export interface Container {
  name: string;
  image?: string;
  env?: EnvVar[];
  envFrom?: unknown[];
  ports?: ContainerPort[];
  [key: string]: unknown;
}
export interface OwnerReference { kind: string; name: string; controller?: boolean; apiVersion?: string; uid?: string }
export interface Pod {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    generateName?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: OwnerReference[];
    [key: string]: unknown;
  };
  spec?: {
    containers?: Container[];
    initContainers?: Container[];
    volumes?: { name: string; [key: string]: unknown }[];
    hostNetwork?: boolean;
    restartPolicy?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface PatchOperation { op: 'add' | 'replace' | 'remove'; path: string; value?: unknown }

export interface InjectOptions {
  image: string;
  /**
   * The Secret (in each meshed namespace) whose key `tokenKey` is the mesh's shared MCP session token
   * key (mcp.tokenKey): every sidecar gets it as MESH_MCP_TOKEN_KEY, optional so a namespace without
   * it still runs (each sidecar then makes its own key and says so).
   */
  tokenSecret?: string;
  /** The injector's default; a pod's `mcp-mesh.io/sidecar-mode` wins. */
  mode: SidecarMode;
  /**
   * `selected` (the default): the webhook configuration's selectors (namespaceSelector, objectSelector,
   * matchConditions) decided the pod is in scope: inject unless it opts out. `opted-in`: the pod itself
   * must say `mcp-mesh.io/inject: "true"` (annotation or label), for a webhook entry that cannot filter
   * on annotations (no matchConditions before Kubernetes 1.30). The AdmissionReview does not carry the
   * namespace's labels, so the injector cannot check a namespace opt-in itself.
   */
  scope?: 'selected' | 'opted-in';
}

/**
 * - `inject`: allowed, with this patch (and maybe warnings for the user).
 * - `skip`: allowed, unchanged: opted out, injected already, or a pod the sidecar cannot serve (`reason`).
 * - `deny`: refused; `message` names each bad annotation and what it must be.
 */
export type InjectResult =
  | { kind: 'inject'; patch: PatchOperation[]; warnings: string[]; service: string; appPort: number; mode: SidecarMode }
  | { kind: 'skip'; reason: string; warnings: string[] }
  | { kind: 'deny'; message: string };

/** RFC 6901: `~` → `~0`, `/` → `~1` in one path segment. */
export function escapePointer(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

export function buildPatch(pod: Pod, options: InjectOptions): InjectResult {
  const annotations = pod.metadata?.annotations ?? {};
  const containers = pod.spec?.containers ?? [];
  const initContainers = pod.spec?.initContainers ?? [];

  const label = pod.metadata?.labels?.[ANNOTATIONS.inject];
  if (annotations[ANNOTATIONS.inject] === 'false') return { kind: 'skip', reason: `annotated ${ANNOTATIONS.inject}: "false"`, warnings: [] };
  if (label === 'false') return { kind: 'skip', reason: `labelled ${ANNOTATIONS.inject}: "false"`, warnings: [] };
  if (options.scope === 'opted-in' && annotations[ANNOTATIONS.inject] !== 'true' && label !== 'true') {
    return { kind: 'skip', reason: `not annotated ${ANNOTATIONS.inject}: "true"`, warnings: [] };
  }
  if (annotations[ANNOTATIONS.status] === STATUS_INJECTED || [...containers, ...initContainers].some((c) => c.name === SIDECAR_NAME)) {
    return { kind: 'skip', reason: 'sidecar injected already', warnings: [] };
  }
  const parsed = parseAnnotations(annotations);
  if (!parsed.ok) return deny(parsed.problems);
  const settings = parsed.settings;
  if (pod.spec?.hostNetwork === true) {
    const reason = 'hostNetwork pod: the sidecar\'s ports would be the node\'s; not injected';
    return { kind: 'skip', reason, warnings: [`mcp-mesh: ${reason}`] };
  }

  const problems: string[] = [];
  const service = serviceName(pod, settings, problems);
  const appPort = appPortOf(pod, settings, problems);
  for (const container of [...containers, ...initContainers]) {
    for (const port of container.ports ?? []) {
      if (isSidecarPort(port.containerPort)) {
        problems.push(`container ${container.name}: port ${port.containerPort} is taken by the mcp-mesh sidecar (${PORTS.admin}–${PORTS.inbound}); move it or set ${ANNOTATIONS.inject}: "false"`);
      }
    }
  }
  if (appPort !== undefined && isSidecarPort(appPort)) {
    problems.push(`${ANNOTATIONS.appPort}: ${appPort} is one of the sidecar's own ports (${PORTS.admin}–${PORTS.inbound})`);
  }
  const taken = new Set((pod.spec?.volumes ?? []).map((v) => v.name));
  for (const volume of Object.values(VOLUMES)) {
    if (taken.has(volume)) problems.push(`volume ${volume}: the pod has a volume of this name already; the sidecar needs it`);
  }
  if (problems.length > 0 || service === undefined || appPort === undefined) return deny(problems);

  const mode = settings.mode ?? options.mode;
  const warnings: string[] = [];
  const patch: PatchOperation[] = [];

  // Annotations first: a later reinvocation (reinvocationPolicy: IfNeeded) sees the pod as injected.
  if (pod.metadata?.annotations) {
    patch.push({ op: 'add', path: `/metadata/annotations/${escapePointer(ANNOTATIONS.status)}`, value: STATUS_INJECTED });
  } else {
    patch.push({ op: 'add', path: '/metadata/annotations', value: { [ANNOTATIONS.status]: STATUS_INJECTED } });
  }

  if (settings.proxyEnv) {
    containers.forEach((container, index) => {
      const added = proxyEnv(container);
      if (added.length === 0) return;
      if (container.env) {
        for (const variable of added) patch.push({ op: 'add', path: `/spec/containers/${index}/env/-`, value: variable });
      } else {
        patch.push({ op: 'add', path: `/spec/containers/${index}/env`, value: added });
      }
      if (container.envFrom && container.envFrom.length > 0) {
        warnings.push(`mcp-mesh: container ${container.name} uses envFrom; the injected ${added.map((v) => v.name).join(', ')} take precedence over the same names there (set ${ANNOTATIONS.proxyEnv}: "false" to keep yours)`);
      }
    });
  }

  const sidecar = sidecarContainer({ image: options.image, mode, service, appPort, settings, ...(options.tokenSecret ? { tokenSecret: options.tokenSecret } : {}) });
  if (mode === 'native') {
    // First: up (startupProbe passed) before the other init containers and the app start.
    if (pod.spec?.initContainers) patch.push({ op: 'add', path: '/spec/initContainers/0', value: sidecar });
    else patch.push({ op: 'add', path: '/spec/initContainers', value: [sidecar] });
  } else {
    patch.push({ op: 'add', path: '/spec/containers/-', value: sidecar });
    if (pod.spec?.restartPolicy === 'Never' || pod.spec?.restartPolicy === 'OnFailure') {
      warnings.push(`mcp-mesh: sidecar-mode "container" in a pod with restartPolicy ${pod.spec.restartPolicy}: the sidecar keeps running after the app ends, so a Job's pod never completes; use sidecar-mode "native" (Kubernetes 1.29 and later)`);
    }
  }

  const volumes = sidecarVolumes(settings);
  if (pod.spec?.volumes) {
    for (const volume of volumes) patch.push({ op: 'add', path: '/spec/volumes/-', value: volume });
  } else {
    patch.push({ op: 'add', path: '/spec/volumes', value: volumes });
  }
  return { kind: 'inject', patch, warnings, service, appPort, mode };
}

function deny(problems: string[]): InjectResult {
  return { kind: 'deny', message: `mcp-mesh injector: ${problems.join('; ')}` };
}

/** The annotation, else the app's name label, else the owning workload's name, else the pod's. */
function serviceName(pod: Pod, settings: PodSettings, problems: string[]): string | undefined {
  if (settings.service) return settings.service;
  const labels = pod.metadata?.labels ?? {};
  const fromLabel = labels['app.kubernetes.io/name'] ?? labels.app;
  let candidate: string | undefined;
  let from: string;
  if (fromLabel !== undefined) {
    candidate = fromLabel;
    from = labels['app.kubernetes.io/name'] !== undefined ? 'label app.kubernetes.io/name' : 'label app';
  } else {
    const owners = pod.metadata?.ownerReferences ?? [];
    const owner = owners.find((o) => o.controller) ?? owners[0];
    if (owner) {
      candidate = owner.kind === 'ReplicaSet' ? deploymentName(owner.name, labels['pod-template-hash']) : owner.name;
      from = `owner ${owner.kind} ${owner.name}`;
    } else if (pod.metadata?.generateName) {
      candidate = pod.metadata.generateName.replace(/-+$/, '');
      from = `generateName ${pod.metadata.generateName}`;
    } else {
      candidate = pod.metadata?.name;
      from = 'pod name';
    }
  }
  if (candidate === undefined || candidate === '') {
    problems.push(`no service name: set ${ANNOTATIONS.service}`);
    return undefined;
  }
  if (!isServiceName(candidate)) {
    problems.push(`service name ${JSON.stringify(candidate)} (from the ${from}) is not a valid service name (lower-case letters, digits and "-", at most 63): set ${ANNOTATIONS.service}`);
    return undefined;
  }
  return candidate;
}

/** A Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`. */
export function deploymentName(replicaSet: string, podTemplateHash: string | undefined): string {
  if (podTemplateHash && replicaSet.endsWith(`-${podTemplateHash}`)) return replicaSet.slice(0, -podTemplateHash.length - 1);
  // No label to go by: the hash is the last segment (up to 10 characters of [a-z0-9], as the controller makes it).
  return replicaSet.replace(/-[a-z0-9]{1,10}$/, '') || replicaSet;
}

/** The annotation, else the first TCP containerPort of the app's main container. */
function appPortOf(pod: Pod, settings: PodSettings, problems: string[]): number | undefined {
  if (settings.appPort !== undefined) return settings.appPort;
  const containers = pod.spec?.containers ?? [];
  const named = pod.metadata?.annotations?.[DEFAULT_CONTAINER_ANNOTATION];
  const main = containers.find((c) => c.name === named) ?? containers[0];
  const port = main?.ports?.find((p) => (p.protocol ?? 'TCP') === 'TCP');
  if (!port) {
    problems.push(`${ANNOTATIONS.appPort} is required: container ${main?.name ?? '(none)'} declares no TCP containerPort to take it from`);
    return undefined;
  }
  return port.containerPort;
}

/**
 * The proxy variables a container does not set itself. HTTP_PROXY/http_proxy and NO_PROXY/no_proxy go
 * as pairs: a container that sets either spelling keeps its own setting, and gets neither of ours
 * (tools disagree on which spelling wins, so a mix would send some clients one way and some the other).
 */
function proxyEnv(container: Container): EnvVar[] {
  const has = new Set((container.env ?? []).map((e) => e.name));
  const out: EnvVar[] = [];
  if (!has.has('HTTP_PROXY') && !has.has('http_proxy')) out.push({ name: 'HTTP_PROXY', value: PROXY_URL }, { name: 'http_proxy', value: PROXY_URL });
  if (!has.has('NO_PROXY') && !has.has('no_proxy')) out.push({ name: 'NO_PROXY', value: NO_PROXY }, { name: 'no_proxy', value: NO_PROXY });
  if (!has.has('NODE_USE_ENV_PROXY')) out.push({ name: 'NODE_USE_ENV_PROXY', value: '1' });
  return out;
}

function fieldEnv(name: string, fieldPath: string): EnvVar {
  return { name, valueFrom: { fieldRef: { fieldPath } } };
}

function resources(settings: PodSettings): Record<string, Record<string, string>> {
  const r = settings.resources;
  // With only a limit annotated, a default request above it would make the pod invalid: use the limit.
  const request = (annotated: string | undefined, fallback: string, limit: string | undefined) =>
    annotated ?? (limit !== undefined && quantityValue(limit)! < quantityValue(fallback)! ? limit : fallback);
  const out: Record<string, Record<string, string>> = {
    requests: {
      cpu: request(r.cpuRequest, DEFAULT_RESOURCES.cpuRequest, r.cpuLimit),
      memory: request(r.memoryRequest, DEFAULT_RESOURCES.memoryRequest, r.memoryLimit),
    },
  };
  const limits: Record<string, string> = {};
  if (r.cpuLimit !== undefined) limits.cpu = r.cpuLimit;
  if (r.memoryLimit !== undefined) limits.memory = r.memoryLimit;
  if (Object.keys(limits).length > 0) out.limits = limits;
  return out;
}

export function sidecarContainer(input: { image: string; mode: SidecarMode; service: string; appPort: number; settings: PodSettings; tokenSecret?: string }): Container {
  const { settings } = input;
  const env: EnvVar[] = [
    fieldEnv('POD_NAME', 'metadata.name'),
    fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
    fieldEnv('POD_IP', 'status.podIP'),
    fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    { name: 'MESH_SERVICE', value: input.service },
    fieldEnv('MESH_NAMESPACE', 'metadata.namespace'),
    fieldEnv('MESH_INSTANCE', 'metadata.name'),
    { name: 'MESH_APP_PORT', value: String(input.appPort) },
    { name: 'MESH_LISTEN_OUTBOUND', value: `127.0.0.1:${PORTS.outbound}` },
    { name: 'MESH_LISTEN_INBOUND', value: `0.0.0.0:${PORTS.inbound}` },
    // The kubelet probes the pod's IP, so admin cannot stay on loopback (docs/injector.md, "Probes").
    { name: 'MESH_LISTEN_ADMIN', value: `0.0.0.0:${PORTS.admin}` },
    { name: 'MESH_DATA_DIR', value: PATHS.data },
    // Peers are found through the cluster's EndpointSlices (docs/discovery.md; RBAC from the chart).
    { name: 'MESH_DISCOVERY_MODE', value: 'kubernetes' },
  ];
  if (settings.policy) env.push({ name: 'MESH_POLICIES', value: PATHS.policies });
  // The Secret's keys as cert-manager writes them; mutual TLS is then required, never a fallback to plaintext.
  if (settings.tlsSecret) {
    env.push(
      { name: 'MESH_TLS_CERT', value: `${PATHS.tls}/tls.crt` },
      { name: 'MESH_TLS_KEY', value: `${PATHS.tls}/tls.key` },
      { name: 'MESH_TLS_CA', value: `${PATHS.tls}/ca.crt` },
      { name: 'MESH_TLS_REQUIRED', value: 'true' },
    );
  }
  if (input.tokenSecret) env.push({ name: 'MESH_MCP_TOKEN_KEY', valueFrom: { secretKeyRef: { name: input.tokenSecret, key: 'tokenKey', optional: true } } });
  const volumeMounts: Record<string, unknown>[] = [
    { name: VOLUMES.data, mountPath: PATHS.data },
    { name: VOLUMES.tmp, mountPath: PATHS.tmp },
  ];
  if (settings.policy) volumeMounts.push({ name: VOLUMES.policies, mountPath: PATHS.policies, readOnly: true });
  if (settings.tlsSecret) volumeMounts.push({ name: VOLUMES.tls, mountPath: PATHS.tls, readOnly: true });
  const httpGet = (path: string) => ({ path, port: PORT_NAMES.admin, scheme: 'HTTP' });
  const container: Container = {
    name: SIDECAR_NAME,
    image: input.image,
    imagePullPolicy: 'IfNotPresent',
    // No config file: the MESH_* variables below are the whole config.
    args: ['sidecar'],
    ...(input.mode === 'native' ? { restartPolicy: 'Always' } : {}),
    env,
    ports: [
      { name: PORT_NAMES.outbound, containerPort: PORTS.outbound, protocol: 'TCP' },
      { name: PORT_NAMES.inbound, containerPort: PORTS.inbound, protocol: 'TCP' },
      { name: PORT_NAMES.admin, containerPort: PORTS.admin, protocol: 'TCP' },
    ],
    // For a native sidecar the startup probe is what holds back the next init containers and the app.
    startupProbe: { httpGet: httpGet('/readyz'), periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 120 },
    readinessProbe: { httpGet: httpGet('/readyz'), periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 },
    livenessProbe: { httpGet: httpGet('/healthz'), periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 },
    resources: resources(settings),
    volumeMounts,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: SIDECAR_UID,
      runAsGroup: SIDECAR_UID,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  return container;
}

function sidecarVolumes(settings: PodSettings): Record<string, unknown>[] {
  const volumes: Record<string, unknown>[] = [
    { name: VOLUMES.data, emptyDir: {} },
    { name: VOLUMES.tmp, emptyDir: {} },
  ];
  if (settings.policy) volumes.push({ name: VOLUMES.policies, configMap: { name: settings.policy } });
  if (settings.tlsSecret) volumes.push({ name: VOLUMES.tls, secret: { secretName: settings.tlsSecret } });
  return volumes;
}
