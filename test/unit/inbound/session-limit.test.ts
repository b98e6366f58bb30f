// limits.maxSessions: the session table (counting, idle expiry on an injected clock) and the handler
// that opens, ends and refuses sessions from the app's answers. The app behind the handler is a
// stand-in InboundHandler that answers what each test scripts and records what it was sent.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import pino from 'pino';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { SessionLimitingHandler, SessionTable } from '../../../sidecar/src/inbound/session-limit.ts';
import { MessageType, type Envelope, type Header } from '../../../sidecar/src/mcp/codec.ts';
import type { InboundHandler, InboundResponse } from '../../../sidecar/src/mcp/server.ts';

let ids = 0;
function request(method: string, path: string, headers: Header[] = []): Envelope {
  return { id: `req-${++ids}`, type: MessageType.REQUEST, source: 'client.default', headers, http: { method, path, authority: 'mcp' } };
}

function answer(status: number, headers: Header[] = [], bodyStreamId?: string): Envelope {
  return { id: `res-${++ids}`, type: MessageType.RESPONSE, headers, http: { status, bodyStreamId } };
}

/** The app, scripted: `answers` decides each answer from the request; everything sent is recorded. */
class ScriptedApp implements InboundHandler {
  readonly sent: Envelope[] = [];
  readonly parked = new Map<string, Readable>();
  answers: (request: Envelope) => Envelope | InboundResponse;

  constructor(answers: (request: Envelope) => Envelope | InboundResponse) {
    this.answers = answers;
  }

  async unary(request: Envelope): Promise<Envelope> {
    this.sent.push(request);
    return this.answers(request) as Envelope;
  }

  async stream(head: Envelope): Promise<InboundResponse> {
    this.sent.push(head);
    return this.answers(head) as InboundResponse;
  }

  pull(bodyStreamId: string): AsyncIterable<Uint8Array> | undefined {
    const body = this.parked.get(bodyStreamId);
    this.parked.delete(bodyStreamId);
    return body;
  }
}

/** An app that opens a Streamable HTTP session for every request without one (s-1, s-2, …). */
function streamableApp(): ScriptedApp {
  let next = 0;
  return new ScriptedApp((req) => {
    const session = req.headers?.find((h) => h.name === 'mcp-session-id')?.value;
    if (req.http?.method === 'DELETE') return answer(session ? 200 : 400);
    if (session) return answer(session.startsWith('s-') ? 200 : 404, [{ name: 'mcp-session-id', value: session }]);
    return answer(200, [{ name: 'mcp-session-id', value: `s-${++next}` }, { name: 'content-type', value: 'application/json' }]);
  });
}

function limited(app: InboundHandler, max: number, idleMs = 60_000, now: () => number = Date.now) {
  const table = new SessionTable(max, idleMs, now);
  let refused = 0;
  const handler = new SessionLimitingHandler(app, { table, service: 'mcp.default', logger: pino({ level: 'silent' }), onRefused: () => refused++ });
  return { table, handler, refused: () => refused };
}

const signal = new AbortController().signal;
const initialize = () => request('POST', '/mcp', [{ name: 'content-type', value: 'application/json' }]);
const ofSession = (method: string, session: string) => request(method, '/mcp', [{ name: 'mcp-session-id', value: session }]);

describe('SessionTable', () => {
  test('counts sessions up to the limit; 0 means no limit', () => {
    const table = new SessionTable(2, 1000);
    assert.equal(table.full(), false);
    table.open('a', { active: false });
    table.open('b', { active: false });
    assert.equal(table.size, 2);
    assert.equal(table.full(), true);
    table.close('a');
    assert.equal(table.full(), false);
    const unlimited = new SessionTable(0, 1000);
    for (let i = 0; i < 100; i++) unlimited.open(`s${i}`, { active: false });
    assert.equal(unlimited.full(), false);
    assert.equal(unlimited.size, 100);
  });

  test('an idle session stops counting after the idle timeout; one with a request in flight does not', () => {
    let now = 0;
    const table = new SessionTable(2, 1000, () => now);
    table.open('idle', { active: false });
    table.open('busy', { active: false });
    assert.equal(table.begin('busy'), true);
    now = 999;
    assert.equal(table.size, 2, 'not before the timeout');
    now = 1000;
    assert.equal(table.size, 1);
    assert.equal(table.has('idle'), false);
    assert.equal(table.has('busy'), true, 'a session with a request at the app is not idle');
    table.end('busy');
    now = 1999;
    assert.equal(table.size, 1, 'the idle time counts from the end of its last request');
    now = 2000;
    assert.equal(table.size, 0);
  });

  test('begin() of a session not held here says so; a stream-bound session ends with its stream', () => {
    const table = new SessionTable(5, 1000);
    assert.equal(table.begin('unknown'), false);
    table.open('sse', { active: true, streamBound: true });
    assert.equal(table.size, 1);
    table.end('sse');
    assert.equal(table.size, 0);
  });
});

