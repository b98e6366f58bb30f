// The one place a mesh error becomes an answer, whoever answers: the outbound listener's proxied
// calls (sendMeshError), a bare socket (endWithMeshError), a fastify route of the mesh API or the
// admin listener (replyWithMeshError), a batch entry (errorAnswer). Each writes the same headers
// (errorHeaders) and the same body (errorBody).
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply } from 'fastify';
import { ERROR_CODES, type ErrorCodeInfo } from './codes.ts';
import type { MeshError } from './mesh-error.ts';

export const MESH_ERROR_HEADER = 'mcp-mesh-error';
/** The tries the calling sidecar made: on a call's answer (call/retry.ts) and on its final error. */
export const ATTEMPTS_HEADER = 'mcp-mesh-attempts';

/** The `error` object of a mesh error's JSON body: `{ code, message, service? }`. */
function errorFields(err: MeshError): { code: string; message: string; service?: string } {
  return { code: err.code, message: err.message, ...(err.service ? { service: err.service } : {}) };
}

/** The JSON body of every mesh-made error response (JSON-RPC for MCP session errors). */
export function errorBody(err: MeshError): string {
  if ((ERROR_CODES[err.code] as ErrorCodeInfo).jsonRpc) {
    return JSON.stringify({
      jsonrpc: '2.0',
      error: { code: -32001, message: `Session not found: ${err.message}`, data: { meshError: err.code, ...(err.service ? { service: err.service } : {}) } },
      id: null,
    });
  }
  return JSON.stringify({ error: errorFields(err) });
}

/**
 * The headers of a mesh error's answer, wherever it is written: the code, the tries made when the
 * calling sidecar knows them, and when to come back for errors that know it (OVERLOADED).
 * Without a body, no content-type or content-length (a batch entry shows these headers only).
 */
export function errorHeaders(err: MeshError, body?: string): Record<string, string> {
  const headers: Record<string, string> = body === undefined ? {} : {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
  };
  headers[MESH_ERROR_HEADER] = err.code;
  if (err.attempts !== undefined) headers[ATTEMPTS_HEADER] = String(err.attempts);
  if (err.retryAfterSeconds !== undefined) headers['retry-after'] = String(err.retryAfterSeconds);
  return headers;
}

/**
 * A mesh error as an HTTP response to the app. If the response has already started (a stream
 * broke midway), the only honest signal left is to cut the connection.
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

/** The same answer from a fastify route, hook or error handler (mesh API, admin listener). */
export function replyWithMeshError(reply: FastifyReply, err: MeshError): FastifyReply {
  if (reply.raw.headersSent) {
    reply.raw.destroy(err);
    return reply;
  }
  const body = errorBody(err);
  return reply.code(err.status).headers(errorHeaders(err, body)).send(body);
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

/**
 * The answer a batch entry shows instead of an app's (`{ status, headers, body }`): the status and
 * headers the call would have been answered with alone, and the body's `error` object.
 */
export function errorAnswer(err: MeshError): { status: number; headers: Record<string, string>; error: ReturnType<typeof errorFields> } {
  return { status: err.status, headers: errorHeaders(err), error: errorFields(err) };
}
