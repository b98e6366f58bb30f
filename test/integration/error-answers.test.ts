// One error path: whoever answers with a mesh error — a routed call on the outbound listener,
// fastify itself (a body that does not parse, no such route, a body over the route's limit), a mesh
// API route, a batch entry, or the admin listener — the answer has the same headers and the same body.
//
//   test ─▶ sidecar orders ══▶ sidecar reports ─▶ test app (holds /hold…)
//                          ══▶ sidecar down    ─▶ (nothing listening)
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request, type Dispatcher } from 'undici';
import { ERROR_CODES, type ErrorCode } from '../../sidecar/src/errors/codes.ts';
import { closedPort, startTestApp, type HeldRequest, type TestApp } from '../helpers/apps.ts';
import { answerHeaders } from '../helpers/mesh.ts';
import { policy } from '../helpers/policies.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

const RETRY_AFTER_SECONDS = 7;
const MAX_MESSAGE_BYTES = 1024;

interface ErrorAnswer {
  /** The answer's own headers (not the connection's), by name. */
  headers: Record<string, string>;
  error: { code: string; message: string; service?: string };
}

/**
 * The answer every mesh error gets, wherever it is made: the code's status; exactly
 * content-type, content-length and mcp-mesh-error, plus mcp-mesh-attempts and Retry-After when
 * `extra` names them; the body `{ "error": { code, message, service? } }` and nothing else.
 */
