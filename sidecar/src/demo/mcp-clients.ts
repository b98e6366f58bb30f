// Official-SDK MCP clients (@modelcontextprotocol/sdk 1.x `Client` with StreamableHTTPClientTransport
// or SSEClientTransport) that reach the MCP service through a sidecar's outbound listener, as an
// app in the mesh would. The demo (and the tests, through test/helpers/mcp-clients.ts) run N of them
// at once, each connecting and calling `whoami` K times, and get one outcome per client: ok or the
// error, and which replicas answered. Imported only dynamically (the SDK is a dev dependency).
//
// How the SDK clients are pointed at a sidecar: the clients are given the service's own URL,
// `http://mcp/mcp` or `http://mcp/sse`, and the SDK's `fetch` option (both transports, and the SSE
// transport uses it for its EventSource too) is undici's fetch with a ProxyAgent whose proxy is
// the sidecar's outbound listener and `proxyTunnel: false`. undici then sends each request to the
// sidecar in absolute form (`POST http://mcp/mcp HTTP/1.1`, `Host: mcp`): the HTTP_PROXY way of
// addressing a service (DESIGN "Addressing a service from the app"), with no code change in the
// client. Why not the alternatives:
// - Node's built-in fetch ignores a `Host` header (a forbidden header name), and so does the SDK's
//   `requestInit.headers`, so "fetch the sidecar's URL with Host: mcp" cannot be done with them;
//   undici.request could, but the SDK wants a fetch.
// - A ProxyAgent with the default `proxyTunnel: true` opens a CONNECT tunnel: the sidecar would
//   carry opaque bytes and could neither see nor rewrite Mcp-Session-Id or the endpoint event.
// - Giving the SDK the sidecar's URL (http://127.0.0.1:<outbound>/mcp) leaves no way to name the
//   service at all.
// The URL stays `http://mcp/…`, so the SSE endpoint (`/messages?sessionId=…`, relative) resolves
// to the same origin and the SDK's same-origin checks pass.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport, SseError } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { fetch as undiciFetch, ProxyAgent, type Dispatcher } from 'undici';

/** What the clients need of a sidecar: its outbound listener, and a name for the request trace. */
export interface ClientSidecar {
  readonly name: string;
  /** http://127.0.0.1:<outbound port> */
  readonly outboundUrl: string;
}

export type McpTransportKind = 'streamable' | 'sse';

/** What `whoami` answers. */
export interface WhoAmI {
  replica: string;
  /** The session id as the app knows it (the original, never the mesh's token). */
  session: string;
  /** This session's calls so far, 1-based. */
  count: number;
}

/**
 * Proxy dispatchers, one per sidecar, shared by every client of a run (as one app's HTTP client
 * would be). close() when done.
 */
export class MeshDispatchers {
  #agents = new Map<ClientSidecar, ProxyAgent>();

  for(sidecar: ClientSidecar): Dispatcher {
    let agent = this.#agents.get(sidecar);
    if (!agent) {
      agent = new ProxyAgent({ uri: sidecar.outboundUrl, proxyTunnel: false });
      this.#agents.set(sidecar, agent);
    }
    return agent;
  }

  /** A fetch for the SDK's `fetch` option; `pick` chooses the sidecar for each request. */
  fetch(pick: SidecarPick, trace?: RequestTrace[]): FetchLike {
    let n = 0;
    const meshFetch = async (url: string | URL, init?: RequestInit) => {
      const method = init?.method ?? 'GET';
      const href = String(url);
      const sidecar = typeof pick === 'function' ? pick({ method, url: href, n: n++ }) : pick;
      // undici's fetch is the same WHATWG fetch as Node's built-in one (Node bundles undici); its
      // types are its own copy, hence the casts at this seam.
      const response = await undiciFetch(href, { ...(init as object), dispatcher: this.for(sidecar) });
      trace?.push({ method, url: href, status: response.status, via: sidecar.name, replica: response.headers.get('x-replica') ?? undefined });
      return response as unknown as Response;
    };
    return meshFetch;
  }

  async close(): Promise<void> {
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(agents.map((a) => a.destroy()));
  }
}

