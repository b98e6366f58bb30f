import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ERROR_CODES, type ErrorCodeInfo } from './codes.ts';
import { MeshError } from './mesh-error.ts';

export const MESH_ERROR_HEADER = 'mcp-mesh-error';

/** The JSON body of every mesh-made error response (JSON-RPC for MCP session errors). */
export function errorBody(err: MeshError): string {
  if ((ERROR_CODES[err.code] as ErrorCodeInfo).jsonRpc) {
    return JSON.stringify({
      jsonrpc: '2.0',
      error: { code: -32001, message: `Session not found: ${err.message}`, data: { meshError: err.code, ...(err.service ? { service: err.service } : {}) } },
      id: null,
    });
  }
  return JSON.stringify({
    error: { code: err.code, message: err.message, ...(err.service ? { service: err.service } : {}) },
  });
}

/**
 * The one place where a mesh error becomes an HTTP response to the app. If the response has
 * already started (a stream broke midway), the only honest signal left is to cut the connection.
 */
export function sendMeshError(res: ServerResponse, err: MeshError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const body = errorBody(err);
  res.writeHead(err.status, errorHeaders(err, body));
  res.end(body);
}

/**
 * The same answer written on a bare socket, then the connection closed: for the places where no
 * ServerResponse exists (a CONNECT refused, a request Node's parser gave up on).
 */
export function endWithMeshError(socket: Socket, err: MeshError): void {
  if (socket.writable) {
    const body = errorBody(err);
    const lines = Object.entries({ ...errorHeaders(err, body), connection: 'close' }).map(([name, value]) => `${name}: ${value}\r\n`);
    socket.write(`HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n${lines.join('')}\r\n${body}`);
  }
  socket.end();
}

/** The headers of a mesh error's answer, wherever it is written. */
function errorHeaders(err: MeshError, body: string): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    [MESH_ERROR_HEADER]: err.code,
  };
  if (err.attempts !== undefined) headers['mcp-mesh-attempts'] = String(err.attempts);
  // Errors that know when to come back (OVERLOADED) say so.
  const retryAfter = retryAfterOf(err);
  if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
  return headers;
}

function retryAfterOf(err: MeshError): number | undefined {
  const seconds = (err as { retryAfterSeconds?: unknown }).retryAfterSeconds;
  return typeof seconds === 'number' ? seconds : undefined;
}
