// The official-SDK MCP clients of sidecar/src/demo/mcp-clients.ts (re-exported: the demo drives
// the same clients), plus raw requests for what the SDK does not expose (a tampered session id).
import { request, type Dispatcher } from 'undici';
import type { ClientSidecar, MeshDispatchers } from '../../sidecar/src/demo/mcp-clients.ts';

export {
  connectClient, httpStatusOf, MeshDispatchers, runMcpClients, summarise,
  type ClientSidecar, type LiveClient, type McpClientOutcome, type McpRun, type McpRunOptions,
  type McpTransportKind, type RequestTrace, type SidecarPick, type WhoAmI,
} from '../../sidecar/src/demo/mcp-clients.ts';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request to the service through `sidecar`, in the same absolute form the SDK clients use. */
export async function rawRequest(dispatchers: MeshDispatchers, sidecar: ClientSidecar, url: string, options: { method?: Dispatcher.HttpMethod; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const response = await request(url, { method: options.method ?? 'GET', headers: options.headers, body: options.body, dispatcher: dispatchers.for(sidecar) });
  return { status: response.statusCode, headers: response.headers, body: await response.body.text() };
}

/** A JSON-RPC tools/call of whoami, as a POST body. */
export function whoamiRequest(id = 1): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'whoami', arguments: {} } });
}

/**
 * Open an HTTP+SSE stream (GET /sse) through `sidecar` and read its `endpoint` event: the URL the
 * client must POST to, as the client receives it (with the mesh's token in place of the session id).
 */
export async function openRawSse(dispatchers: MeshDispatchers, sidecar: ClientSidecar, service = 'mcp'): Promise<{ endpoint: URL; close(): void }> {
  const abort = new AbortController();
  const response = await request(`http://${service}/sse`, { headers: { accept: 'text/event-stream' }, dispatcher: dispatchers.for(sidecar), signal: abort.signal });
  if (response.statusCode !== 200) throw new Error(`GET /sse: ${response.statusCode} ${await response.body.text()}`);
  // Read with 'data' events, not for-await: leaving a for-await loop destroys the body, which would
  // close the SSE stream (and so the session) as soon as the endpoint event was read.
  const endpoint = await new Promise<URL>((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const match = /(?:^|\n)event: endpoint\r?\ndata: ([^\r\n]*)\r?\n\r?\n/.exec(buffered);
      if (match) {
        response.body.off('data', onData);
        response.body.resume(); // keep the stream flowing (and open) until close()
        resolve(new URL(match[1]!, `http://${service}/sse`));
      }
    };
    response.body.on('data', onData);
    response.body.once('end', () => reject(new Error(`GET /sse ended without an endpoint event: ${buffered}`)));
    response.body.once('error', reject);
  });
  response.body.on('error', () => {}); // close() aborts it; that is expected
  return { endpoint, close: () => abort.abort() };
}

const SAFE = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * `value` with the character at `position` (negative: from the end) changed to the next one of
 * the base64url alphabet, so the result is still URL- and header-safe and looks like a token.
 */
export function tamper(value: string, position: number): string {
  const i = position < 0 ? value.length + position : position;
  const c = value[i]!;
  const at = SAFE.indexOf(c);
  const replacement = at < 0 ? 'A' : SAFE[(at + 1) % SAFE.length]!;
  return value.slice(0, i) + replacement + value.slice(i + 1);
}