/** One sidecar for every request, or a choice per request (e.g. alternate two client sidecars). */
export type SidecarPick = ClientSidecar | ((request: { method: string; url: string; n: number }) => ClientSidecar);

export interface RequestTrace {
  method: string;
  url: string;
  status: number;
  via: string;
  /** The replica that answered (its app's `x-replica` header), if an app answered. */
  replica?: string;
}

export interface McpRunOptions {
  transport: McpTransportKind;
  /** How many clients, all at once. */
  clients: number;
  /** whoami calls per client, one after the other. */
  calls: number;
  dispatchers: MeshDispatchers;
  /** The sidecar(s) the requests go through. */
  via: SidecarPick;
  /** Instead of `via`: a choice per client. */
  viaFor?: (client: number) => SidecarPick;
  /** The MCP service's name (the URL's host). Default `mcp`. */
  service?: string;
  /** Bound on connect and on each call (the SDK's request timeout). Default 10 s. */
  requestTimeoutMs?: number;
  /**
   * Hold every client before call number `beforeCall` (0-based) until `until` resolves, so a test
   * can act mid-run; `reached` is called once every client is waiting there (or has failed).
   */
  pause?: { beforeCall: number; until: Promise<void>; reached?: () => void };
  /** Streamable HTTP: end each successful session with DELETE (terminateSession). Default true. */
  terminate?: boolean;
  /** Keep the clients connected after the run (close them with McpRun.close). Default false. */
  keepOpen?: boolean;
}

export interface McpClientOutcome {
  client: number;
  ok: boolean;
  /** Where it failed: 'connect', 'call 7', 'terminate'. */
  failedAt?: string;
  error?: string;
  /** The HTTP status behind the error, when the SDK reports one (404 for "session not found"). */
  status?: number;
  /** whoami answers, in order. */
  answers: WhoAmI[];
  /** Distinct replicas that answered, in order of first answer. */
  replicas: string[];
  /** The session id the client holds (Streamable HTTP: Mcp-Session-Id as received, so the mesh's token). */
  sessionId?: string;
  /** Every HTTP request the client made and its status. */
  trace: RequestTrace[];
}

/** A connected client, for tests that go on using it after a run. */
export interface LiveClient {
  client: Client;
  transport: StreamableHTTPClientTransport | SSEClientTransport;
  outcome: McpClientOutcome;
  /** Call whoami once more; the answer (or error) is added to `outcome`. */
  call(): Promise<WhoAmI>;
}

export interface McpRun {
  outcomes: McpClientOutcome[];
  /** The clients (only with keepOpen). */
  live: LiveClient[];
  close(): Promise<void>;
}

/** The HTTP status in an SDK transport error, if there is one. */
export function httpStatusOf(err: unknown): number | undefined {
  if (err instanceof StreamableHTTPError && typeof err.code === 'number' && err.code >= 100) return err.code;
  if (err instanceof SseError && typeof err.code === 'number') return err.code;
  // SSEClientTransport.send: "Error POSTing to endpoint (HTTP 404): …"
  const match = /\(HTTP (\d{3})\)/.exec(err instanceof Error ? err.message : String(err));
  return match ? Number(match[1]) : undefined;
}

