import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ERROR_CODES, isErrorCode, LOG_CODES, type ErrorCode } from '../../../sidecar/src/errors/codes.ts';
import { MeshError, toMeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { errorAnswer, errorBody, errorHeaders, MESH_ERROR_HEADER, sendMeshError } from '../../../sidecar/src/errors/respond.ts';

// The documented status of every code (DESIGN.md "Headers" and issue 2). A code added to the table
// without being added here fails the first test, so the status is always a deliberate choice.
const DOCUMENTED_STATUS: Record<ErrorCode, number> = {
  UNKNOWN_SERVICE: 404,
  UNKNOWN_ROUTE: 404,
  SESSION_OWNER_GONE: 404,
  SESSION_TOKEN_INVALID: 404,
  SESSION_LIMIT: 503,
  BAD_REQUEST: 400,
  BODY_TOO_LARGE: 413,
  HEADERS_TOO_LARGE: 431,
  REQUEST_TIMEOUT: 408,
  NO_HEALTHY_ENDPOINT: 503,
  CIRCUIT_OPEN: 503,
  OVERLOADED: 503,
  SHUTTING_DOWN: 503,
  PEER_UNAVAILABLE: 502,
  LINK_BROKEN: 502,
  PROTOCOL_ERROR: 502,
  VERSION_UNSUPPORTED: 502,
  PEER_IDENTITY_MISMATCH: 502,
  MISDIRECTED: 421,
  APP_UNAVAILABLE: 502,
  APP_RESET: 502,
  DEADLINE_EXCEEDED: 504,
  STREAM_IDLE_TIMEOUT: 504,
  CLIENT_CLOSED: 499,
  EGRESS_NOT_ALLOWED: 403,
  BODY_PULL_DENIED: 403,
  ACCESS_DENIED: 403,
  STORAGE_FULL: 507,
  STORAGE_UNAVAILABLE: 503,
  MESSAGE_NOT_FOUND: 404,
  UNKNOWN_TOPIC: 404,
  INTERNAL: 500,
};

describe('ERROR_CODES', () => {
  it('maps every code to its documented status', () => {
    assert.deepEqual(Object.keys(ERROR_CODES).sort(), Object.keys(DOCUMENTED_STATUS).sort());
    for (const [code, status] of Object.entries(DOCUMENTED_STATUS)) {
      assert.equal(ERROR_CODES[code as ErrorCode].status, status, code);
      assert.equal(new MeshError(code as ErrorCode, 'x').status, status, `MeshError(${code}).status`);
    }
  });

  it('the contract\'s statuses: 404 unknown service, 502 peer/app failure, 503 no endpoint / shutting down, 504 deadline, 413 too large', () => {
    assert.equal(ERROR_CODES.UNKNOWN_SERVICE.status, 404);
    for (const code of ['PEER_UNAVAILABLE', 'LINK_BROKEN', 'APP_UNAVAILABLE', 'APP_RESET'] as const) assert.equal(ERROR_CODES[code].status, 502, code);
    for (const code of ['NO_HEALTHY_ENDPOINT', 'SHUTTING_DOWN'] as const) assert.equal(ERROR_CODES[code].status, 503, code);
    assert.equal(ERROR_CODES.DEADLINE_EXCEEDED.status, 504);
    assert.equal(ERROR_CODES.BODY_TOO_LARGE.status, 413);
  });

  it('codes are SCREAMING_SNAKE_CASE with a one-line summary', () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      assert.match(code, /^[A-Z][A-Z0-9_]+$/);
      assert.ok(info.summary.length > 10 && !info.summary.includes('\n'), code);
    }
  });

  it('isErrorCode knows the table and nothing else (not even Object.prototype names)', () => {
    assert.ok(isErrorCode('LINK_BROKEN'));
    assert.ok(!isErrorCode('link_broken'));
    assert.ok(!isErrorCode('toString'));
    assert.ok(!isErrorCode('__proto__'));
  });

  it('log codes: SCREAMING_SNAKE_CASE with a one-line summary, none of them an error code too', () => {
    for (const [code, info] of Object.entries(LOG_CODES)) {
      assert.match(code, /^[A-Z][A-Z0-9_]+$/);
      assert.ok(info.summary.length > 10 && !info.summary.includes('\n'), code);
      assert.ok(!isErrorCode(code), `${code} is in both tables`);
    }
  });

  const errorsDoc = new URL('../../../docs/errors.md', import.meta.url);
  it('every code appears in docs/errors.md', () => {
    const text = readFileSync(errorsDoc, 'utf8');
    assert.deepEqual(Object.keys(ERROR_CODES).filter((code) => !text.includes(code)), []);
  });
});