async function assertErrorAnswer(response: Dispatcher.ResponseData, code: ErrorCode, extra: string[] = []): Promise<ErrorAnswer> {
  const text = await response.body.text();
  assert.equal(response.statusCode, ERROR_CODES[code].status, `${code}: ${text}`);
  const headers = answerHeaders(response.headers);
  assert.deepEqual(Object.keys(headers).sort(), ['content-length', 'content-type', 'mcp-mesh-error', ...extra].sort(), `${code}: the answer's headers`);
  assert.equal(headers['mcp-mesh-error'], code);
  assert.equal(headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(Number(headers['content-length']), Buffer.byteLength(text));
  const body = JSON.parse(text) as { error: ErrorAnswer['error'] };
  assert.deepEqual(Object.keys(body), ['error'], `${code}: the body is { error }`);
  assert.equal(body.error.code, code);
  assert.ok(body.error.message.length > 0, `${code}: the error says what happened`);
  assert.deepEqual(Object.keys(body.error).filter((key) => !['code', 'message', 'service'].includes(key)), [], `${code}: only code, message, service`);
  return { headers, error: body.error };
}

describe('mesh errors are answered alike at every entry point', { timeout: 60_000 }, () => {
  let app: TestApp;
  let reports: SidecarProcess;
  let down: SidecarProcess;
  let orders: SidecarProcess;
  let policyDir: string;

  before(async () => {
    app = await startTestApp();
    [reports, down] = await Promise.all([
      SidecarProcess.start({ config: sidecarConfig({ service: 'reports', appPort: app.port }) }),
      SidecarProcess.start({ config: sidecarConfig({ service: 'down', appPort: await closedPort() }) }),
    ]);
    policyDir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-policies-'));
    writeFileSync(path.join(policyDir, 'reports.yaml'),
      policy('reports', 'reports', `  concurrency: { maxInFlight: 1, maxQueue: 0, retryAfterSeconds: ${RETRY_AFTER_SECONDS} }\n`));
    orders = await SidecarProcess.start({
      config: sidecarConfig({
        service: 'orders', appPort: 1,
        peers: { reports: [reports.inboundAddress], down: [down.inboundAddress] },
        extra: { policies: [policyDir], storage: { maxMessageBytes: MAX_MESSAGE_BYTES } },
      }),
    });
    await Promise.all([reports, down].map((peer) => orders.waitForLog((l) => l.msg === 'link ready' && l.peer === peer.inboundAddress)));
  });
  after(async () => {
    await Promise.all([orders, reports, down].map((s) => s?.stop()));
    await app?.close();
    if (policyDir) rmSync(policyDir, { recursive: true, force: true });
  });

  const routed = (host: string, path: string) => request(`${orders.outboundUrl}${path}`, { headers: { host } });
  const meshApi = (method: Dispatcher.HttpMethod, path: string, body?: string, contentType = 'application/json') =>
    request(`${orders.outboundUrl}${path}`, { method, body, headers: body === undefined ? {} : { 'content-type': contentType } });
  const admin = (method: Dispatcher.HttpMethod, path: string) => request(`http://127.0.0.1:${orders.ports.admin}${path}`, { method });

  test('a routed call: UNKNOWN_SERVICE; APP_UNAVAILABLE with mcp-mesh-attempts; OVERLOADED with Retry-After', async () => {
    const unknown = await assertErrorAnswer(await routed('nowhere', '/x'), 'UNKNOWN_SERVICE');
    assert.equal(unknown.error.service, 'nowhere.default');

    const failed = await assertErrorAnswer(await routed('down', '/x'), 'APP_UNAVAILABLE', ['mcp-mesh-attempts']);
    assert.match(failed.headers['mcp-mesh-attempts']!, /^[1-9][0-9]*$/);

    // One call held at the app fills maxInFlight 1; with no queue, the next is refused at once.
    const first = routed('reports', '/hold/1');
    const held: HeldRequest = await within(app.nextHeld(), 5000, 'the first call never reached the app');
    try {
      const overloaded = await assertErrorAnswer(await routed('reports', '/hold/2'), 'OVERLOADED', ['retry-after']);
      assert.equal(overloaded.headers['retry-after'], String(RETRY_AFTER_SECONDS), 'Retry-After comes from the policy');
    } finally {
      held.release('done');
    }
    assert.equal((await first).statusCode, 200);
  });

  test('fastify on the outbound listener: a body that is not JSON, no such route, a body over the route\'s limit', async () => {
    await assertErrorAnswer(await meshApi('POST', '/mesh/v1/batch', '{"calls": ['), 'BAD_REQUEST');
    await assertErrorAnswer(await meshApi('POST', '/mesh/v1/batch', JSON.stringify({ calls: [] })), 'BAD_REQUEST');
    const route = await assertErrorAnswer(await meshApi('GET', '/mesh/v1/no-such-route'), 'UNKNOWN_ROUTE');
    assert.match(route.error.message, /no mesh API route GET \/mesh\/v1\/no-such-route/);
    await assertErrorAnswer(await meshApi('POST', '/mesh/v1/publish/orders.created', 'x'.repeat(MAX_MESSAGE_BYTES + 1), 'text/plain'), 'BODY_TOO_LARGE');
  });

  test('a mesh API route: MESSAGE_NOT_FOUND', async () => {
    const missing = await assertErrorAnswer(await meshApi('GET', '/mesh/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV'), 'MESSAGE_NOT_FOUND');
    assert.match(missing.error.message, /01ARZ3NDEKTSV4RRFFQ69G5FAV/);
  });

  test('a batch entry shows the status, headers and error the call alone gets', async () => {
    const response = await meshApi('POST', '/mesh/v1/batch', JSON.stringify({ calls: [{ service: 'nowhere' }, { service: 'down' }] }));
    assert.equal(response.statusCode, 200);
    const { results } = await response.body.json() as { results: { status: number; headers: Record<string, string>; error: ErrorAnswer['error'] }[] };
    const alone = await assertErrorAnswer(await routed('nowhere', '/'), 'UNKNOWN_SERVICE');
    const { 'content-type': _type, 'content-length': _length, ...aloneHeaders } = alone.headers;
    assert.deepEqual(results[0], { status: 404, headers: aloneHeaders, error: alone.error });
    assert.equal(results[1]!.status, 502);
    assert.deepEqual(Object.keys(results[1]!.headers).sort(), ['mcp-mesh-attempts', 'mcp-mesh-error']);
    assert.equal(results[1]!.headers['mcp-mesh-error'], 'APP_UNAVAILABLE');
    assert.equal(results[1]!.error.code, 'APP_UNAVAILABLE');
  });

  test('the admin listener: a bad log level, no such route', async () => {
    const level = await assertErrorAnswer(await admin('PUT', '/logging?level=loud'), 'BAD_REQUEST');
    assert.match(level.error.message, /invalid log level "loud"/);
    await assertErrorAnswer(await admin('PUT', '/logging'), 'BAD_REQUEST');
    const route = await assertErrorAnswer(await admin('GET', '/no-such-page'), 'UNKNOWN_ROUTE');
    assert.match(route.error.message, /no admin route GET \/no-such-page/);
  });
});
