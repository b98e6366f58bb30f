import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import { createLogger, REDACTED } from '../../../sidecar/src/telemetry/logger.ts';
import { combine, type CallObserver, type InboundStart, type OutboundStart } from '../../../sidecar/src/telemetry/observer.ts';
import { createRequestLog, levelOf, pathOnly } from '../../../sidecar/src/telemetry/request-log.ts';

type Line = Record<string, unknown> & { level: number; msg: string };

/** The sidecar's logger (same redaction, same base fields), writing its lines into an array. */
function capture(level = 'debug'): { logger: Logger; lines: Line[]; raw: string[] } {
  const lines: Line[] = [];
  const raw: string[] = [];
  const logger = createLogger({ level, service: 'orders.shop', instance: 'orders-1' }, {
    write(text: string) { raw.push(text); lines.push(JSON.parse(text) as Line); },
  });
  return { logger, lines, raw };
}

const secrets = [
  { name: 'authorization', value: 'Bearer s3cr3t-token' },
  { name: 'cookie', value: 'session=s3cr3t-cookie' },
  { name: 'proxy-authorization', value: 'Basic s3cr3t-proxy' },
];
const outboundStart: OutboundStart = { service: 'payments.shop', method: 'POST', path: '/charges/7?api_key=s3cr3t-query', headers: secrets, kind: 'call' };
const inboundStart: InboundStart = {
  service: 'payments.shop', source: 'orders.shop', method: 'GET', path: '/refunds?token=s3cr3t-query', headers: secrets, trace: undefined, messageId: undefined,
};
const IDS = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };

/** A stand-in for the tracer: it gives every call the same ids (combine hands them on). */
const fakeTracer: CallObserver = {
  outbound: () => ({ ids: IDS, route() {}, affinity() {}, attempt: () => ({ trace: undefined, end() {} }), end() {} }),
  inbound: () => ({ ids: IDS, appCall: () => ({ headers: [], end() {} }), end() {} }),
};

function outboundCall(observer: CallObserver, outcome: { status: number; code?: string }, attempts = 1, start = outboundStart): void {
  const call = observer.outbound(start);
  call.route('charges');
  const attempt = call.attempt(1, '10.0.0.2:15002', 'closed');
  attempt.end(outcome);
  call.end(outcome, attempts);
}

function assertNoSecrets(raw: string[]): void {
  const all = raw.join('');
  for (const secret of ['s3cr3t-token', 's3cr3t-cookie', 's3cr3t-proxy', 's3cr3t-query']) assert.ok(!all.includes(secret), `"${secret}" in the log:\n${all}`);
}