describe('SessionLimitingHandler (Streamable HTTP)', () => {
  test('a session the app hands out is counted; over the limit it is deleted at the app and the call refused with SESSION_LIMIT', async () => {
    const app = streamableApp();
    const { table, handler, refused } = limited(app, 2);
    await handler.unary(initialize(), signal);
    await handler.unary(initialize(), signal);
    assert.equal(table.size, 2);
    await assert.rejects(handler.unary(initialize(), signal), (err: unknown) => {
      assert.ok(err instanceof MeshError);
      assert.equal(err.code, 'SESSION_LIMIT');
      assert.equal(err.status, 503);
      assert.match(err.message, /limits\.maxSessions/);
      return true;
    });
    assert.equal(refused(), 1);
    assert.equal(table.size, 2, 'the refused session never counted');
    const release = app.sent.at(-1)!;
    assert.equal(release.http?.method, 'DELETE');
    assert.equal(release.http?.path, '/mcp');
    assert.deepEqual(release.headers, [{ name: 'mcp-session-id', value: 's-3' }], 'the session the app had just opened is the one deleted');
  });

  test('requests of a held session pass and keep it; a DELETE of it or a 404 for it frees its place', async () => {
    const app = streamableApp();
    const { table, handler } = limited(app, 1);
    await handler.unary(initialize(), signal);
    const ok = await handler.unary(ofSession('POST', 's-1'), signal);
    assert.equal(ok.http?.status, 200);
    assert.equal(table.size, 1);
    await assert.rejects(handler.unary(initialize(), signal), /SESSION_LIMIT|maxSessions/);
    await handler.unary(ofSession('DELETE', 's-1'), signal);
    assert.equal(table.size, 0, 'deleted');
    await handler.unary(initialize(), signal); // s-3 (s-2 was refused)
    assert.equal(table.has('s-3'), true);
    app.answers = (req) => answer(404, req.headers);
    await handler.unary(ofSession('POST', 's-3'), signal);
    assert.equal(table.size, 0, 'the app no longer holds it');
  });

  test('a request naming a session this replica does not hold, and an answer without a session, change nothing', async () => {
    const app = new ScriptedApp(() => answer(200, [{ name: 'content-type', value: 'application/json' }]));
    const { table, handler } = limited(app, 1);
    await handler.unary(ofSession('POST', 'elsewhere'), signal);
    await handler.unary(request('GET', '/healthz'), signal);
    assert.equal(table.size, 0);
  });

  test('an app error for a held session ends its request, so the session can go idle', async () => {
    let now = 0;
    const app = streamableApp();
    const { table, handler } = limited(app, 1, 100, () => now);
    await handler.unary(initialize(), signal);
    app.answers = () => { throw new MeshError('APP_RESET', 'gone mid-answer'); };
    await assert.rejects(handler.unary(ofSession('POST', 's-1'), signal), /gone mid-answer/);
    now = 100;
    assert.equal(table.size, 0, 'not left active for ever');
  });

  test('a streamed (parked) answer keeps the session active until its body has been read', async () => {
    let now = 0;
    const app = streamableApp();
    const { table, handler } = limited(app, 1, 100, () => now);
    await handler.unary(initialize(), signal);
    app.parked.set('body-1', Readable.from([Buffer.from('event: message\n\n')]));
    app.answers = (req) => answer(200, [...(req.headers ?? []), { name: 'content-type', value: 'text/event-stream' }], 'body-1');
    await handler.unary(ofSession('GET', 's-1'), signal);
    now = 500;
    assert.equal(table.size, 1, 'its stream is still open');
    const body = handler.pull('body-1');
    assert.ok(body);
    for await (const _chunk of body) { /* read it all */ }
    now = 599;
    assert.equal(table.size, 1, 'idle time counts from the end of the stream');
    now = 600;
    assert.equal(table.size, 0, 'idle once its stream ended');
  });
});

describe('SessionLimitingHandler (HTTP+SSE)', () => {
  test('an event stream opened by a GET without a session is one session while it is open', async () => {
    const streams: Readable[] = [];
    const app = new ScriptedApp(() => {
      // Like undici's body: destroying it errors it, which must not go unhandled.
      const body: Readable = new Readable({ read() {}, destroy(err, done) { done(body.readableEnded ? err : new Error('aborted')); } });
      streams.push(body);
      return { head: answer(200, [{ name: 'content-type', value: 'text/event-stream' }]), body };
    });
    const { table, handler, refused } = limited(app, 1);
    const first = await handler.stream(request('GET', '/sse'), null, signal);
    assert.equal(table.size, 1);
    await assert.rejects(handler.stream(request('GET', '/sse'), null, signal), /maxSessions/);
    assert.equal(refused(), 1);
    assert.equal(streams[1]!.destroyed, true, 'the refused stream is cut, which ends its session at the app');
    assert.equal(app.sent.filter((r) => r.http?.method === 'DELETE').length, 0, 'an HTTP+SSE session has no DELETE');
    assert.equal(streams[0]!.destroyed, false, 'the held one goes on');
    assert.equal(first.body, streams[0], 'the app\'s own stream is handed on, so destroying it (a cancel) reaches the app');
    const chunks: string[] = [];
    const reading = (async () => { for await (const chunk of first.body!) chunks.push(Buffer.from(chunk).toString()); })();
    streams[0]!.push('event: endpoint\ndata: /messages?sessionId=x\n\n');
    streams[0]!.push(null); // the app closes the stream: the session is over
    await reading;
    assert.deepEqual(chunks, ['event: endpoint\ndata: /messages?sessionId=x\n\n'], 'the stream passes unchanged');
    assert.equal(table.size, 0);
    // A caller that goes away: the stream is destroyed, not ended; the session is over too.
    const third = await handler.stream(request('GET', '/sse'), null, signal);
    assert.equal(table.size, 1);
    (third.body as Readable).destroy();
    await new Promise((resolve) => (third.body as Readable).once('close', resolve));
    assert.equal(table.size, 0);
  });
});
