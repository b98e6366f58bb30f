// Owner tokens: an MCP session id wrapped with the address of the replica that owns the session,
// signed with HMAC-SHA256 under a key every sidecar of the mesh shares. Any sidecar holding the key
// can route the session (no shared store); nobody without it can forge or alter one, so a client
// cannot steer itself to a replica of its choosing.
//
//   mm1.<base64url(owner address)>.<base64url(session id)>.<base64url(first 16 bytes of the HMAC)>
//
// Every character is URL- and header-safe, so the token can stand wherever the session id stood
// (the Mcp-Session-Id header, a sessionId query parameter).
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

const PREFIX = 'mm1.';
const MAC_BYTES = 16;

export interface SessionOwner {
  /** The owner's endpoint address (its sidecar's inbound address, as discovery lists it). */
  address: string;
  /** The session id the app made, which the app must get back unchanged. */
  sessionId: string;
}

export class OwnerTokens {
  // A KeyObject, not the raw bytes: with bytes, every HMAC imports the key anew (about 6× the cost).
  readonly #key: KeyObject;

  constructor(key: string | Buffer) {
    this.#key = createSecretKey(Buffer.isBuffer(key) ? key : Buffer.from(key, 'utf8'));
  }

  wrap(owner: SessionOwner): string {
    const body = `${PREFIX}${b64(owner.address)}.${b64(owner.sessionId)}`;
    return `${body}.${this.#mac(body).toString('base64url')}`;
  }

  /** Whether a value is meant to be a token (it may still be forged or damaged). */
  static looksLikeToken(value: string): boolean {
    return value.startsWith(PREFIX);
  }

  /** The owner a token names, or undefined when it is malformed or its signature does not match. */
  unwrap(token: string): SessionOwner | undefined {
    if (!token.startsWith(PREFIX)) return undefined;
    const parts = token.slice(PREFIX.length).split('.');
    if (parts.length !== 3) return undefined;
    const [address, sessionId, mac] = parts as [string, string, string];
    // Compare the text, not decoded bytes: base64url decoding ignores the spare bits of the last
    // character, so a token with that character changed would otherwise still verify.
    const given = Buffer.from(mac, 'utf8');
    const expected = Buffer.from(this.#mac(`${PREFIX}${address}.${sessionId}`).toString('base64url'), 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    return { address: Buffer.from(address, 'base64url').toString('utf8'), sessionId: Buffer.from(sessionId, 'base64url').toString('utf8') };
  }

  #mac(body: string): Buffer {
    return createHmac('sha256', this.#key).update(body).digest().subarray(0, MAC_BYTES);
  }
}

function b64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
