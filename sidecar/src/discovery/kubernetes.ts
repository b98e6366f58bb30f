// discovery.mode kubernetes: endpoints from EndpointSlices (discovery.k8s.io/v1), watched through the
// API server with @kubernetes/client-node's ListWatch (list, then watch from the list's resourceVersion).
//
//   - A Service's endpoints: the endpoints of the slices labelled kubernetes.io/service-name=<svc>
//     whose conditions.ready is not false, at `<first address>:<inbound port>`. The inbound port is the
//     slice's port named `portName` (mcp-inbound) when the Service targets it, else `inboundPort`.
//     A Service with slices but no ready endpoint is known and empty (NO_HEALTHY_ENDPOINT); one with
//     no slice at all is unknown (UNKNOWN_SERVICE).
//   - Labels (for subsets): the labels of the pod named by the endpoint's targetRef, from a pods
//     list/watch in the same namespaces (`podLabels: false` turns it off: endpoints have no labels).
//     From the same pod, the endpoint's identity for secure naming: its service account, in the
//     pod's namespace ("sa.namespace"), the name its certificate carries (docs/security.md).
//   - Dropped watches: ListWatch resumes a cleanly closed watch from the last resourceVersion and
//     relists on 410 Gone. Any other error (connection reset, list failed, 5xx) ends that ListWatch;
//     a new one is started after a back-off (500 ms doubling to 30 s), and its first list replaces
//     everything known, so changes missed meanwhile (deletions too) converge. Until it succeeds the
//     last known endpoints stay in use.
//   - ready() resolves after the first full list of every watched collection.
import {
  CoreV1Api, DiscoveryV1Api, KubeConfig, ListWatch, Watch,
  type KubernetesListObject, type KubernetesObject, type V1EndpointSlice, type V1Pod,
} from '@kubernetes/client-node';
import { formatHostPort } from '../config/address.ts';
import { ConfigError, type KubernetesDiscoveryConfig } from '../config/load.ts';
import { backoffCeiling } from '../resilience/backoff.ts';
import type { Endpoint } from './resolver.ts';
import { silentLogger, TableResolver, type DiscoveryLogger } from './table.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface KubernetesResolverOptions extends KubernetesDiscoveryConfig {
  logger?: DiscoveryLogger;
  /** Overrides kubeconfig/server/in-cluster (tests). */
  kubeConfig?: KubeConfig;
  /** Back-off before a failed list/watch is started again (doubling up to retryMaxMs). */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

/** In-cluster by default; a kubeconfig file or a bare server URL (no credentials) when configured. */
export function kubeConfigFor(options: Pick<KubernetesDiscoveryConfig, 'kubeconfig' | 'server'>, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig();
  if (options.server !== undefined) {
    // client-node refuses plain http unless TLS checks are off; they are meaningless there anyway.
    kc.loadFromClusterAndUser({ name: 'mesh', server: options.server, skipTLSVerify: options.server.startsWith('http://') }, { name: 'mesh' });
  } else if (options.kubeconfig !== undefined) {
    try {
      kc.loadFromFile(options.kubeconfig);
    } catch (err) {
      throw new ConfigError(`config error: discovery.kubernetes.kubeconfig: cannot load ${options.kubeconfig}: ${(err as Error).message}`);
    }
  } else {
    if (!env.KUBERNETES_SERVICE_HOST) {
      throw new ConfigError('config error: discovery.mode is kubernetes but this is not a pod (KUBERNETES_SERVICE_HOST is not set); set discovery.kubernetes.kubeconfig or discovery.kubernetes.server to run outside a cluster');
    }
    kc.loadFromCluster();
  }
  return kc;
}

interface SliceView {
  service: string;
  namespace: string;
  addressType: string;
  port: number | undefined;
  endpoints: { address: string; ready: boolean; pod: string | undefined }[];
}

/**
 * A Watch that can be stopped for good: ListWatch.stop() cannot abort a watch request that is still
 * connecting (it only knows the request once connected), so a watch that connects after stop() is
 * aborted here.
 */
class StoppableWatch extends Watch {
  #stopped = false;
  readonly #open = new Set<AbortController>();

  override async watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    let ended = false; // done() may come before super.watch() returns (a failed connect)
    let controller: AbortController | undefined;
    controller = await super.watch(path, queryParams, callback, (err: unknown) => {
      ended = true;
      if (controller) this.#open.delete(controller);
      done(err);
    });
    if (this.#stopped) controller.abort();
    else if (!ended) this.#open.add(controller);
    return controller;
  }

