import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  endToEndRawResponseHeaders, endToEndRequestHeaders, endToEndResponseHeaders, headerValue, SOURCE_HEADER, toFlat, peerHeadersForApp,
} from '../../../sidecar/src/http/headers.ts';

/** [name, value, name, value…] as Node's req.rawHeaders gives them. */
const raw = (...pairs: [string, string][]) => pairs.flat();

describe('endToEndRequestHeaders', () => {
  it('drops every hop-by-hop header (RFC 9110 §7.6.1), whatever the case', () => {
    const headers = endToEndRequestHeaders(raw(
      ['Connection', 'keep-alive'], ['Keep-Alive', 'timeout=5'], ['Proxy-Connection', 'keep-alive'],
      ['Proxy-Authorization', 'Basic eA=='], ['Proxy-Authenticate', 'Basic'], ['TE', 'trailers'],
      ['Trailer', 'x-checksum'], ['Transfer-Encoding', 'chunked'], ['Upgrade', 'websocket'],
      ['Expect', '100-continue'], ['HTTP2-Settings', 'AAMAAABkAAQAoAAAAAIAAAAA'],
      ['Accept', 'application/json'],
    ));
    assert.deepEqual(headers, [{ name: 'accept', value: 'application/json' }]);
  });

  it('drops headers named in Connection (several Connection lines, any case, with spaces)', () => {
    const headers = endToEndRequestHeaders(raw(
      ['X-Keep', '1'], ['Connection', 'close, X-Drop-One'], ['x-drop-one', 'a'], ['connection', ' x-DROP-two '],
      ['X-Drop-Two', 'b'], ['X-Keep', '2'],
    ));
    assert.deepEqual(headers, [{ name: 'x-keep', value: '1' }, { name: 'x-keep', value: '2' }]);
  });

  it('drops host and the mesh control headers the app must not set', () => {
    const headers = endToEndRequestHeaders(raw(
      ['Host', 'payments'], [SOURCE_HEADER, 'spoofed'], ['MCP-Mesh-Source', 'spoofed'], ['mcp-mesh-timeout', '1s'],
      ['mcp-mesh-error', 'UNKNOWN_SERVICE'], ['Content-Type', 'text/plain'],
    ));
    assert.deepEqual(headers, [{ name: 'content-type', value: 'text/plain' }]);
  });

  it('keeps end-to-end headers in order, repeats included, names lower-cased and values untouched', () => {
    const headers = endToEndRequestHeaders(raw(
      ['Cookie', 'a=1'], ['X-Multi', 'one'], ['Authorization', 'Bearer abc'], ['x-multi', 'two'],
      ['Content-Length', '5'], ['X-Latin1', 'caf\u00e9'], ['traceparent', '00-abc-def-01'],
    ));
    assert.deepEqual(headers, [
      { name: 'cookie', value: 'a=1' }, { name: 'x-multi', value: 'one' }, { name: 'authorization', value: 'Bearer abc' },
      { name: 'x-multi', value: 'two' }, { name: 'content-length', value: '5' }, { name: 'x-latin1', value: 'caf\u00e9' },
      { name: 'traceparent', value: '00-abc-def-01' },
    ]);
  });

  it('returns nothing for no headers', () => {
    assert.deepEqual(endToEndRequestHeaders([]), []);
  });
});

describe('endToEndResponseHeaders', () => {
  it('expands repeated headers (set-cookie arrays) in order', () => {
    const headers = endToEndResponseHeaders({
      'content-type': 'text/html',
      'set-cookie': ['a=1; Path=/', 'b=2; HttpOnly', 'c=3'],
      vary: 'accept',
    });
    assert.deepEqual(headers, [
      { name: 'content-type', value: 'text/html' },
      { name: 'set-cookie', value: 'a=1; Path=/' },
      { name: 'set-cookie', value: 'b=2; HttpOnly' },
      { name: 'set-cookie', value: 'c=3' },
      { name: 'vary', value: 'accept' },
    ]);
  });

  it('drops hop-by-hop headers, names listed in Connection (string or array) and undefined values', () => {
    assert.deepEqual(endToEndResponseHeaders({
      connection: 'keep-alive, X-Internal',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      upgrade: 'h2c',
      trailer: 'x-sum',
      'x-internal': 'secret',
      'x-gone': undefined,
      etag: '"1"',
    }), [{ name: 'etag', value: '"1"' }]);
    assert.deepEqual(endToEndResponseHeaders({ connection: ['close', 'x-a'], 'x-a': '1', 'x-b': '2' }), [{ name: 'x-b', value: '2' }]);
  });

  it('drops mesh control headers the app sent, so an app error cannot pass for a mesh error', () => {
    const headers = endToEndResponseHeaders({ 'mcp-mesh-error': 'UNKNOWN_SERVICE', 'mcp-mesh-source': 'x', 'content-type': 'application/json' });
    assert.deepEqual(headers, [{ name: 'content-type', value: 'application/json' }]);
  });
});