describe('MeshError', () => {
  it('carries code, message, service and cause', () => {
    const cause = new Error('ECONNREFUSED');
    const err = new MeshError('APP_UNAVAILABLE', 'app down', { service: 'payments', cause });
    assert.equal(err.name, 'MeshError');
    assert.equal(err.code, 'APP_UNAVAILABLE');
    assert.equal(err.message, 'app down');
    assert.equal(err.service, 'payments');
    assert.equal(err.cause, cause);
    assert.ok(err instanceof Error);
  });

  it('is made with everything its answer says: attempts and Retry-After too', () => {
    const err = new MeshError('OVERLOADED', 'full', { service: 'payments.shop', attempts: 3, retryAfterSeconds: 5 });
    assert.equal(err.attempts, 3);
    assert.equal(err.retryAfterSeconds, 5);
    assert.deepEqual(errorHeaders(err), { 'mcp-mesh-error': 'OVERLOADED', 'mcp-mesh-attempts': '3', 'retry-after': '5' });
    const plain = new MeshError('UNKNOWN_SERVICE', 'who?');
    assert.deepEqual(errorHeaders(plain), { 'mcp-mesh-error': 'UNKNOWN_SERVICE' }, 'nothing unknown is made up');
    assert.deepEqual(errorAnswer(err), {
      status: 503, headers: { 'mcp-mesh-error': 'OVERLOADED', 'mcp-mesh-attempts': '3', 'retry-after': '5' },
      error: { code: 'OVERLOADED', message: 'full', service: 'payments.shop' },
    });
  });

  it('fromWire keeps a known code and message', () => {
    const err = MeshError.fromWire({ code: 'DEADLINE_EXCEEDED', message: 'too slow' }, 'payments');
    assert.equal(err.code, 'DEADLINE_EXCEEDED');
    assert.equal(err.message, 'too slow');
    assert.equal(err.service, 'payments');
    assert.equal(err.status, 504);
  });

  it('fromWire turns an unknown, empty or missing code into PROTOCOL_ERROR', () => {
    const unknown = MeshError.fromWire({ code: 'FROM_THE_FUTURE', message: '' });
    assert.equal(unknown.code, 'PROTOCOL_ERROR');
    assert.match(unknown.message, /FROM_THE_FUTURE/, 'the unknown code is kept in the message');
    assert.equal(MeshError.fromWire({}).code, 'PROTOCOL_ERROR');
    assert.equal(MeshError.fromWire({ code: null, message: null }).code, 'PROTOCOL_ERROR');
    assert.equal(MeshError.fromWire({ code: 'constructor' }).code, 'PROTOCOL_ERROR');
    assert.equal(MeshError.fromWire({}).service, undefined);
  });

  it('toMeshError keeps mesh errors and wraps anything else with the fallback code', () => {
    const mesh = new MeshError('LINK_BROKEN', 'x');
    assert.equal(toMeshError(mesh, 'INTERNAL'), mesh);
    const plain = new Error('boom');
    const wrapped = toMeshError(plain, 'APP_RESET', 'payments');
    assert.equal(wrapped.code, 'APP_RESET');
    assert.equal(wrapped.message, 'boom');
    assert.equal(wrapped.service, 'payments');
    assert.equal(wrapped.cause, plain);
    assert.equal(toMeshError('a string').code, 'INTERNAL');
    assert.equal(toMeshError('a string').message, 'a string');
  });
});