  stop(): void {
    this.#stopped = true;
    for (const controller of this.#open) controller.abort();
    this.#open.clear();
  }
}

interface ReflectorOptions<T extends KubernetesObject, V> {
  what: string; path: string; labelSelector: string | undefined; kubeConfig: KubeConfig; logger: DiscoveryLogger;
  list: () => Promise<KubernetesListObject<T>>; project: (obj: T) => V; same: (a: V, b: V) => boolean;
  changed: () => void; retryBaseMs: number; retryMaxMs: number;
}

/** One list/watch of one collection, restarted with a fresh list after an error. */
class Reflector<T extends KubernetesObject, V> {
  store = new Map<string, V>();
  listed = false;
  readonly #o: ReflectorOptions<T, V>;
  #current: { lw: ListWatch<T>; watch: StoppableWatch } | undefined;
  #generation = 0;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ReflectorOptions<T, V>) {
    this.#o = options;
  }

  start(): void {
    if (this.#closed) return;
    const generation = ++this.#generation;
    const live = () => generation === this.#generation && !this.#closed;
    const o = this.#o;
    // The list result replaces the store here, before ListWatch replays it as add/update/delete
    // callbacks (which then change nothing): an empty or shrunken list is seen too.
    const list = async () => {
      const result = await o.list();
      if (live()) {
        this.store = new Map(result.items.map((item) => [keyOf(item), o.project(item)]));
        const first = !this.listed;
        this.listed = true;
        this.#failures = 0;
        o.logger.info({ what: o.what, items: result.items.length, resourceVersion: result.metadata?.resourceVersion }, first ? `kubernetes: listed ${o.what}` : `kubernetes: relisted ${o.what}`);
        o.changed();
      }
      return result;
    };
    const watch = new StoppableWatch(o.kubeConfig);
    const lw = new ListWatch<T>(o.path, watch, list, false, o.labelSelector);
    const put = (obj: T) => {
      if (!live()) return;
      const key = keyOf(obj);
      const next = o.project(obj);
      const before = this.store.get(key);
      this.store.set(key, next);
      if (before === undefined || !o.same(before, next)) o.changed();
    };
    lw.on('add', put);
    lw.on('update', put);
    lw.on('delete', (obj: T) => {
      if (live() && this.store.delete(keyOf(obj))) o.changed();
    });
    lw.on('connect', () => { if (live()) o.logger.debug({ what: o.what }, `kubernetes: watching ${o.what}`); });
    const current = { lw, watch };
    lw.on('error', (err: unknown) => this.#failed(generation, current, err));
    this.#current = current;
    lw.start().catch((err: unknown) => this.#failed(generation, current, err));
  }

  #failed(generation: number, current: { lw: ListWatch<T>; watch: StoppableWatch }, err: unknown): void {
    if (generation !== this.#generation || this.#closed || this.#timer) return;
    void current.lw.stop();
    current.watch.stop();
    this.#failures++;
    const delay = backoffCeiling({ baseMs: this.#o.retryBaseMs, maxMs: this.#o.retryMaxMs }, this.#failures);
    this.#o.logger.warn({ code: 'KUBERNETES_WATCH_FAILED', what: this.#o.what, err: describe(err), retryInMs: delay },
      `kubernetes: list/watch of ${this.#o.what} failed; keeping the last known endpoints and relisting in ${delay} ms`);
    this.#timer = setTimeout(() => { this.#timer = undefined; this.start(); }, delay);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    void this.#current?.lw.stop();
    this.#current?.watch.stop();
  }
}

export class KubernetesResolver extends TableResolver {
  readonly #options: KubernetesResolverOptions;
  readonly #logger: DiscoveryLogger;
  readonly #slices: Reflector<V1EndpointSlice, SliceView>[] = [];
  readonly #pods: Reflector<V1Pod, PodView>[] = [];
  readonly #ready: Promise<void>;
  #markReady!: () => void;
  #isReady = false;
  #scheduled = false;

  constructor(options: KubernetesResolverOptions) {
    super();
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#ready = new Promise((resolve) => { this.#markReady = resolve; });
    const kc = options.kubeConfig ?? kubeConfigFor(options);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const common = {
      kubeConfig: kc, logger: this.#logger, changed: () => this.#schedule(),
      retryBaseMs: options.retryBaseMs ?? 500, retryMaxMs: options.retryMaxMs ?? 30_000,
    };
    // Empty list of namespaces: one cluster-wide list/watch ('' stands for all).
    const namespaces = options.namespaces.length > 0 ? options.namespaces : [''];
    for (const namespace of namespaces) {
      const where = namespace ? `namespace ${namespace}` : 'all namespaces';
      this.#slices.push(new Reflector<V1EndpointSlice, SliceView>({
        ...common,
        what: `endpointslices in ${where}`,
        path: namespace ? `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices` : '/apis/discovery.k8s.io/v1/endpointslices',
        labelSelector: SERVICE_NAME_LABEL,
        list: () => namespace
          ? discovery.listNamespacedEndpointSlice({ namespace, labelSelector: SERVICE_NAME_LABEL })
          : discovery.listEndpointSliceForAllNamespaces({ labelSelector: SERVICE_NAME_LABEL }),
        project: (slice: V1EndpointSlice) => this.#viewOf(slice),
        same: (a: SliceView, b: SliceView) => JSON.stringify(a) === JSON.stringify(b),
      }));
      if (options.podLabels) {
        this.#pods.push(new Reflector<V1Pod, PodView>({
          ...common,
          what: `pods in ${where}`,
          path: namespace ? `/api/v1/namespaces/${namespace}/pods` : '/api/v1/pods',
          labelSelector: undefined,
          list: () => namespace ? core.listNamespacedPod({ namespace }) : core.listPodForAllNamespaces(),
          project: podView,
          same: (a: PodView, b: PodView) => a.identity === b.identity && JSON.stringify(Object.entries(a.labels).sort()) === JSON.stringify(Object.entries(b.labels).sort()),
        }));
      }
    }
    for (const reflector of [...this.#slices, ...this.#pods]) reflector.start();
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  close(): void {
    for (const reflector of [...this.#slices, ...this.#pods]) reflector.close();
    this.table.clearListeners();
  }

  #viewOf(slice: V1EndpointSlice): SliceView {
    const namespace = slice.metadata?.namespace ?? '';
    const named = slice.ports?.find((p) => p.name === this.#options.portName)?.port;
    return {
      service: slice.metadata?.labels?.[SERVICE_NAME_LABEL] ?? '',
      namespace,
      addressType: slice.addressType,
      port: named ?? undefined,
      endpoints: (slice.endpoints ?? []).flatMap((e) => {
        const address = e.addresses?.[0];
        if (!address) return [];
        const pod = e.targetRef?.kind === 'Pod' && e.targetRef.name ? `${e.targetRef.namespace ?? namespace}/${e.targetRef.name}` : undefined;
        return [{ address, ready: e.conditions?.ready !== false, pod }];
      }),
    };
  }

  // Many events arrive together (a list replays every object): rebuild once per turn.
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#rebuild();
    });
  }

  #rebuild(): void {
    // Nothing is published before every collection was listed once (no endpoints without their labels).
    if (![...this.#slices, ...this.#pods].every((r) => r.listed)) return;
    const pods = new Map<string, PodView>();
    for (const reflector of this.#pods) for (const [key, pod] of reflector.store) pods.set(key, pod);
    const slices = this.#slices.flatMap((r) => [...r.store.values()])
      .filter((s) => s.service !== '' && s.addressType !== 'FQDN')
      // IPv4 first: a dual-stack pod listed in both an IPv4 and an IPv6 slice is reached over IPv4.
      .sort((a, b) => (a.addressType === b.addressType ? 0 : a.addressType === 'IPv4' ? -1 : b.addressType === 'IPv4' ? 1 : 0));
    const next = new Map<string, Endpoint[]>();
    const seen = new Map<string, Set<string>>();
    for (const slice of slices) {
      const key = `${slice.service}.${slice.namespace}`;
      const list = next.get(key) ?? [];
      next.set(key, list);
      const taken = seen.get(key) ?? new Set<string>();
      seen.set(key, taken);
      for (const e of slice.endpoints) {
        if (!e.ready) continue;
        const address = formatHostPort({ host: e.address, port: slice.port ?? this.#options.inboundPort });
        const identity = e.pod ?? address;
        if (taken.has(identity) || taken.has(address)) continue;
        taken.add(identity).add(address);
        const pod = e.pod ? pods.get(e.pod) : undefined;
        list.push({ address, labels: pod?.labels ?? {}, weight: 1, ...(pod ? { identities: [pod.identity] } : {}) });
      }
    }
    const changed = this.table.replace(next);
    if (changed) this.#logger.debug({ services: next.size }, 'kubernetes: endpoints changed');
    if (!this.#isReady) {
      this.#isReady = true;
      this.#logger.info({ services: [...next.keys()] }, 'kubernetes: discovery ready');
      this.#markReady();
    }
  }
}

/** What endpoints take from their pod: labels (subsets) and the identity it runs as (secure naming). */
interface PodView {
  labels: Readonly<Record<string, string>>;
  /** "serviceAccount.namespace"; a pod without serviceAccountName runs as `default`. */
  identity: string;
}

function podView(pod: V1Pod): PodView {
  return { labels: { ...pod.metadata?.labels }, identity: `${pod.spec?.serviceAccountName || 'default'}.${pod.metadata?.namespace ?? ''}` };
}

function keyOf(obj: KubernetesObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

function describe(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { statusCode?: number; code?: number | string; message?: string; name?: string };
    return [e.name, e.statusCode ?? e.code, e.message].filter((x) => x !== undefined && x !== '').join(' ');
  }
  return String(err);
}
