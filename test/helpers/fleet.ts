// A service with several replicas for the resilience and balancing tests, all real processes on
// loopback port 0:
//
//   test (as an app) ─HTTP─▶ caller sidecar ══MCP══▶ replica sidecar i ─HTTP─▶ replica app i
//
// The caller's policies are files in a temp folder listed in its `policies:`, so tests can edit them
// while it runs (hot reload). Apps count what reaches them: retries and balancing are measured there.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { Agent, request, type Dispatcher } from 'undici';
import { startTestApp, type TestApp } from './apps.ts';
import { SidecarProcess, sidecarConfig } from './sidecar-process.ts';

export interface ReplicaSpec {
  /** Discovery labels of this replica's endpoint (subsets select on them). */
  labels?: Record<string, string>;
}

export interface FleetOptions {
  service: string;
  /** How many replicas, or one spec per replica. */
  replicas: number | ReplicaSpec[];
  /** Policy files (file name → text) for the caller; leave out for a caller with no `policies:` at all. */
  policies?: Record<string, string>;
  /** Extra config keys for the caller (e.g. link, timeouts). */
  callerExtra?: Record<string, unknown>;
  /** The Agent's connections to the caller's outbound listener (the client's concurrency). */
  connections?: number;
}

export interface Replica {
  app: TestApp;
  sidecar: SidecarProcess;
}

export interface Fleet {
  service: string;
  replicas: Replica[];
  caller: SidecarProcess;
  /** The caller's policy folder, if it has one. */
  policyDir: string | undefined;
  /** Keep-alive client for calls to the caller. */
  agent: Agent;
  /** Absolute path of a file in the policy folder. */
  policyFile(name: string): string;
  /** Write (or replace) a policy file, atomically (a new file renamed over the old, as editors do); a running caller reloads it. */
  writePolicy(name: string, text: string): void;
  /** Requests each replica's app saw under a first path segment (default `/work`), in replica order. */
  hits(prefix?: string): number[];
  /** GET (or other) `path` of the service through the caller. */
  call(path: string, options?: CallOptions): Promise<CallOutcome>;
  close(): Promise<void>;
}

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const specs: ReplicaSpec[] = typeof options.replicas === 'number' ? Array.from({ length: options.replicas }, () => ({})) : options.replicas;
  const policyDir = options.policies ? mkdtempSync(path.join(tmpdir(), 'mcp-mesh-policies-')) : undefined;
  for (const [name, text] of Object.entries(options.policies ?? {})) writeFileSync(path.join(policyDir!, name), text);
  const apps: TestApp[] = [];
  const sidecars: SidecarProcess[] = [];
  const agent = new Agent({ connections: options.connections ?? 16 });
  const cleanUp = async () => {
    await agent.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(apps.map((a) => a.close()));
    if (policyDir) rmSync(policyDir, { recursive: true, force: true });
  };
  try {
    apps.push(...await Promise.all(specs.map((_, i) => startTestApp({ name: `${options.service}-${i}` }))));
    const replicaSidecars = await Promise.all(apps.map((app, i) => SidecarProcess.start({
      config: sidecarConfig({ service: options.service, appPort: app.port }), name: `${options.service}#${i}`,
    })));
    sidecars.push(...replicaSidecars);
    const endpoints = replicaSidecars.map((s, i) => (specs[i]!.labels ? { address: s.inboundAddress, labels: specs[i]!.labels } : s.inboundAddress));
    const caller = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'client', appPort: 1, peers: { [options.service]: endpoints },
        extra: { ...(policyDir ? { policies: [policyDir] } : {}), ...options.callerExtra },
      }),
      name: 'caller',
    });
    sidecars.push(caller);
    // Links open at start-up; wait for all of them so balancing starts from every replica.
    await Promise.all(replicaSidecars.map((s) => caller.waitForLog((l) => l.msg === 'link ready' && l.peer === s.inboundAddress)));
    return {
      service: options.service,
      replicas: apps.map((app, i) => ({ app, sidecar: replicaSidecars[i]! })),
      caller,
      policyDir,
      agent,
      policyFile: (name) => path.join(policyDir!, name),
      writePolicy: (name, text) => {
        // A dot file is not a policy file, so the half-written copy is never read.
        const temp = path.join(policyDir!, `.${name}.tmp`);
        writeFileSync(temp, text);
        renameSync(temp, path.join(policyDir!, name));
      },
      hits: (prefix = '/work') => apps.map((a) => a.count(prefix)),
      call: (p, callOptions = {}) => callService(caller, options.service, p, { dispatcher: agent, ...callOptions }),
      close: cleanUp,
    };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

export interface CallOptions {
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  body?: string;
  dispatcher?: Dispatcher;
}

/** What the client saw of one call. */
export interface CallOutcome {
  status: number;
  /** `mcp-mesh-error`: set only for errors the mesh made. */
  code: string | undefined;
  /** `mcp-mesh-attempts`, or 0 when absent. */
  attempts: number;
  /** `x-replica` of the app that answered. */
  replica: string | undefined;
  retryAfter: string | undefined;
  body: string;
  /** From sending the request to the end of the response body. */
  ms: number;
}

/** One call to `service` through `caller`'s outbound listener, the way an app makes it (by Host). */
export async function callService(caller: SidecarProcess, service: string, p: string, options: CallOptions = {}): Promise<CallOutcome> {
  const started = performance.now();
  const response = await request(`${caller.outboundUrl}${p}`, {
    method: options.method ?? 'GET',
    headers: { host: service, ...options.headers },
    body: options.body,
    dispatcher: options.dispatcher,
  });
  const body = await response.body.text();
  const header = (name: string) => response.headers[name] as string | undefined;
  return {
    status: response.statusCode,
    code: header('mcp-mesh-error'),
    attempts: Number(header('mcp-mesh-attempts') ?? 0),
    replica: header('x-replica'),
    retryAfter: header('retry-after'),
    body,
    ms: performance.now() - started,
  };
}

/** GET a JSON document from a sidecar's admin listener. */
export async function adminJson<T = Record<string, unknown>>(sidecar: SidecarProcess, p: string): Promise<T> {
  const response = await request(`http://127.0.0.1:${sidecar.ports.admin}${p}`);
  if (response.statusCode !== 200) throw new Error(`admin ${p}: ${response.statusCode} ${await response.body.text()}`);
  return await response.body.json() as T;
}

/** In a describe(): a fleet started before its tests and closed after them; call the result to get it. */
export function useFleet(options: FleetOptions): () => Fleet {
  return useStarted(() => startFleet(options), 'the fleet');
}

/** In a describe(): whatever `start` makes, made before the tests and closed after them; call the result to get it. */
export function useStarted<T extends { close(): Promise<void> }>(start: () => Promise<T>, what: string): () => T {
  let started: T | undefined;
  before(async () => { started = await start(); });
  after(() => started?.close());
  return () => {
    if (!started) throw new Error(`${what} has not started`);
    return started;
  };
}
