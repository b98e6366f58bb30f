// A real MCP server, as people write them with the official SDK (@modelcontextprotocol/sdk 1.x): the
// demo's MCP replicas (in the demo process), and the tests' (test/helpers/mcp-server-main.ts runs
// one per child process, so a test can SIGKILL a replica). The SDK is a dev dependency: only the
// demo's MCP section imports this module, dynamically, so `mcp-mesh sidecar` never loads it.
//
// One HTTP server offers both transports, as the SDK's sseAndStreamableHttpCompatibleServer example does:
// - Streamable HTTP at /mcp, stateful: the session id comes from randomUUID(); one transport (and one
//   McpServer) per session, kept in a map; a request naming a session this server does not hold gets
//   404 with a JSON-RPC error body (what the specification asks for, and what the real-world
//   "pod split" failure looks like).
// - HTTP+SSE (2024-11-05): GET /sse opens the stream, whose first event names
//   /messages?sessionId=<id>; POST /messages?sessionId=<id> carries the client's messages. An unknown
//   sessionId gets 404 with a JSON-RPC error body (the SDK's simpleSseServer answers 404 too).
//
// Host checks: the app is built with the SDK's createMcpExpressApp, which answers 403 to any Host
// that is not localhost unless `allowedHosts` is given. Behind the mesh the app sees the Host the
// client used (`mcp`, the service name: the sidecar hands the request's authority to the app), so
// the DNS-rebinding protection stays ON with allowedHosts = the service name plus localhost and
// 127.0.0.1 (/stats is read directly on 127.0.0.1). A request with any other Host is refused.
//
// One tool, `whoami`, answers {replica, session, count}: the replica's name, the session id as
// this app knows it, and how many times this session has called the tool (1, 2, 3…). A client
// that sees one replica name and an unbroken count was served by one replica for its whole session.
//
// Every answer carries `x-replica` (as the demo's other apps do), so a client can see which replica
// served each of its HTTP requests. GET /stats (not an MCP route) tells what reached this app, so
// callers can count at the apps.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

/** What reached one app; also served at GET /stats. */
export interface McpAppStats {
  replica: string;
  /** Sessions this app created, by transport. */
  sessions: { streamable: number; sse: number };
  /** Sessions open now, by transport. */
  open: { streamable: number; sse: number };
  /** Requests by route: /mcp (any method), GET /sse, POST /messages. */
  requests: { mcp: number; sse: number; messages: number };
  /** Requests naming a session this app does not hold (answered 404). */
  unknownSession: number;
  /** The unknown session ids, most recent last (at most 50): a test can see what an app was sent. */
  unknownIds: string[];
  /** whoami calls served. */
  toolCalls: number;
}

export interface McpServerOptions {
  /** The replica's name: what `whoami` answers. */
  replica: string;
  /** Host names the app accepts (DNS-rebinding protection). Default: mcp, localhost, 127.0.0.1. */
  allowedHosts?: string[];
  /** Default 0 (any free port); always on 127.0.0.1. */
  port?: number;
}

export interface McpServerApp {
  replica: string;
  port: number;
  /** Live counters (the same object /stats serialises). */
  stats: McpAppStats;
  /** Stops listening and cuts every connection, open SSE streams included. */
  close(): Promise<void>;
}

export async function startMcpServer(options: McpServerOptions): Promise<McpServerApp> {
  const { replica } = options;
  const stats: McpAppStats = {
    replica,
    sessions: { streamable: 0, sse: 0 },
    open: { streamable: 0, sse: 0 },
    requests: { mcp: 0, sse: 0, messages: 0 },
    unknownSession: 0,
    unknownIds: [],
    toolCalls: 0,
  };

  /** One McpServer per session, as in the SDK examples; the counter is this session's. */
  const sessionServer = (): McpServer => {
    const server = new McpServer({ name: `mcp-mesh-demo-${replica}`, version: '1.0.0' });
    let count = 0;
    server.registerTool('whoami', { description: 'Names the replica serving this session and counts its calls' }, (extra) => {
      count++;
      stats.toolCalls++;
      return { content: [{ type: 'text', text: JSON.stringify({ replica, session: extra.sessionId, count }) }] };
    });
    return server;
  };

  const sessionNotFound = (res: ServerResponse, id: string): void => {
    stats.unknownSession++;
    stats.unknownIds.push(id);
    if (stats.unknownIds.length > 50) stats.unknownIds.shift();
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: `Session not found on ${replica}` }, id: null }));
  };

  const streamable = new Map<string, StreamableHTTPServerTransport>();
  const sse = new Map<string, SSEServerTransport>();
  const app = createMcpExpressApp({ host: '127.0.0.1', allowedHosts: options.allowedHosts ?? ['mcp', 'localhost', '127.0.0.1'] });

  app.use((_req: Request, res: ServerResponse, next: () => void) => {
    res.setHeader('x-replica', replica);
    next();
  });

  app.all('/mcp', async (req: Request, res: ServerResponse) => {
    stats.requests.mcp++;
    const header = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(header) ? header[0] : header;
    let transport = sessionId ? streamable.get(sessionId) : undefined;
    if (!transport) {
      if (sessionId) return sessionNotFound(res, sessionId);
      if (req.method !== 'POST' || !isInitializeRequest(req.body)) return badRequest(res, 'Bad Request: No valid session ID provided');
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          streamable.set(id, created);
          stats.sessions.streamable++;
          stats.open.streamable++;
        },
      });
      created.onclose = () => {
        const id = created.sessionId;
        if (id && streamable.delete(id)) stats.open.streamable--;
      };
      await sessionServer().connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, req.body);
  });

  app.get('/sse', async (_req: Request, res: ServerResponse) => {
    stats.requests.sse++;
    const transport = new SSEServerTransport('/messages', res);
    sse.set(transport.sessionId, transport);
    stats.sessions.sse++;
    stats.open.sse++;
    transport.onclose = () => {
      if (sse.delete(transport.sessionId)) stats.open.sse--;
    };
    await sessionServer().connect(transport);
  });

  app.post('/messages', async (req: Request, res: ServerResponse) => {
    stats.requests.messages++;
    const sessionId = typeof req.query?.sessionId === 'string' ? req.query.sessionId : '';
    const transport = sse.get(sessionId);
    if (!transport) return sessionNotFound(res, sessionId);
    await transport.handlePostMessage(req, res, req.body);
  });

  app.get('/stats', (_req: Request, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
  });

  const server = await new Promise<ReturnType<typeof app.listen>>((resolve, reject) => {
    const listening = app.listen(options.port ?? 0, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(listening)));
  });
  return {
    replica,
    port: (server.address() as AddressInfo).port,
    stats,
    // SSE streams stay open; a polite stop should not wait for them.
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

type Request = IncomingMessage & { body?: unknown; query?: Record<string, unknown> };

function badRequest(res: ServerResponse, message: string): void {
  res.writeHead(400, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}
