// An MCP service of several replicas in the mesh, all real processes on loopback port 0:
//
//   SDK clients ─HTTP─▶ client sidecar A (or B) ══MCP══▶ sidecar of mcp-i ─HTTP─▶ MCP server app mcp-i
//
// Each replica is an official-SDK server process (mcp-server-main.ts) with its own sidecar; the
// client sidecars find the replicas by static discovery, written in their config files, so a test
// can add a replica by rewriting those files (the sidecar re-reads discovery when its file changes).
// The client sidecars share one policy folder (policies written there reach both) and, when the
// sidecar config knows it, one MCP session token key, so either can route any session.
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MeshConfigSchema } from '../../sidecar/src/config/schema.ts';
import { PolicySpecSchema } from '../../sidecar/src/policy/schema.ts';
import { useStarted } from './fleet.ts';
import { MeshDispatchers } from './mcp-clients.ts';
import { startMcpServerApp, type McpAppStats, type McpServerApp } from './mcp-server-app.ts';
import { SidecarProcess, sidecarConfig, toYaml } from './sidecar-process.ts';

/**
 * Whether the sidecar config has `mcp.tokenKey` yet (the key that signs MCP session owner
 * tokens). Config keys unknown to the schema stop a sidecar, so it is only passed once it exists.
 */
export const TOKEN_KEY_SUPPORTED = hasPath(MeshConfigSchema, ['mcp', 'tokenKey']);
/** Whether policies have `mcp.affinity` yet (the switch that turns MCP session affinity off). */
export const AFFINITY_SWITCH_SUPPORTED = hasPath(PolicySpecSchema, ['mcp', 'affinity']);

function hasPath(schema: unknown, keys: string[]): boolean {
  let node = schema as { properties?: Record<string, unknown>; anyOf?: unknown[] } | undefined;
  for (const key of keys) {
    // An optional section may be wrapped (anyOf) by the schema builder; look inside.
    const props = node?.properties ?? (node?.anyOf?.find((s) => (s as { properties?: unknown }).properties) as { properties?: Record<string, unknown> } | undefined)?.properties;
    node = props?.[key] as typeof node;
    if (!node) return false;
  }
  return true;
}

/** Shared by both client sidecars (and the replicas' sidecars): at least 32 characters. */
export const TOKEN_KEY = 'mcp-affinity-test-key-0123456789abcdef';

export interface McpReplica {
  name: string;
  app: McpServerApp;
  sidecar: SidecarProcess;
  /** Set once the test killed it. */
  killed: boolean;
}

export interface McpFleetOptions {
  replicas: number;
  /** How many client sidecars (1 or 2). */
  callers?: number;
  /** Extra config for every sidecar (merged over the token key). */
  extra?: Record<string, unknown>;
}

export interface McpFleet {
  service: string;
  replicas: McpReplica[];
  /** The client sidecars; the first is "the" caller. */
  callers: SidecarProcess[];
  dispatchers: MeshDispatchers;
  /** The replica of that name. */
  replica(name: string): McpReplica;
  /** Write (or replace) a policy file for the callers and wait until every caller has reloaded it. */
  writePolicy(name: string, text: string): Promise<void>;
  /** Remove a policy file and wait until every caller has reloaded. */
  removePolicy(name: string): Promise<void>;
  /** Start one more replica, list it in every caller's discovery, wait for the callers' links to it. */
  addReplica(): Promise<McpReplica>;
  /** SIGKILL a replica's sidecar and app (the pod dies) and wait until every caller saw its link go down. */
  kill(replica: McpReplica): Promise<void>;
  /** /stats of every live replica app, by replica name. */
  stats(): Promise<Record<string, McpAppStats>>;
  close(): Promise<void>;
}

