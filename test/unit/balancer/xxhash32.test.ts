import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { xxhash32, xxhash32String } from '../../../sidecar/src/balancer/xxhash32.ts';

// Expected values from the reference implementation (libxxhash 0.8.1, XXH32), covering the three
// code paths: under 16 bytes (no stripes), 16-byte stripes, and a tail of whole words and bytes.
const REFERENCE: [input: string, seed: number, hash: number][] = [
  ['', 0, 0x02cc5d05],
  ['a', 0, 0x550d7456],
  ['abc', 0, 0x32d153ff],
  ['abc', 0x9e3779b1, 0xa1ae7709],
  ['0123456789abcdef', 0, 0xc2c45b69],
  ['10.0.0.1:15002', 0, 0x298a3b28],
  ['Nobody inspects the spammish repetition', 0, 0xe2293b2f],
  ['h\u00e9llo \u4e16\u754c', 0, 0xfdcd5b77],
];

describe('xxhash32', () => {
  for (const [input, seed, hash] of REFERENCE) {
    it(`"${input}" (seed ${seed}) → ${hash.toString(16)}, as the reference library`, () => {
      assert.equal(xxhash32String(input, seed), hash);
    });
  }

  it('hashes bytes: 101 bytes 0…100 with seed 7, and only the first `length` of a buffer', () => {
    const bytes = Uint8Array.from({ length: 120 }, (_, i) => i);
    assert.equal(xxhash32(bytes, 101, 7), 0x1bdcb693);
    assert.equal(xxhash32(new TextEncoder().encode('abcdef'), 3), 0x32d153ff);
  });

  it('hashes a string longer than its scratch buffer the same as its bytes', () => {
    const long = 'k'.repeat(5000);
    assert.equal(xxhash32String(long), xxhash32(new TextEncoder().encode(long)));
  });
});
