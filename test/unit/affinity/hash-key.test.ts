import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cookieValue, hashKey, headerValue, queryParameter, type HashKeyRequest } from '../../../sidecar/src/affinity/hash-key.ts';
import type { HashSource } from '../../../sidecar/src/policy/types.ts';

const request = (headers: [string, string][], path = '/', source?: string): HashKeyRequest =>
  ({ headers: headers.map(([name, value]) => ({ name, value })), path, source });

const CHAIN: HashSource[] = [{ header: 'x-user' }, { query: 'tenant' }, { cookie: 'session' }, { source: true }];

describe('hashKey: the first source in hashOn with a value', () => {
  it('takes the sources in the order the policy lists them', () => {
    const full = request([['x-user', 'u1'], ['cookie', 'session=s1']], '/chat?tenant=t1', 'pod-a');
    assert.equal(hashKey(CHAIN, full), 'u1');
    assert.equal(hashKey(CHAIN.slice(1), full), 't1');
    assert.equal(hashKey(CHAIN.slice(2), full), 's1');
    assert.equal(hashKey(CHAIN.slice(3), full), 'pod-a');
    assert.equal(hashKey([{ source: true }, { header: 'x-user' }], full), 'pod-a', 'order is the list\'s, not a fixed one');
  });

  it('falls through missing sources to the next', () => {
    assert.equal(hashKey(CHAIN, request([['cookie', 'session=s1']], '/chat?other=1', 'pod-a')), 's1');
    assert.equal(hashKey(CHAIN, request([], '/chat?tenant=t1', 'pod-a')), 't1');
    assert.equal(hashKey(CHAIN, request([['cookie', 'theme=dark']], '/chat', 'pod-a')), 'pod-a');
  });

  it('treats an empty value as missing', () => {
    const empties = request([['x-user', ''], ['cookie', 'session=']], '/chat?tenant=', 'pod-a');
    assert.equal(hashKey(CHAIN, empties), 'pod-a');
    assert.equal(hashKey(CHAIN, request([['x-user', '']], '/', '')), undefined);
  });

  it('is undefined when no source has a value, or none is listed', () => {
    assert.equal(hashKey(CHAIN.slice(0, 3), request([], '/', 'pod-a')), undefined);
    assert.equal(hashKey(CHAIN, request([], '/')), undefined, 'no caller identity known');
    assert.equal(hashKey([], request([['x-user', 'u1']], '/', 'pod-a')), undefined);
  });
});

describe('headerValue', () => {
  it('joins repeated headers with ", " (RFC 9110 combination) and ignores other names', () => {
    const headers = request([['x-user', 'a'], ['x-other', 'z'], ['x-user', 'b']]).headers;
    assert.equal(headerValue(headers, 'x-user'), 'a, b');
    assert.equal(headerValue(headers, 'x-use'), undefined);
  });
});

describe('queryParameter', () => {
  it('decodes the value and takes the first of repeated parameters', () => {
    assert.equal(queryParameter('/p?tenant=a%2Fb&tenant=c', 'tenant'), 'a/b');
    assert.equal(queryParameter('/p?q=one+two', 'q'), 'one two');
  });

  it('matches whole names only, and finds nothing without a query string', () => {
    assert.equal(queryParameter('/p?tenantx=1&xtenant=2', 'tenant'), undefined);
    assert.equal(queryParameter('/p', 'tenant'), undefined);
    assert.equal(queryParameter('/p?tenant', 'tenant'), '', 'a bare name has an empty value');
  });

  it('keeps a malformed escape as written instead of failing', () => {
    assert.equal(queryParameter('/p?k=100%', 'k'), '100%');
  });
});

describe('cookieValue', () => {
  it('finds a cookie among several, in any Cookie header', () => {
    const headers = request([['cookie', 'theme=dark;  session=abc ; lang=en'], ['cookie', 'user=u9']]).headers;
    assert.equal(cookieValue(headers, 'session'), 'abc');
    assert.equal(cookieValue(headers, 'user'), 'u9');
    assert.equal(cookieValue(headers, 'missing'), undefined);
  });

  it('matches whole names, keeps "=" inside values and drops the quotes around a value', () => {
    const headers = request([['cookie', 'session_id=x; sid="q=1"; session=tok==']]).headers;
    assert.equal(cookieValue(headers, 'session'), 'tok==');
    assert.equal(cookieValue(headers, 'sid'), 'q=1');
  });

  it('reads only Cookie headers', () => {
    assert.equal(cookieValue(request([['set-cookie', 'session=abc']]).headers, 'session'), undefined);
  });
});
