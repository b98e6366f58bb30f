import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { bindResponse, EndpointEventRewriter, routeSession } from '../../../sidecar/src/affinity/mcp-session.ts';
import { OwnerTokens } from '../../../sidecar/src/affinity/token.ts';

const tokens = new OwnerTokens('k'.repeat(32));
const OWNER = '127.0.0.1:25002';

describe('bindResponse (the way back)', () => {
  it('wraps a new Mcp-Session-Id in a token naming the replica that answered', () => {
    const bound = bindResponse(tokens, OWNER, { headers: [{ name: 'content-type', value: 'application/json' }, { name: 'mcp-session-id', value: 'abc' }], body: Buffer.from('{}') }, false);
    assert.equal(bound.bound, true);
    const token = bound.headers.find((h) => h.name === 'mcp-session-id')!.value;
    assert.deepEqual(tokens.unwrap(token), { address: OWNER, sessionId: 'abc' });
  });

  it('re-wraps the id a server repeats on later answers, without counting a new session', () => {
    const bound = bindResponse(tokens, OWNER, { headers: [{ name: 'mcp-session-id', value: 'abc' }], body: Buffer.from('{}') }, true);
    assert.equal(bound.bound, false);
    assert.deepEqual(tokens.unwrap(bound.headers[0]!.value), { address: OWNER, sessionId: 'abc' });
  });

  it('leaves responses without a session alone', () => {
    const headers = [{ name: 'content-type', value: 'application/json' }];
    const bound = bindResponse(tokens, OWNER, { headers, body: Buffer.from('{}') }, false);
    assert.equal(bound.bound, false);
    assert.deepEqual(bound.headers, headers);
  });

  it('rewrites the sessionId of an SSE endpoint event, even split across chunks, and passes the rest through', async () => {
    const stream = Readable.from([Buffer.from('event: endp'), Buffer.from('oint\ndata: /messages?x=1&sessionId=s%201'), Buffer.from('&y=2\n\nevent: message\ndata: {"a":1}\n\n')]);
    const bound = bindResponse(tokens, OWNER, { headers: [{ name: 'content-type', value: 'text/event-stream' }], body: stream }, false);
    let boundEvents = 0;
    (bound.body as EndpointEventRewriter).on('bound', () => boundEvents++);
    const out = await text(bound.body as Readable);
    assert.equal(boundEvents, 1, "'bound' is emitted as soon as the endpoint event is rewritten");
    const match = /^event: endpoint\ndata: \/messages\?x=1&sessionId=([^&]+)&y=2\n\nevent: message\ndata: \{"a":1\}\n\n$/.exec(out);
    assert.ok(match, out);
    assert.deepEqual(tokens.unwrap(decodeURIComponent(match[1]!)), { address: OWNER, sessionId: 's 1' });
    assert.equal((bound.body as EndpointEventRewriter).bound, true);
  });

  it('handles session_id (Python servers) and CRLF line ends', async () => {
    const rewriter = new EndpointEventRewriter((id) => tokens.wrap({ address: OWNER, sessionId: id }));
    const out = await text(Readable.from(['event: endpoint\r\ndata: /messages/?session_id=py42\r\n\r\n']).pipe(rewriter));
    const id = /session_id=([^\r]+)\r\n\r\n$/.exec(out)![1]!;
    assert.equal(tokens.unwrap(decodeURIComponent(id))!.sessionId, 'py42');
  });

  it('does not touch an SSE stream whose first event is not the endpoint event', async () => {
    const body = 'event: message\ndata: {"jsonrpc":"2.0","result":{},"id":1}\n\n';
    const rewriter = new EndpointEventRewriter(() => 'never');
    assert.equal(await text(Readable.from([body]).pipe(rewriter)), body);
    assert.equal(rewriter.bound, false);
  });

  it('passes a first event that never ends through unchanged after a bounded wait', async () => {
    const big = `data: ${'x'.repeat(20_000)}`;
    assert.equal(await text(Readable.from([big]).pipe(new EndpointEventRewriter(() => 'never'))), big);
  });
});

describe('routeSession (the way out)', () => {
  const token = tokens.wrap({ address: OWNER, sessionId: 'abc' });

  it('pins a request with a token in Mcp-Session-Id and restores the app\'s id', () => {
    const route = routeSession(tokens, { headers: [{ name: 'mcp-session-id', value: token }, { name: 'accept', value: '*/*' }], path: '/mcp' });
    assert.equal(route.kind, 'pinned');
    if (route.kind !== 'pinned') return;
    assert.equal(route.owner.address, OWNER);
    assert.deepEqual(route.headers, [{ name: 'mcp-session-id', value: 'abc' }, { name: 'accept', value: '*/*' }]);
    assert.equal(route.path, '/mcp');
  });

  it('pins a POST whose query carries the token, keeping the rest of the path exactly', () => {
    const route = routeSession(tokens, { headers: [], path: `/messages?a=%2F&sessionId=${encodeURIComponent(token)}&b=1` });
    assert.equal(route.kind, 'pinned');
    if (route.kind === 'pinned') assert.equal(route.path, '/messages?a=%2F&sessionId=abc&b=1');
  });

  it('refuses a forged token and passes plain session ids and stateless calls to normal balancing', () => {
    const forged = token.replace(/\.[^.]+$/, '.AAAAAAAAAAAAAAAAAAAAAA');
    assert.equal(routeSession(tokens, { headers: [{ name: 'mcp-session-id', value: forged }], path: '/mcp' }).kind, 'invalid');
    assert.equal(routeSession(tokens, { headers: [{ name: 'mcp-session-id', value: 'plain' }], path: '/mcp' }).kind, 'none');
    assert.equal(routeSession(tokens, { headers: [{ name: 'mcp-method', value: 'tools/call' }], path: '/mcp' }).kind, 'none');
  });

  it('refuses header and query tokens that name different owners', () => {
    const other = tokens.wrap({ address: '127.0.0.1:26002', sessionId: 'abc' });
    assert.equal(routeSession(tokens, { headers: [{ name: 'mcp-session-id', value: token }], path: `/m?sessionId=${other}` }).kind, 'invalid');
  });
});
