// The usual topology of the integration tests, all real processes on loopback port 0:
//
//   test (as app "orders") ─HTTP─▶ sidecar orders ══MCP/gRPC══▶ sidecar payments ─HTTP─▶ test app
import assert from 'node:assert/strict';
import { request, type Dispatcher } from 'undici';
import { startTestApp, type TestApp } from './apps.ts';
import { SidecarProcess, sidecarConfig } from './sidecar-process.ts';

export interface Mesh {
  app: TestApp;
  /** The called service's sidecar ("payments"), in front of `app`. */
  callee: SidecarProcess;
  /** The calling app's sidecar ("orders"); tests send their requests to its outbound port. */
  caller: SidecarProcess;
  /**
   * Start one more calling sidecar that knows the callee (and the aliases), with `extra` over the
   * mesh's `extra`, stopped by close(). It is not waited for: tests wait for its link to come up, or fail.
   */
  addCaller(service: string, extra?: Record<string, unknown>): Promise<SidecarProcess>;
  close(): Promise<void>;
}

export interface MeshOptions {
  /** Extra config keys for both sidecars (e.g. limits, link). */
  extra?: Record<string, unknown>;
  callerExtra?: Record<string, unknown>;
  calleeExtra?: Record<string, unknown>;
  /** More services the caller knows, all served by the same callee sidecar (e.g. "ledger.shop"). */
  aliases?: string[];
}

export async function startMesh(options: MeshOptions = {}): Promise<Mesh> {
  const app = await startTestApp();
  const started: SidecarProcess[] = [];
  try {
    const callee = await SidecarProcess.start({
      // The callee serves the aliases too (config `aliases`): it refuses calls for services it does not serve.
      config: sidecarConfig({ service: 'payments', appPort: app.port, extra: { ...(options.aliases ? { aliases: options.aliases } : {}), ...options.extra, ...options.calleeExtra } }),
    });
    started.push(callee);
    const peers: Record<string, string[]> = { payments: [callee.inboundAddress] };
    for (const alias of options.aliases ?? []) peers[alias] = [callee.inboundAddress];
    const addCaller = async (service: string, extra?: Record<string, unknown>) => {
      const sidecar = await SidecarProcess.start({ config: sidecarConfig({ service, appPort: 1, peers, extra: { ...options.extra, ...extra } }) });
      started.push(sidecar);
      return sidecar;
    };
    const caller = await addCaller('orders', options.callerExtra);
    // Links open at start-up; wait for it so the first test does not measure connection set-up.
    await caller.waitForLog((l) => l.msg === 'link ready' && l.peer === callee.inboundAddress);
    return {
      app, callee, caller, addCaller,
      close: async () => {
        await Promise.all(started.map((s) => s.stop()));
        await app.close();
      },
    };
  } catch (err) {
    await Promise.all(started.map((s) => s.stop()));
    await app.close();
    throw err;
  }
}

/** After bad input on the caller's outbound listener: a normal call still goes through. */
export async function assertStillServing(mesh: Mesh): Promise<void> {
  const response = await request(`${mesh.caller.outboundUrl}/after`, { headers: { host: 'payments' } });
  assert.equal(response.statusCode, 200, 'the sidecar still serves normal calls');
  await response.body.dump();
}

/** A mesh-made error: status, `mcp-mesh-error` header and JSON body agree on the code. */
export async function assertMeshError(response: Dispatcher.ResponseData<unknown>, status: number, code: string): Promise<{ code: string; message: string; service?: string }> {
  const text = await response.body.text();
  assert.equal(response.statusCode, status, `expected ${status} ${code}, got ${response.statusCode}: ${text}`);
  assert.equal(response.headers['mcp-mesh-error'], code);
  const parsed = JSON.parse(text) as { error: { code: string; message: string; service?: string } };
  assert.equal(parsed.error.code, code);
  assert.ok(parsed.error.message.length > 0, 'the error has a message');
  return parsed.error;
}

/** Headers of the HTTP connection, whoever answers: not part of an answer's own headers. */
const TRANSPORT_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);

/** An answer's own headers (the connection's left out), each as one string: to compare answers. */
export function answerHeaders(headers: Dispatcher.ResponseData['headers']): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !TRANSPORT_HEADERS.has(name)).map(([name, value]) => [name, String(value)]));
}
