// A test double of the Kubernetes API server: just the list/watch protocol of EndpointSlices
// (discovery.k8s.io/v1) and pods (v1), over plain HTTP on 127.0.0.1 port 0, with no auth. Objects are
// real (built and validated with kubernetes-models). What a test can do to it:
//
//   - apply / remove objects: every change gets the next resourceVersion and is sent to open
//     watches as ADDED / MODIFIED / DELETED, newline-delimited JSON as the API server sends it;
//   - holdLists(): lists wait until released (a sidecar not ready until its first list);
//   - failLists(n): the next n lists answer 500;
//   - dropWatches('end' | 'reset'): close every open watch cleanly, or cut its connection;
//   - compact(): forget the event history, so a watch resumed from an older resourceVersion gets
//     410 Gone (as an ERROR event in a 200 stream, like the real server, or as an HTTP 410);
//   - counters of lists and watches, and waiting for the n-th of either.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { EndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice';
import { Pod } from 'kubernetes-models/v1/Pod';

export type Kind = 'endpointslices' | 'pods';

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion?: string; uid?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

interface WatchEvent {
  rv: number;
  kind: Kind;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
}

interface OpenWatch {
  kind: Kind;
  namespace: string | undefined;
  selector: string | undefined;
  res: ServerResponse;
  socket: Socket;
}

export interface SliceEndpoint {
  address: string;
  /** conditions.ready; undefined leaves the condition out (which means ready). */
  ready?: boolean | undefined;
  /** The pod behind it (targetRef). */
  pod?: string;
}

export interface SliceSpec {
  name: string;
  namespace?: string;
  service: string;
  addressType?: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: SliceEndpoint[];
  /** Ports of the slice; the injector's container port is named mcp-inbound. */
  ports?: { name: string; port: number }[];
}