describe('toFlat and headerValue', () => {
  it('flattens a header list and its extras in order', () => {
    assert.deepEqual(toFlat([{ name: 'a', value: '1' }, { name: 'set-cookie', value: 'x' }, { name: 'set-cookie', value: 'y' }], [{ name: SOURCE_HEADER, value: 'orders' }]),
      ['a', '1', 'set-cookie', 'x', 'set-cookie', 'y', SOURCE_HEADER, 'orders']);
    assert.deepEqual(toFlat(undefined), []);
    assert.deepEqual(toFlat(undefined, [{ name: 'b', value: '2' }]), ['b', '2']);
  });

  it('round-trips through endToEndRequestHeaders (rawHeaders → list → flat)', () => {
    const rawHeaders = raw(['accept', '*/*'], ['x-a', '1'], ['x-a', '2']);
    assert.deepEqual(toFlat(endToEndRequestHeaders(rawHeaders)), rawHeaders);
  });

  it('headerValue finds the first value of a name', () => {
    const headers = [{ name: 'x-a', value: '1' }, { name: 'x-a', value: '2' }];
    assert.equal(headerValue(headers, 'x-a'), '1');
    assert.equal(headerValue(headers, 'x-b'), undefined);
    assert.equal(headerValue(undefined, 'x-a'), undefined);
  });
});

describe('peerHeadersForApp', () => {
  it('drops hop-by-hop, Host and mesh control headers from a peer whatever their case, then adds the extras', () => {
    const flat = peerHeadersForApp([
      { name: 'X-Keep', value: 'a' },
      { name: 'Connection', value: 'close' },
      { name: 'HOST', value: 'evil' },
      { name: 'MCP-Mesh-Source', value: 'spoofed' },
      { name: 'transfer-encoding', value: 'chunked' },
      { name: 'accept', value: '*/*' },
    ], [{ name: 'host', value: 'payments' }, { name: 'mcp-mesh-source', value: 'orders' }]);
    assert.deepEqual(flat, ['x-keep', 'a', 'accept', '*/*', 'host', 'payments', 'mcp-mesh-source', 'orders']);
  });

  it('with dropTrace, the caller\'s trace context gives way to the one in the extras', () => {
    const peer = [{ name: 'traceparent', value: 'caller' }, { name: 'tracestate', value: 'a=1' }, { name: 'x-keep', value: 'a' }];
    const ours = [{ name: 'traceparent', value: 'ours' }];
    assert.deepEqual(peerHeadersForApp(peer, ours, true), ['x-keep', 'a', 'traceparent', 'ours']);
    assert.deepEqual(peerHeadersForApp(peer, []), ['traceparent', 'caller', 'tracestate', 'a=1', 'x-keep', 'a'], 'kept when this hop does not trace');
  });
});

describe('endToEndRawResponseHeaders', () => {
  it('keeps end-to-end headers in wire order, names lower-cased, values as latin-1, repeats as they came', () => {
    const raw = ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Connection', 'keep-alive, X-Hop', 'X-Hop', 'gone',
      'Transfer-Encoding', 'chunked', 'mcp-mesh-error', 'FAKE', 'X-Name', 'caf\u00e9', 'set-cookie', 'b=2'].map((v) => Buffer.from(v, 'latin1'));
    assert.deepEqual(endToEndRawResponseHeaders(raw), [
      { name: 'content-type', value: 'text/plain' },
      { name: 'set-cookie', value: 'a=1' },
      { name: 'x-name', value: 'caf\u00e9' },
      { name: 'set-cookie', value: 'b=2' },
    ]);
  });
});
