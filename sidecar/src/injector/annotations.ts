// The injector's vocabulary: annotation keys, the values they accept, and their parsing. Pure: no
// Kubernetes client, no I/O. docs/injector.md has the table users read; keep the two in step.

/** Pod annotations read (and one written) by the injector. */
export const ANNOTATIONS = {
  /** "true": inject (when the webhook selected the pod); "false": never inject, whatever the namespace says. */
  inject: 'mcp-mesh.io/inject',
  /** Written by the injector ("injected"): a pod carrying it is left alone. */
  status: 'mcp-mesh.io/status',
  service: 'mcp-mesh.io/service',
  appPort: 'mcp-mesh.io/app-port',
  policy: 'mcp-mesh.io/policy',
  proxyEnv: 'mcp-mesh.io/proxy-env',
  sidecarMode: 'mcp-mesh.io/sidecar-mode',
  tlsSecret: 'mcp-mesh.io/tls-secret',
  cpuRequest: 'mcp-mesh.io/proxy-cpu-request',
  memoryRequest: 'mcp-mesh.io/proxy-memory-request',
  cpuLimit: 'mcp-mesh.io/proxy-cpu-limit',
  memoryLimit: 'mcp-mesh.io/proxy-memory-limit',
} as const;

/** The value of `mcp-mesh.io/status` on an injected pod. */
export const STATUS_INJECTED = 'injected';

/** `kubectl.kubernetes.io/default-container`: names the app's main container (its port is the default app port). */
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';

export type SidecarMode = 'native' | 'container';
export const SIDECAR_MODES: readonly SidecarMode[] = ['native', 'container'];

/** What a pod's annotations ask for; absent means "use the default". Valid by construction. */
export interface PodSettings {
  /** undefined: not annotated (the webhook's selectors decided the pod is in scope). */
  inject: boolean | undefined;
  service: string | undefined;
  appPort: number | undefined;
  policy: string | undefined;
  proxyEnv: boolean;
  mode: SidecarMode | undefined;
  tlsSecret: string | undefined;
  resources: {
    cpuRequest: string | undefined;
    memoryRequest: string | undefined;
    cpuLimit: string | undefined;
    memoryLimit: string | undefined;
  };
}

export type ParseResult = { ok: true; settings: PodSettings } | { ok: false; problems: string[] };

/** RFC 1123 label: what a Kubernetes Service name (and so a mesh service name) must be. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1123 subdomain: ConfigMap and Secret names. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A non-negative Kubernetes quantity (resource.Quantity): 100m, 0.5, 64Mi, 1G, 1e3. */
const QUANTITY = /^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/;

export function isServiceName(value: string): boolean {
  return value.length <= 63 && DNS_LABEL.test(value);
}

export function isObjectName(value: string): boolean {
  return value.length <= 253 && DNS_SUBDOMAIN.test(value);
}

const SUFFIX: Readonly<Record<string, number>> = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** The value of a quantity as a number (for comparing a request with a limit), or undefined if it is not one. */
export function quantityValue(value: string): number | undefined {
  const match = QUANTITY.exec(value);
  if (!match) return undefined;
  const number = Number(match[1]);
  const suffix = match[3] ?? '';
  if (/^[eE]/.test(suffix)) return number * 10 ** Number(suffix.slice(1));
  const factor = SUFFIX[suffix];
  return factor === undefined ? undefined : number * factor;
}

/**
 * Reads the injector's annotations. Every bad value is reported, each naming its annotation, the
 * value, and what it must be (the webhook refuses the pod with these lines).
 */
export function parseAnnotations(annotations: Readonly<Record<string, string>> | undefined): ParseResult {
  const a = annotations ?? {};
  const problems: string[] = [];
  const bad = (key: string, must: string) => { problems.push(`${key}: ${JSON.stringify(a[key])} ${must}`); };

  const bool = (key: string, fallback: boolean | undefined): boolean | undefined => {
    const raw = a[key];
    if (raw === undefined) return fallback;
    if (raw === 'true') return true;
    if (raw === 'false') return false;
    bad(key, 'must be "true" or "false"');
    return fallback;
  };
  const name = (key: string, valid: (v: string) => boolean, must: string): string | undefined => {
    const raw = a[key];
    if (raw === undefined) return undefined;
    if (!valid(raw)) { bad(key, must); return undefined; }
    return raw;
  };
  const quantity = (key: string, kind: 'cpu' | 'memory'): string | undefined => {
    const raw = a[key];
    if (raw === undefined) return undefined;
    if (quantityValue(raw) === undefined) {
      bad(key, `must be a Kubernetes quantity (${kind === 'cpu' ? 'e.g. 100m or 0.5' : 'e.g. 64Mi or 1Gi'})`);
      return undefined;
    }
    return raw;
  };

  const inject = bool(ANNOTATIONS.inject, undefined);
  const service = name(ANNOTATIONS.service, isServiceName, 'must be a service name: at most 63 lower-case letters, digits and "-", starting and ending with a letter or digit');
  let appPort: number | undefined;
  const rawPort = a[ANNOTATIONS.appPort];
  if (rawPort !== undefined) {
    if (/^[0-9]{1,5}$/.test(rawPort) && Number(rawPort) >= 1 && Number(rawPort) <= 65535) appPort = Number(rawPort);
    else bad(ANNOTATIONS.appPort, 'must be a port number 1–65535');
  }
  const policy = name(ANNOTATIONS.policy, isObjectName, 'must be the name of a ConfigMap in the pod\'s namespace');
  const proxyEnv = bool(ANNOTATIONS.proxyEnv, true) ?? true;
  let mode: SidecarMode | undefined;
  const rawMode = a[ANNOTATIONS.sidecarMode];
  if (rawMode !== undefined) {
    if ((SIDECAR_MODES as readonly string[]).includes(rawMode)) mode = rawMode as SidecarMode;
    else bad(ANNOTATIONS.sidecarMode, 'must be "native" or "container"');
  }
  const tlsSecret = name(ANNOTATIONS.tlsSecret, isObjectName, 'must be the name of a Secret in the pod\'s namespace');
  const resources = {
    cpuRequest: quantity(ANNOTATIONS.cpuRequest, 'cpu'),
    memoryRequest: quantity(ANNOTATIONS.memoryRequest, 'memory'),
    cpuLimit: quantity(ANNOTATIONS.cpuLimit, 'cpu'),
    memoryLimit: quantity(ANNOTATIONS.memoryLimit, 'memory'),
  };
  // Kubernetes refuses a request above its limit; say so here, naming the annotations.
  const pairs = [
    [ANNOTATIONS.cpuRequest, resources.cpuRequest, ANNOTATIONS.cpuLimit, resources.cpuLimit],
    [ANNOTATIONS.memoryRequest, resources.memoryRequest, ANNOTATIONS.memoryLimit, resources.memoryLimit],
  ] as const;
  for (const [requestKey, request, limitKey, limit] of pairs) {
    if (request !== undefined && limit !== undefined && quantityValue(request)! > quantityValue(limit)!) {
      problems.push(`${requestKey}: ${JSON.stringify(request)} must not be more than ${limitKey} (${JSON.stringify(limit)})`);
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, settings: { inject, service, appPort, policy, proxyEnv, mode, tlsSecret, resources } };
}
