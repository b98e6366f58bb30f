import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OwnerTokens } from '../../../sidecar/src/affinity/token.ts';

const KEY = 'k'.repeat(32);

describe('OwnerTokens', () => {
  const tokens = new OwnerTokens(KEY);

  it('round-trips owner and session id, with only URL- and header-safe characters', () => {
    const token = tokens.wrap({ address: '10.0.0.7:15002', sessionId: 'a1b2-c3/d4=é' });
    assert.match(token, /^mm1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(tokens.unwrap(token), { address: '10.0.0.7:15002', sessionId: 'a1b2-c3/d4=é' });
  });

  it('a sidecar with the same key verifies it; one with another key does not', () => {
    const token = tokens.wrap({ address: 'a:1', sessionId: 's' });
    assert.deepEqual(new OwnerTokens(KEY).unwrap(token), { address: 'a:1', sessionId: 's' });
    assert.equal(new OwnerTokens('x'.repeat(32)).unwrap(token), undefined);
  });

  it('refuses a tampered owner, session id or signature, and malformed tokens', () => {
    const token = tokens.wrap({ address: 'a:1', sessionId: 's' });
    const [prefix, , session, mac] = token.split('.');
    const forgedOwner = [prefix, Buffer.from('b:2').toString('base64url'), session, mac].join('.');
    assert.equal(tokens.unwrap(forgedOwner), undefined, 'steering to another replica is refused');
    const forgedSession = [prefix, token.split('.')[1], Buffer.from('t').toString('base64url'), mac].join('.');
    assert.equal(tokens.unwrap(forgedSession), undefined);
    assert.equal(tokens.unwrap(`${token.slice(0, -2)}AA`), undefined);
    // Every other last character must fail too (its spare bits are ignored by base64url decoding).
    const last = token.at(-1)!;
    for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') {
      if (c !== last) assert.equal(tokens.unwrap(`${token.slice(0, -1)}${c}`), undefined, `last character ${last} → ${c}`);
    }
    for (const bad of ['mm1.', 'mm1.a.b', 'mm1.a.b.c.d', 'plain-session-id', '']) assert.equal(tokens.unwrap(bad), undefined, bad);
  });

  it('tells a token from a plain session id', () => {
    assert.equal(OwnerTokens.looksLikeToken(tokens.wrap({ address: 'a:1', sessionId: 's' })), true);
    assert.equal(OwnerTokens.looksLikeToken('6f1c2d0e-session'), false);
  });
});