/** A valid discovery.k8s.io/v1 EndpointSlice as the EndpointSlice controller writes it. */
export function endpointSlice(spec: SliceSpec): KubeObject {
  const namespace = spec.namespace ?? 'default';
  const slice = new EndpointSlice({
    metadata: { name: spec.name, namespace, labels: { 'kubernetes.io/service-name': spec.service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: spec.addressType ?? 'IPv4',
    endpoints: spec.endpoints.map((e) => ({
      addresses: [e.address],
      conditions: e.ready === undefined ? {} : { ready: e.ready, serving: e.ready, terminating: false },
      ...(e.pod ? { targetRef: { kind: 'Pod', name: e.pod, namespace } } : {}),
    })),
    ports: (spec.ports ?? [{ name: 'http', port: 8080 }]).map((p) => ({ name: p.name, port: p.port, protocol: 'TCP' })),
  });
  slice.validate();
  return slice.toJSON() as unknown as KubeObject;
}

export function pod(spec: { name: string; namespace?: string; labels: Record<string, string>; ip?: string; serviceAccount?: string }): KubeObject {
  const object = new Pod({
    metadata: { name: spec.name, namespace: spec.namespace ?? 'default', labels: spec.labels },
    spec: { containers: [{ name: 'app', image: 'app:1' }], ...(spec.serviceAccount ? { serviceAccountName: spec.serviceAccount } : {}) },
    status: { phase: 'Running', ...(spec.ip ? { podIP: spec.ip } : {}) },
  });
  object.validate();
  return object.toJSON() as unknown as KubeObject;
}

const LIST_KIND: Record<Kind, { apiVersion: string; kind: string }> = {
  endpointslices: { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSliceList' },
  pods: { apiVersion: 'v1', kind: 'PodList' },
};

export class KubeApiDouble {
  readonly #server: Server;
  readonly #objects: Record<Kind, Map<string, KubeObject>> = { endpointslices: new Map(), pods: new Map() };
  #events: WatchEvent[] = [];
  #rv = 100;
  /** Watches from a resourceVersion older than this get 410 Gone. */
  #compactedRv = 0;
  readonly #watches = new Set<OpenWatch>();
  #held: Promise<void> | undefined;
  #release: (() => void) | undefined;
  #failLists = 0;
  /** How a too-old resourceVersion is refused: an ERROR event in a 200 stream (as the API server does) or an HTTP 410. */
  goneAs: 'event' | 'status' = 'event';
  readonly counts = { lists: 0, watches: 0, gone: 0, listsByKind: { endpointslices: 0, pods: 0 } as Record<Kind, number> };
  /** Query strings of the requests (for asserting selectors). */
  readonly requests: string[] = [];
  #waiters: { check: () => boolean; resolve: () => void }[] = [];

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<KubeApiDouble> {
    const server = createServer();
    const double = new KubeApiDouble(server);
    server.on('request', (req, res) => { void double.#handle(req, res); });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return double;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  /** Create or replace an object (ADDED or MODIFIED). */
  apply(object: KubeObject): void {
    const kind: Kind = object.kind === 'Pod' ? 'pods' : 'endpointslices';
    const key = `${object.metadata.namespace}/${object.metadata.name}`;
    const existed = this.#objects[kind].get(key);
    const rv = ++this.#rv;
    const stored: KubeObject = structuredClone({ ...object, metadata: { ...object.metadata, resourceVersion: String(rv), uid: existed?.metadata.uid ?? `uid-${rv}` } });
    this.#objects[kind].set(key, stored);
    this.#emit({ rv, kind, type: existed ? 'MODIFIED' : 'ADDED', object: stored });
  }

  remove(kind: Kind, namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const existed = this.#objects[kind].get(key);
    if (!existed) throw new Error(`no ${kind} ${key}`);
    this.#objects[kind].delete(key);
    const rv = ++this.#rv;
    this.#emit({ rv, kind, type: 'DELETED', object: { ...existed, metadata: { ...existed.metadata, resourceVersion: String(rv) } } });
  }

  /** Lists wait until the returned function is called. */
  holdLists(): () => void {
    this.#held = new Promise((resolve) => { this.#release = resolve; });
    return () => { this.#held = undefined; this.#release?.(); };
  }

  failLists(count: number): void {
    this.#failLists = count;
  }

  /** Forget the event history: resuming a watch from before now gets 410 Gone. */
  compact(): void {
    this.#compactedRv = this.#rv;
    this.#events = [];
  }

  /** 'end': finish every open watch response cleanly; 'reset': destroy their connections. */
  dropWatches(how: 'end' | 'reset'): number {
    const open = [...this.#watches];
    this.#watches.clear();
    for (const w of open) {
      if (how === 'end') w.res.end();
      else w.socket.destroy();
    }
    return open.length;
  }

  openWatches(kind?: Kind): number {
    return [...this.#watches].filter((w) => kind === undefined || w.kind === kind).length;
  }

  /** Resolves once `check` holds (checked after every request and change). */
  until(check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ check, resolve }));
  }

  async close(): Promise<void> {
    this.#release?.();
    this.dropWatches('reset');
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #wake(): void {
    const done = this.#waiters.filter((w) => w.check());
    this.#waiters = this.#waiters.filter((w) => !done.includes(w));
    for (const w of done) w.resolve();
  }

  #emit(event: WatchEvent): void {
    this.#events.push(event);
    for (const w of this.#watches) if (matches(w, event.kind, event.object)) write(w.res, event.type, event.object);
    this.#wake();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://double');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const route = /^\/(?:apis\/discovery\.k8s\.io\/v1|api\/v1)(?:\/namespaces\/([a-z0-9-]+))?\/(endpointslices|pods)$/.exec(url.pathname);
    const group = url.pathname.startsWith('/apis/discovery.k8s.io/') ? 'endpointslices' : 'pods';
    if (req.method !== 'GET' || !route || route[2] !== group) {
      status(res, 404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`);
      return;
    }
    const namespace = route[1];
    const kind = route[2] as Kind;
    const selector = url.searchParams.get('labelSelector') ?? undefined;
    if (url.searchParams.get('watch') === 'true') {
      this.#watch(req, res, { kind, namespace, selector }, Number(url.searchParams.get('resourceVersion') || '0'));
      return;
    }
    this.counts.lists++;
    this.counts.listsByKind[kind]++;
    this.#wake();
    if (this.#held) await this.#held;
    if (this.#failLists > 0) {
      this.#failLists--;
      status(res, 500, 'InternalError', 'the double was told to fail this list');
      return;
    }
    const items = [...this.#objects[kind].values()].filter((o) => matches({ kind, namespace, selector }, kind, o));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...LIST_KIND[kind], metadata: { resourceVersion: String(this.#rv) }, items }));
  }

  #watch(req: IncomingMessage, res: ServerResponse, filter: Omit<OpenWatch, 'res' | 'socket'>, from: number): void {
    this.counts.watches++;
    if (from < this.#compactedRv) {
      this.counts.gone++;
      this.#wake();
      const message = `too old resource version: ${from} (${this.#compactedRv})`;
      if (this.goneAs === 'status') {
        status(res, 410, 'Expired', message);
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        write(res, 'ERROR', { apiVersion: 'v1', kind: 'Status', metadata: {}, status: 'Failure', message, reason: 'Expired', code: 410 });
        res.end();
      }
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    // Events after the resourceVersion asked for, then live ones.
    for (const event of this.#events) if (event.rv > from && matches(filter, event.kind, event.object)) write(res, event.type, event.object);
    const open: OpenWatch = { ...filter, res, socket: req.socket };
    this.#watches.add(open);
    const gone = () => { this.#watches.delete(open); this.#wake(); };
    res.on('close', gone);
    this.#wake();
  }
}

function matches(filter: Pick<OpenWatch, 'kind' | 'namespace' | 'selector'>, kind: Kind, object: KubeObject): boolean {
  if (filter.kind !== kind) return false;
  if (filter.namespace !== undefined && object.metadata.namespace !== filter.namespace) return false;
  if (!filter.selector) return true;
  // Only what the resolver uses: `key` (exists), `key=value`, `key!=value`, comma-separated.
  const labels = object.metadata.labels ?? {};
  return filter.selector.split(',').every((term) => {
    const [key = '', value] = term.split(/!?=/);
    if (value === undefined) return key in labels;
    return term.includes('!=') ? labels[key] !== value : labels[key] === value;
  });
}

function write(res: ServerResponse, type: string, object: unknown): void {
  res.write(`${JSON.stringify({ type, object })}\n`);
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Status', metadata: {}, status: 'Failure', message, reason, code }));
}