describe('request log', () => {
  it('writes one debug line per outbound call, with its fields, no headers and no query string', () => {
    const { logger, lines, raw } = capture();
    outboundCall(createRequestLog(logger), { status: 201 }, 2);
    assert.equal(lines.length, 1);
    const line = lines[0]!;
    assert.equal(line.level, 20);
    assert.equal(line.msg, 'outbound call');
    assert.equal(line.service, 'orders.shop', 'the base field: this sidecar');
    assert.equal(line.instance, 'orders-1');
    assert.equal(line.direction, 'outbound');
    assert.equal(line.kind, 'call');
    assert.equal(line.target, 'payments.shop');
    assert.equal(line.route, 'charges');
    assert.equal(line.method, 'POST');
    assert.equal(line.path, '/charges/7');
    assert.equal(line.status, 201);
    assert.equal(line.attempts, 2);
    assert.equal(typeof line.durationMs, 'number');
    assert.ok((line.durationMs as number) >= 0);
    for (const absent of ['code', 'trace_id', 'span_id', 'headers', 'messageId']) assert.ok(!(absent in line), `no ${absent} in ${raw[0]}`);
    assertNoSecrets(raw);
    // Exactly one "service" key in the JSON text: the called service is `target`.
    assert.equal(raw[0]!.match(/"service":/g)!.length, 1);
  });

  it('writes one debug line per inbound call, with source, kind and message id', () => {
    const { logger, lines, raw } = capture();
    const log = createRequestLog(logger);
    const call = log.inbound(inboundStart);
    call.appCall().end({ status: 200 });
    call.end({ status: 200 });
    const delivery = log.inbound({ ...inboundStart, method: 'POST', path: '/events', messageId: '01J9ZX0000000000000000000' });
    delivery.appCall().end({ status: 204 });
    delivery.end({ status: 204 });
    assert.equal(lines.length, 2);
    assert.deepEqual(pick(lines[0]!, ['level', 'msg', 'direction', 'kind', 'source', 'method', 'path', 'status']), {
      level: 20, msg: 'inbound call', direction: 'inbound', kind: 'call', source: 'orders.shop', method: 'GET', path: '/refunds', status: 200,
    });
    assert.ok(!('messageId' in lines[0]!));
    assert.equal(lines[1]!.kind, 'delivery');
    assert.equal(lines[1]!.messageId, '01J9ZX0000000000000000000');
    assertNoSecrets(raw);
  });

  it('carries trace_id and span_id when the call is traced (the tracer runs first in combine)', () => {
    const { logger, lines } = capture();
    const observer = combine([fakeTracer, createRequestLog(logger)]);
    outboundCall(observer, { status: 200 });
    const inbound = observer.inbound(inboundStart);
    inbound.appCall().end({ status: 200 });
    inbound.end({ status: 200 });
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.equal(line.trace_id, IDS.traceId);
      assert.equal(line.span_id, IDS.spanId);
    }
  });

  it('logs mesh errors at warn with their code, INTERNAL at error, the app\'s 5xx and CLIENT_CLOSED at debug', () => {
    const { logger, lines } = capture();
    const log = createRequestLog(logger);
    outboundCall(log, { status: 503 }); // the app's own answer
    outboundCall(log, { status: 502, code: 'PEER_UNAVAILABLE' }, 3);
    outboundCall(log, { status: 504, code: 'DEADLINE_EXCEEDED' });
    outboundCall(log, { status: 503, code: 'NO_HEALTHY_ENDPOINT' }, 0);
    outboundCall(log, { status: 500, code: 'INTERNAL' });
    outboundCall(log, { status: 499, code: 'CLIENT_CLOSED' });
    const inbound = log.inbound(inboundStart);
    inbound.end({ status: 502, code: 'APP_UNAVAILABLE' });
    assert.deepEqual(lines.map((l) => [l.level, l.status, l.code]), [
      [20, 503, undefined], [40, 502, 'PEER_UNAVAILABLE'], [40, 504, 'DEADLINE_EXCEEDED'], [40, 503, 'NO_HEALTHY_ENDPOINT'],
      [50, 500, 'INTERNAL'], [20, 499, 'CLIENT_CLOSED'], [40, 502, 'APP_UNAVAILABLE'],
    ]);
    assert.equal(lines[1]!.attempts, 3);
    assert.equal(lines[3]!.attempts, 0);
    assert.match(lines[1]!.msg, /^outbound call failed: PEER_UNAVAILABLE: /);
    assert.match(lines[6]!.msg, /^inbound call failed: APP_UNAVAILABLE: /);
  });

  it('above debug writes only failures, and asks the level once per call without building a line', (t) => {
    const { logger, lines } = capture('info');
    const isLevelEnabled = t.mock.method(logger, 'isLevelEnabled');
    const debug = t.mock.method(logger, 'debug');
    const log = createRequestLog(logger);
    for (let i = 0; i < 5; i++) outboundCall(log, { status: 200 });
    const inbound = log.inbound(inboundStart);
    inbound.end({ status: 200 });
    assert.equal(lines.length, 0);
    assert.equal(debug.mock.callCount(), 0, 'logger.debug is never called');
    assert.equal(isLevelEnabled.mock.callCount(), 6, 'one level check per call');
    assert.deepEqual(isLevelEnabled.mock.calls.map((c) => c.arguments[0]), Array(6).fill('debug'));
    outboundCall(log, { status: 502, code: 'PEER_UNAVAILABLE' });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 40);
  });

  it('follows a change of logger.level at run time, from the next call on', () => {
    const { logger, lines } = capture('info');
    const log = createRequestLog(logger);
    outboundCall(log, { status: 200 });
    assert.equal(lines.length, 0);
    logger.level = 'debug'; // what PUT /logging?level=debug does
    outboundCall(log, { status: 200 });
    assert.equal(lines.length, 1);
    // A call in flight when the level changes is logged by the level at its end.
    const inFlight = log.outbound(outboundStart);
    logger.level = 'warn';
    inFlight.end({ status: 200 }, 1);
    outboundCall(log, { status: 200 });
    assert.equal(lines.length, 1);
    outboundCall(log, { status: 504, code: 'DEADLINE_EXCEEDED' });
    assert.equal(lines.length, 2);
    logger.level = 'error';
    outboundCall(log, { status: 504, code: 'DEADLINE_EXCEEDED' });
    assert.equal(lines.length, 2);
    logger.level = 'silent';
    outboundCall(log, { status: 500, code: 'INTERNAL' });
    assert.equal(lines.length, 2);
  });

  it('says whether affinity pinned or bound the call, and which kind of call it was', () => {
    const { logger, lines } = capture();
    const log = createRequestLog(logger);
    const pinned = log.outbound({ ...outboundStart, kind: 'batch' });
    pinned.affinity('pinned');
    pinned.end({ status: 200 }, 1);
    const delivery = log.outbound({ ...outboundStart, kind: 'delivery' });
    delivery.end({ status: 202 }, 1);
    assert.deepEqual(lines.map((l) => [l.kind, l.affinity]), [['batch', 'pinned'], ['delivery', undefined]]);
    assert.ok(!('route' in lines[1]!), 'no route when no policy was matched');
  });
});

