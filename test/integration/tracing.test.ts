// Tracing on real processes: app A → sidecar A → sidecar B → app B, with both sidecars exporting
// spans over OTLP/HTTP to a local receiver that decodes real export requests. One trace, one
// connected tree: app A's span → egress (call) → attempt → ingress → app call → the traceparent app
// B receives. Retries show as attempt spans; the default sampler follows the app's decision; with
// no OTLP endpoint the mesh traces nothing and hands app B the app's traceparent untouched.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { listen, type RunningServer } from '../helpers/apps.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

// ---- the apps ----

interface Received { path: string; traceparent: string | undefined; tracestate: string | undefined }

/** App B: answers 200 with JSON, writes down the trace headers of every request; `/flaky/…` cuts its first connection. */
async function startAppB(): Promise<RunningServer & { received: Received[] }> {
  const received: Received[] = [];
  const seen = new Map<string, number>();
  const server = createServer((req, res) => {
    req.resume();
    const path = new URL(req.url ?? '/', 'http://app').pathname;
    received.push({ path, traceparent: header(req.headers, 'traceparent'), tracestate: header(req.headers, 'tracestate') });
    const count = (seen.get(path) ?? 0) + 1;
    seen.set(path, count);
    if (path.startsWith('/flaky/') && count === 1) {
      req.socket.destroy(); // a reset: the calling sidecar retries the GET
      return;
    }
    const body = JSON.stringify({ path });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  return { ...(await listen(server)), received };
}

interface AppACall {
  /** The traceparent app A sent its sidecar (its own span's context), if any. */
  sent: string | undefined;
  status: number;
  attempts: number;
}

/**
 * App A: on `GET /call?path=P&flags=01` it makes a span context of its own (as an instrumented app
 * would), calls service payments through its sidecar with it in `traceparent` (and a tracestate),
 * and answers what happened. `flags=none` sends no trace headers at all.
 */
async function startAppA(sidecar: () => SidecarProcess): Promise<RunningServer> {
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://app');
      const flags = url.searchParams.get('flags') ?? '01';
      const sent = flags === 'none' ? undefined : `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-${flags}`;
      const headers: Record<string, string> = { host: 'payments' };
      if (sent) {
        headers.traceparent = sent;
        headers.tracestate = 'appa=1';
      }
      const answer = await request(`${sidecar().outboundUrl}${url.searchParams.get('path')}`, { headers });
      await answer.body.text();
      const body = JSON.stringify({ sent, status: answer.statusCode, attempts: Number(answer.headers['mcp-mesh-attempts'] ?? 0) } satisfies AppACall);
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  return listen(server);
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

const parse = (traceparent: string) => {
  const [, traceId, spanId, flags] = traceparent.split('-') as [string, string, string, string];
  return { traceId, spanId, flags };
};

// ---- a mesh of two sidecars and two apps ----

interface Mesh {
  appA: RunningServer;
  appB: RunningServer & { received: Received[] };
  caller: SidecarProcess;
  callee: SidecarProcess;
  /** Ask app A to make a call; returns what it sent and what came back. */
  call(path: string, flags?: string): Promise<AppACall>;
  close(): Promise<void>;
}

/** OTEL_* settings the test runner's environment might hold, blanked (empty is unset) under each test's own. */
const CLEAN_OTEL: Record<string, string> = Object.fromEntries([
  'OTEL_SDK_DISABLED', 'OTEL_TRACES_EXPORTER', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_PROTOCOL',
  'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES',
].map((name) => [name, '']));

async function startMesh(settings: Record<string, string>): Promise<Mesh> {
  const env = { ...CLEAN_OTEL, ...settings };
  const appB = await startAppB();
  let caller: SidecarProcess | undefined;
  const appA = await startAppA(() => caller!);
  const callee = await SidecarProcess.start({ config: sidecarConfig({ service: 'payments', appPort: appB.port }), env });
  caller = await SidecarProcess.start({ config: sidecarConfig({ service: 'orders', appPort: appA.port, peers: { payments: [callee.inboundAddress] } }), env });
  await caller.waitForLog((l) => l.msg === 'link ready');
  const sidecar = caller;
  return {
    appA, appB, caller: sidecar, callee,
    async call(path, flags = '01') {
      const response = await request(`http://127.0.0.1:${appA.port}/call?path=${encodeURIComponent(path)}&flags=${flags}`);
      assert.equal(response.statusCode, 200, 'app A made its call');
      return await response.body.json() as AppACall;
    },
    async close() {
      await Promise.all([sidecar.stop(), callee.stop()]);
      await Promise.all([appA.close(), appB.close()]);
    },
  };
}

/** The spans of one trace once `ready` says they are all there. */
function spansOf(receiver: OtlpReceiver, traceId: string, ready: (spans: ReceivedSpan[]) => boolean, what: string): Promise<ReceivedSpan[]> {
  return receiver.waitFor((all) => {
    const spans = all.filter((s) => s.traceId === traceId);
    return ready(spans) ? spans : undefined;
  }, { what });
}

const count = (spans: ReceivedSpan[], name: string) => spans.filter((s) => s.name === name).length;
const one = (spans: ReceivedSpan[], name: string, parent?: string): ReceivedSpan => {
  const found = spans.filter((s) => s.name === name && (parent === undefined || s.parentSpanId === parent));
  assert.equal(found.length, 1, `one ${name} span${parent ? ` under ${parent}` : ''}: ${JSON.stringify(spans.map((s) => [s.name, s.spanId, s.parentSpanId]))}`);
  return found[0]!;
};

const EGRESS = 'egress payments.default';
const ATTEMPT = 'attempt payments.default';
const INGRESS = 'ingress payments.default';
const APP = 'app payments.default';

// ---- the tests ----

describe('tracing across two sidecars (OTLP/protobuf, parent-based always-on)', { timeout: 60_000 }, () => {
  let receiver: OtlpReceiver;
  let mesh: Mesh;

  before(async () => {
    receiver = await startOtlpReceiver();
    mesh = await startMesh({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER: 'parentbased_always_on', OTEL_BSP_SCHEDULE_DELAY: '50' });
  });
  after(async () => {
    await mesh?.close();
    await receiver?.close();
  });

  test('one connected tree: app A → egress → attempt → ingress → app call → the traceparent app B receives', async () => {
    assert.ok(mesh.caller.logs.some((l) => l.msg === 'tracing on' && l.protocol === 'http/protobuf'), 'the sidecar says tracing is on');
    const outcome = await mesh.call('/orders/42?verbose=1');
    assert.equal(outcome.status, 200);
    const app = parse(outcome.sent!);
    const spans = await spansOf(receiver, app.traceId, (s) => count(s, EGRESS) === 1 && count(s, ATTEMPT) === 1 && count(s, INGRESS) === 1 && count(s, APP) === 1, 'the four spans of the call');

    assert.equal(spans.length, 4, 'nothing else in the trace');
    const egress = one(spans, EGRESS, app.spanId);
    const attempt = one(spans, ATTEMPT, egress.spanId);
    const ingress = one(spans, INGRESS, attempt.spanId);
    const appCall = one(spans, APP, ingress.spanId);
    const atB = mesh.appB.received.find((r) => r.path === '/orders/42')!;
    assert.equal(atB.traceparent, `00-${app.traceId}-${appCall.spanId}-01`, 'app B\'s parent is the app-call span; the trace is app A\'s');
    assert.equal(atB.tracestate, 'appa=1', 'the app\'s tracestate travels along');

    assert.deepEqual([egress.kind, attempt.kind, ingress.kind, appCall.kind], ['INTERNAL', 'CLIENT', 'SERVER', 'CLIENT']);
    for (const span of spans) {
      assert.equal(span.attributes['http.request.method'], 'GET', span.name);
      assert.equal(span.attributes['url.path'], '/orders/42', `${span.name}: the path without its query`);
      assert.equal(span.attributes['http.response.status_code'], 200, span.name);
      assert.equal(span.status.code, 0, `${span.name} is not an error`);
      assert.equal(span.attributes['mcp_mesh.service'], 'payments.default', span.name);
      assert.ok(span.endNs >= span.startNs, span.name);
    }
    assert.equal(egress.attributes['mcp_mesh.route'], 'default');
    assert.equal(egress.attributes['mcp_mesh.call_kind'], 'call');
    assert.equal(egress.attributes['mcp_mesh.attempts'], 1);
    assert.equal(attempt.attributes['mcp_mesh.route'], 'default');
    assert.equal(attempt.attributes['mcp_mesh.attempt'], 1);
    assert.equal(attempt.attributes['mcp_mesh.endpoint'], mesh.callee.inboundAddress);
    assert.equal(attempt.attributes['mcp_mesh.breaker_state'], 'closed');
    assert.ok(Number(attempt.attributes['mcp_mesh.batch_size']) >= 1, 'the link batch the try left in');
    assert.equal(attempt.attributes['server.address'], '127.0.0.1');
    assert.equal(attempt.attributes['server.port'], mesh.callee.ports.inbound);
    assert.equal(ingress.attributes['mcp_mesh.source'], 'orders.default');

    // Each sidecar's spans carry its own identity.
    for (const span of [egress, attempt]) assert.deepEqual([span.resource['service.name'], span.resource['service.namespace']], ['orders', 'default']);
    for (const span of [ingress, appCall]) assert.deepEqual([span.resource['service.name'], span.resource['service.namespace']], ['payments', 'default']);
    assert.notEqual(egress.resource['service.instance.id'], ingress.resource['service.instance.id']);
    assert.equal(egress.scope, 'mcp-mesh');
    assert.ok(receiver.requests.every((r) => r.contentType === 'application/x-protobuf'), 'exported as OTLP/protobuf');
  });

  test('a retry: two attempt spans (1 and 2) under one call span, the first failed with the mesh\'s error code', async () => {
    const outcome = await mesh.call('/flaky/1');
    assert.equal(outcome.status, 200);
    assert.equal(outcome.attempts, 2, 'the reset was retried');
    const app = parse(outcome.sent!);
    const spans = await spansOf(receiver, app.traceId, (s) => count(s, EGRESS) === 1 && count(s, ATTEMPT) === 2 && count(s, INGRESS) === 2 && count(s, APP) === 2, 'the spans of a call tried twice');

    const egress = one(spans, EGRESS, app.spanId);
    assert.equal(egress.attributes['mcp_mesh.attempts'], 2);
    assert.equal(egress.attributes['http.response.status_code'], 200);
    const attempts = spans.filter((s) => s.name === ATTEMPT).sort((a, b) => Number(a.attributes['mcp_mesh.attempt']) - Number(b.attributes['mcp_mesh.attempt']));
    assert.deepEqual(attempts.map((a) => a.attributes['mcp_mesh.attempt']), [1, 2]);
    for (const a of attempts) assert.equal(a.parentSpanId, egress.spanId, 'both tries are children of the call');
    const [first, second] = attempts as [ReceivedSpan, ReceivedSpan];
    assert.ok(first.endNs <= second.startNs, 'the second try starts after the first ended');
    assert.equal(first.attributes['error.type'], 'APP_RESET');
    assert.equal(first.status.code, 2, 'the failed try is an error');
    assert.equal(second.attributes['http.request.resend_count'], 1);
    assert.equal(second.attributes['http.response.status_code'], 200);
    assert.equal(second.status.code, 0);

    // Each try reached sidecar B as its own server span, with its own app call.
    const firstIngress = one(spans, INGRESS, first.spanId);
    const secondIngress = one(spans, INGRESS, second.spanId);
    assert.equal(firstIngress.attributes['error.type'], 'APP_RESET');
    const firstApp = one(spans, APP, firstIngress.spanId);
    const secondApp = one(spans, APP, secondIngress.spanId);
    assert.equal(firstApp.status.code, 2);
    const atB = mesh.appB.received.filter((r) => r.path === '/flaky/1').map((r) => r.traceparent);
    assert.deepEqual(atB, [`00-${app.traceId}-${firstApp.spanId}-01`, `00-${app.traceId}-${secondApp.spanId}-01`]);
  });
});

describe('the default sampler: parent-based, 1 % of new traces (OTLP/JSON)', { timeout: 60_000 }, () => {
  let receiver: OtlpReceiver;
  let mesh: Mesh;

  before(async () => {
    receiver = await startOtlpReceiver();
    mesh = await startMesh({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '50' });
  });
  after(async () => {
    await mesh?.close();
    await receiver?.close();
  });

  test('an app\'s sampled traceparent (flags 01) is followed; an unsampled one (00) is followed too: nothing recorded, 00 handed on', async () => {
    assert.ok(mesh.caller.logs.some((l) => l.msg === 'tracing on' && l.sampler === 'parentbased_traceidratio(0.01)'));
    const unsampled = await mesh.call('/unsampled', '00');
    const sampled = await mesh.call('/sampled', '01');
    const noTrace = await mesh.call('/no-trace', 'none');
    const sampledApp = parse(sampled.sent!);
    const spans = await spansOf(receiver, sampledApp.traceId, (s) => s.length === 4, 'the four spans of the sampled call');
    const appCall = one(spans, APP);
    one(spans, EGRESS, sampledApp.spanId);
    assert.equal(mesh.appB.received.find((r) => r.path === '/sampled')!.traceparent, `00-${sampledApp.traceId}-${appCall.spanId}-01`);
    assert.ok(receiver.requests.every((r) => r.contentType === 'application/json'), 'exported as OTLP/JSON');

    // The unsampled call: app B still gets the trace (same id, flags 00) from a mesh span that was not recorded.
    const unsampledApp = parse(unsampled.sent!);
    const atB = parse(mesh.appB.received.find((r) => r.path === '/unsampled')!.traceparent!);
    assert.equal(atB.traceId, unsampledApp.traceId);
    assert.equal(atB.flags, '00');
    assert.notEqual(atB.spanId, unsampledApp.spanId, 'the mesh\'s own (unrecorded) span is the parent');

    // No traceparent at all: a new trace starts in the mesh, sampled at 1 %; app B gets it either way.
    const fresh = parse(mesh.appB.received.find((r) => r.path === '/no-trace')!.traceparent!);
    assert.match(fresh.traceId, /^[0-9a-f]{32}$/);
    assert.ok(fresh.flags === '00' || fresh.flags === '01');
    assert.equal(noTrace.status, 200);

    // Sidecars export in the order spans end, so once a later call's spans from both sidecars are in,
    // any span of the earlier ones would be too: wait for a marker call, then look.
    const marker = await mesh.call('/marker', '01');
    await spansOf(receiver, parse(marker.sent!).traceId, (s) => s.length === 4, 'the marker call\'s spans');
    assert.deepEqual(receiver.spans.filter((s) => s.traceId === unsampledApp.traceId), [], 'an unsampled parent is followed: nothing recorded');
    const freshSpans = receiver.spans.filter((s) => s.traceId === fresh.traceId);
    assert.equal(freshSpans.length, fresh.flags === '01' ? 4 : 0, 'a new trace is recorded exactly when its flags say sampled');
  });
});

describe('tracing off: no OTLP endpoint', { timeout: 60_000 }, () => {
  let mesh: Mesh;

  before(async () => {
    // No endpoint (CLEAN_OTEL blanks any the test runner has); a sampler alone turns nothing on.
    mesh = await startMesh({ OTEL_TRACES_SAMPLER: 'always_on' });
  });
  after(() => mesh?.close());

  test('the mesh adds nothing: app B gets app A\'s traceparent and tracestate unchanged, or none', async () => {
    assert.ok(!mesh.caller.logs.some((l) => l.msg === 'tracing on'));
    assert.ok(!mesh.callee.logs.some((l) => l.msg === 'tracing on'));
    const traced = await mesh.call('/passed-through', '01');
    assert.equal(traced.status, 200);
    const atB = mesh.appB.received.find((r) => r.path === '/passed-through')!;
    assert.equal(atB.traceparent, traced.sent);
    assert.equal(atB.tracestate, 'appa=1');
    const untraced = await mesh.call('/untraced', 'none');
    assert.equal(untraced.status, 200);
    const none = mesh.appB.received.find((r) => r.path === '/untraced')!;
    assert.equal(none.traceparent, undefined, 'no traceparent is made up');
    assert.equal(none.tracestate, undefined);
  });
});

describe('shutdown flushes the spans not yet exported', { timeout: 60_000 }, () => {
  let receiver: OtlpReceiver;
  let sidecar: SidecarProcess | undefined;
  before(async () => { receiver = await startOtlpReceiver(); });
  after(async () => {
    await sidecar?.stop();
    await receiver?.close();
  });

  test('a failed call\'s span, held by a 10-minute batch schedule, reaches the collector when the sidecar stops (SIGTERM)', async () => {
    sidecar = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: 1 }),
      env: { ...CLEAN_OTEL, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER: 'always_on', OTEL_BSP_SCHEDULE_DELAY: '600000' },
    });
    const response = await request(`${sidecar.outboundUrl}/anything`, { headers: { host: 'nowhere' } });
    await response.body.text();
    assert.equal(response.headers['mcp-mesh-error'], 'UNKNOWN_SERVICE');
    assert.equal(receiver.spans.length, 0, 'nothing exported yet');
    const exit = await sidecar.stop();
    assert.equal(exit.code, 0);
    const [span] = receiver.spans;
    assert.equal(receiver.spans.length, 1, 'exported before the process exited');
    assert.equal(span!.name, 'egress nowhere.default');
    assert.equal(span!.parentSpanId, '', 'no traceparent: a root span');
    assert.equal(span!.attributes['error.type'], 'UNKNOWN_SERVICE');
    assert.equal(span!.attributes['http.response.status_code'], Number(response.statusCode));
    assert.equal(span!.status.code, 2);
    assert.equal(span!.status.message, 'UNKNOWN_SERVICE');
  });
});