describe('errorBody and sendMeshError', () => {
  it('errorBody: {error: {code, message, service}}; service left out when unknown', () => {
    assert.deepEqual(JSON.parse(errorBody(new MeshError('UNKNOWN_SERVICE', 'no such service', { service: 'payments' }))),
      { error: { code: 'UNKNOWN_SERVICE', message: 'no such service', service: 'payments' } });
    assert.deepEqual(JSON.parse(errorBody(new MeshError('INTERNAL', 'oops'))), { error: { code: 'INTERNAL', message: 'oops' } });
  });

  let onRequest: (req: IncomingMessage, res: ServerResponse) => void = () => {};
  let server: Server | undefined;
  after(() => server?.close());

  async function call(handler: typeof onRequest): Promise<IncomingMessage> {
    onRequest = handler;
    if (!server) {
      server = createServer((req, res) => onRequest(req, res));
      await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    }
    const { port } = server.address() as AddressInfo;
    return new Promise((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/', agent: false }, resolve).on('error', reject).end();
    });
  }

  async function readAll(res: IncomingMessage): Promise<string> {
    let text = '';
    for await (const chunk of res) text += chunk;
    return text;
  }

  for (const [code, status] of Object.entries(DOCUMENTED_STATUS) as [ErrorCode, number][]) {
    it(`${code}: status ${status}, header ${MESH_ERROR_HEADER}, JSON body`, async () => {
      const res = await call((_req, r) => sendMeshError(r, new MeshError(code, `made by the mesh: ${code}`, { service: 'payments' })));
      assert.equal(res.statusCode, status);
      assert.equal(res.headers[MESH_ERROR_HEADER], code);
      assert.match(res.headers['content-type'] ?? '', /^application\/json/);
      const text = await readAll(res);
      assert.equal(Number(res.headers['content-length']), Buffer.byteLength(text));
      const expected = (ERROR_CODES[code] as { jsonRpc?: true }).jsonRpc
        // MCP session errors: the JSON-RPC "Session not found" body the MCP specification asks for.
        ? { jsonrpc: '2.0', error: { code: -32001, message: `Session not found: made by the mesh: ${code}`, data: { meshError: code, service: 'payments' } }, id: null }
        : { error: { code, message: `made by the mesh: ${code}`, service: 'payments' } };
      assert.deepEqual(JSON.parse(text), expected);
    });
  }

  it('counts content-length in bytes for non-ASCII messages', async () => {
    const res = await call((_req, r) => sendMeshError(r, new MeshError('APP_RESET', 'café ☕')));
    const text = await readAll(res);
    assert.equal(JSON.parse(text).error.message, 'café ☕');
    assert.equal(Number(res.headers['content-length']), Buffer.byteLength(text));
  });

  it('cuts the connection when the response has already started', async () => {
    const res = await call((_req, r) => {
      r.writeHead(200, { 'content-type': 'text/event-stream' });
      r.write('data: first\n\n', () => sendMeshError(r, new MeshError('LINK_BROKEN', 'link broke mid-stream')));
    });
    assert.equal(res.statusCode, 200, 'the app\'s head already went out');
    assert.equal(res.headers[MESH_ERROR_HEADER], undefined);
    const outcome = await new Promise<string>((resolve) => {
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('error', () => resolve(`error after ${JSON.stringify(body)}`));
      res.on('end', () => resolve(`clean end after ${JSON.stringify(body)}`));
    });
    assert.equal(outcome, 'error after "data: first\\n\\n"', 'the client sees a broken response, not a clean end');
    assert.equal(res.complete, false);
  });
});