describe('the logger', () => {
  it('redacts credential headers in headers, req.headers and res.headers, and header lists there', () => {
    const { logger, raw, lines } = capture();
    const headers = { authorization: 'Bearer s3cr3t-token', cookie: 'session=s3cr3t-cookie', 'proxy-authorization': 'Basic s3cr3t-proxy', 'set-cookie': ['id=s3cr3t-cookie'], accept: 'text/plain' };
    logger.info({ headers }, 'top');
    logger.info({ req: { headers }, res: { headers } }, 'nested');
    logger.info({ headers: secrets, req: { headers: secrets } }, 'lists');
    assertNoSecrets(raw);
    assert.deepEqual(lines[0]!.headers, { authorization: REDACTED, cookie: REDACTED, 'proxy-authorization': REDACTED, 'set-cookie': REDACTED, accept: 'text/plain' });
    assert.equal((lines[1]!.req as { headers: Record<string, string> }).headers.authorization, REDACTED);
    assert.equal((lines[1]!.res as { headers: Record<string, string> }).headers.cookie, REDACTED);
    assert.equal((lines[1]!.res as { headers: Record<string, string> }).headers.accept, 'text/plain');
    const redactedList = secrets.map((h) => ({ name: h.name, value: REDACTED }));
    assert.deepEqual(lines[2]!.headers, redactedList);
    assert.deepEqual((lines[2]!.req as { headers: unknown }).headers, redactedList);
    assert.equal(headers.authorization, 'Bearer s3cr3t-token', 'the logged object itself is left as it was');
  });
});

describe('levelOf and pathOnly', () => {
  it('levels by the mesh error code', () => {
    assert.equal(levelOf(undefined), 'debug');
    assert.equal(levelOf('CLIENT_CLOSED'), 'debug');
    assert.equal(levelOf('INTERNAL'), 'error');
    for (const code of ['PEER_UNAVAILABLE', 'NO_HEALTHY_ENDPOINT', 'DEADLINE_EXCEEDED', 'CIRCUIT_OPEN', 'UNKNOWN_SERVICE']) assert.equal(levelOf(code), 'warn');
  });

  it('cuts the query string and fragment off a path', () => {
    assert.equal(pathOnly('/a/b'), '/a/b');
    assert.equal(pathOnly('/a?x=1&y=2'), '/a');
    assert.equal(pathOnly('/a#frag'), '/a');
    assert.equal(pathOnly('/?'), '/');
    assert.equal(pathOnly('*'), '*');
  });
});

function pick(line: Line, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, line[k]]));
}