export async function startMcpFleet(options: McpFleetOptions): Promise<McpFleet> {
  const service = 'mcp';
  const extra = { ...(TOKEN_KEY_SUPPORTED ? { mcp: { tokenKey: TOKEN_KEY } } : {}), ...options.extra };
  const policyDir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-mcp-policies-'));
  const replicas: McpReplica[] = [];
  const callers: SidecarProcess[] = [];
  const callerConfigs: Record<string, unknown>[] = [];
  const dispatchers = new MeshDispatchers();
  let next = 0;

  const startReplica = async (): Promise<McpReplica> => {
    const name = `${service}-${next++}`;
    const app = await startMcpServerApp({ name });
    try {
      const sidecar = await SidecarProcess.start({ config: sidecarConfig({ service, appPort: app.port, extra }), name: `${name} sidecar` });
      const replica = { name, app, sidecar, killed: false };
      replicas.push(replica);
      return replica;
    } catch (err) {
      await app.stop();
      throw err;
    }
  };
  const endpoints = () => replicas.map((r) => r.sidecar.inboundAddress);
  const linkReady = (caller: SidecarProcess, replica: McpReplica, since = 0) =>
    caller.waitForLog((l) => l.msg === 'link ready' && l.peer === replica.sidecar.inboundAddress, { since });
  const policiesReloaded = async (change: () => void) => {
    const marks = callers.map((c) => c.mark());
    change();
    await Promise.all(callers.map((c, i) => c.waitForLog('policies reloaded', { since: marks[i] })));
  };

  const close = async () => {
    await dispatchers.close();
    await Promise.all([...callers, ...replicas.map((r) => r.sidecar)].map((s) => s.stop()));
    await Promise.all(replicas.map((r) => r.app.stop()));
    rmSync(policyDir, { recursive: true, force: true });
  };

  try {
    await Promise.all(Array.from({ length: options.replicas }, startReplica));
    replicas.sort((a, b) => a.name.localeCompare(b.name));
    for (let i = 0; i < (options.callers ?? 1); i++) {
      const config = sidecarConfig({ service: 'client', appPort: 1, peers: { [service]: endpoints() }, extra: { ...extra, policies: [policyDir] } });
      const caller = await SidecarProcess.start({ config, name: `client sidecar ${'AB'[i] ?? i}` });
      callers.push(caller);
      callerConfigs.push(config);
    }
    // Links open at start-up; wait for all of them so the first session can go to any replica.
    await Promise.all(callers.flatMap((c) => replicas.map((r) => linkReady(c, r))));
  } catch (err) {
    await close();
    throw err;
  }

  return {
    service,
    replicas,
    callers,
    dispatchers,
    replica: (name) => {
      const found = replicas.find((r) => r.name === name);
      if (!found) throw new Error(`no replica ${name} (have ${replicas.map((r) => r.name).join(', ')})`);
      return found;
    },
    writePolicy: (name, text) => policiesReloaded(() => {
      // A dot file is not a policy file, so the half-written copy is never read.
      const temp = path.join(policyDir, `.${name}.tmp`);
      writeFileSync(temp, text);
      renameSync(temp, path.join(policyDir, name));
    }),
    removePolicy: (name) => policiesReloaded(() => unlinkSync(path.join(policyDir, name))),
    addReplica: async () => {
      const replica = await startReplica();
      const marks = callers.map((c) => c.mark());
      callers.forEach((caller, i) => {
        const config = callerConfigs[i]!;
        config.discovery = { static: { [service]: endpoints() } };
        // Written beside the file and renamed over it, as editors and Kubernetes do; the sidecar
        // watches the folder and ignores names other than its file's.
        const temp = path.join(caller.dir, '.mesh.yaml.tmp');
        writeFileSync(temp, toYaml(config));
        renameSync(temp, caller.configFile);
      });
      await Promise.all(callers.map(async (c, i) => {
        await c.waitForLog('config reloaded', { since: marks[i] });
        await linkReady(c, replica, marks[i]);
      }));
      return replica;
    },
    kill: async (replica) => {
      const marks = callers.map((c) => c.mark());
      replica.killed = true;
      replica.sidecar.signal('SIGKILL');
      replica.app.signal('SIGKILL');
      await Promise.all([replica.sidecar.exited, replica.app.exited]);
      await Promise.all(callers.map((c, i) => c.waitForLog((l) => l.msg.startsWith('link down') && l.peer === replica.sidecar.inboundAddress, { since: marks[i] })));
    },
    stats: async () => Object.fromEntries(await Promise.all(replicas.filter((r) => !r.killed).map(async (r) => [r.name, await r.app.stats()] as const))),
    close,
  };
}

/** In a describe(): an MCP fleet started before its tests and closed after them. */
export function useMcpFleet(options: McpFleetOptions): () => McpFleet {
  return useStarted(() => startMcpFleet(options), 'the MCP fleet');
}