/** Connect one SDK client to the service through the mesh; it is not closed here. */
export async function connectClient(options: {
  transport: McpTransportKind;
  dispatchers: MeshDispatchers;
  via: SidecarPick;
  service?: string;
  requestTimeoutMs?: number;
  index?: number;
  /**
   * Streamable HTTP: start with this session id instead of initializing (the SDK's reconnect
   * path: a client that holds a session id does not send initialize).
   */
  sessionId?: string;
}): Promise<LiveClient> {
  const service = options.service ?? 'mcp';
  const timeout = options.requestTimeoutMs ?? 10_000;
  const outcome: McpClientOutcome = { client: options.index ?? 0, ok: false, answers: [], replicas: [], trace: [] };
  const fetch = options.dispatchers.fetch(options.via, outcome.trace);
  const transport = options.transport === 'streamable'
    ? new StreamableHTTPClientTransport(new URL(`http://${service}/mcp`), { fetch, sessionId: options.sessionId })
    : new SSEClientTransport(new URL(`http://${service}/sse`), { fetch });
  const client = new Client({ name: `mcp-mesh-client-${outcome.client}`, version: '1.0.0' });
  // Transport errors also reach the request that caused them; the rest (the optional GET stream
  // of Streamable HTTP failing or reconnecting) is not what a run measures.
  client.onerror = () => {};
  const fail = (where: string, err: unknown) => {
    outcome.ok = false;
    outcome.failedAt ??= where;
    outcome.error ??= err instanceof Error ? err.message : String(err);
    outcome.status ??= httpStatusOf(err);
    if (transport instanceof StreamableHTTPClientTransport) outcome.sessionId = transport.sessionId;
  };
  try {
    await client.connect(transport, { timeout });
  } catch (err) {
    fail('connect', err);
    await client.close().catch(() => {});
    throw Object.assign(new Error(`connect failed: ${outcome.error}`), { outcome });
  }
  if (transport instanceof StreamableHTTPClientTransport) outcome.sessionId = transport.sessionId;
  outcome.ok = true;
  const call = async (): Promise<WhoAmI> => {
    try {
      const result = await client.callTool({ name: 'whoami' }, undefined, { timeout });
      const first = (result.content as { type: string; text?: string }[])[0];
      const answer = JSON.parse(first?.text ?? '') as WhoAmI;
      outcome.answers.push(answer);
      if (!outcome.replicas.includes(answer.replica)) outcome.replicas.push(answer.replica);
      return answer;
    } catch (err) {
      fail(`call ${outcome.answers.length}`, err);
      throw err;
    }
  };
  return { client, transport, outcome, call };
}

/**
 * `clients` SDK clients at once, each connecting and calling whoami `calls` times through the
 * mesh. Never throws for a client's failure: each outcome says what happened. Every client is
 * closed before this resolves (unless keepOpen).
 */
export async function runMcpClients(options: McpRunOptions): Promise<McpRun> {
  const live: LiveClient[] = [];
  let atPause = 0;
  const arrived = () => {
    if (++atPause === options.clients) options.pause?.reached?.();
  };
  const one = async (index: number): Promise<McpClientOutcome> => {
    const via = options.viaFor ? options.viaFor(index) : options.via;
    let connected: LiveClient;
    try {
      connected = await connectClient({ ...options, via, index });
    } catch (err) {
      if (options.pause) arrived();
      return (err as { outcome: McpClientOutcome }).outcome;
    }
    live.push(connected);
    const { outcome } = connected;
    let paused = false;
    try {
      for (let k = 0; k < options.calls; k++) {
        if (options.pause && k === options.pause.beforeCall) {
          paused = true;
          arrived();
          await options.pause.until;
        }
        await connected.call();
      }
      if (options.terminate !== false && connected.transport instanceof StreamableHTTPClientTransport) {
        try {
          await connected.transport.terminateSession();
        } catch (err) {
          outcome.ok = false;
          outcome.failedAt = 'terminate';
          outcome.error = err instanceof Error ? err.message : String(err);
          outcome.status = httpStatusOf(err);
        }
      }
    } catch {
      // the outcome has the error
    } finally {
      if (options.pause && !paused) arrived();
      if (!options.keepOpen) await connected.client.close().catch(() => {});
    }
    return outcome;
  };
  const outcomes = await Promise.all(Array.from({ length: options.clients }, (_, i) => one(i)));
  return {
    outcomes,
    live: options.keepOpen ? live : [],
    close: async () => { await Promise.all(live.map((c) => c.client.close().catch(() => {}))); },
  };
}

/** A short summary for logs and assertion messages: how many ok, the failures grouped by error. */
export function summarise(outcomes: McpClientOutcome[]): { ok: number; failed: number; byError: Record<string, number>; perReplica: Record<string, number> } {
  const byError: Record<string, number> = {};
  const perReplica: Record<string, number> = {};
  let ok = 0;
  for (const o of outcomes) {
    if (o.ok) ok++;
    else {
      const key = `${o.failedAt}: ${o.status ?? '-'} ${(o.error ?? '').slice(0, 120)}`;
      byError[key] = (byError[key] ?? 0) + 1;
    }
    for (const r of o.replicas) perReplica[r] = (perReplica[r] ?? 0) + 1;
  }
  return { ok, failed: outcomes.length - ok, byError, perReplica };
}
