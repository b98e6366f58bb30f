// xxHash32 (Yann Collet), written from the published specification
// (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md, "XXH32 algorithm description").
// The consistent-hash ring needs a fast, well-mixed, non-cryptographic hash that every sidecar
// computes identically: keys must land on the same endpoint whichever sidecar places them. xxHash is
// what Envoy's ring hash uses too (its 64-bit variant); 32 bits are plenty for ring positions, and
// in JavaScript they stay in exact integer arithmetic (Math.imul) with no BigInt.
// The unit test checks the output against the reference library's values.

const PRIME1 = 0x9e3779b1;
const PRIME2 = 0x85ebca77;
const PRIME3 = 0xc2b2ae3d;
const PRIME4 = 0x27d4eb2f;
const PRIME5 = 0x165667b1;

const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));

/** Little-endian 32-bit word at `i`. */
const word = (b: Uint8Array, i: number) => (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;

/** One accumulator step over a 4-byte lane of a 16-byte stripe. */
const round = (acc: number, lane: number) => Math.imul(rotl((acc + Math.imul(lane, PRIME2)) | 0, 13), PRIME1);

/** XXH32 of the first `length` bytes of `bytes`, as an unsigned 32-bit integer. */
export function xxhash32(bytes: Uint8Array, length: number = bytes.length, seed = 0): number {
  let i = 0;
  let acc: number;
  if (length >= 16) {
    let v1 = (seed + PRIME1 + PRIME2) | 0;
    let v2 = (seed + PRIME2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - PRIME1) | 0;
    for (const last = length - 16; i <= last; i += 16) {
      v1 = round(v1, word(bytes, i));
      v2 = round(v2, word(bytes, i + 4));
      v3 = round(v3, word(bytes, i + 8));
      v4 = round(v4, word(bytes, i + 12));
    }
    acc = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    acc = (seed + PRIME5) | 0;
  }
  acc = (acc + length) | 0;
  for (; i + 4 <= length; i += 4) acc = Math.imul(rotl((acc + Math.imul(word(bytes, i), PRIME3)) | 0, 17), PRIME4);
  for (; i < length; i++) acc = Math.imul(rotl((acc + Math.imul(bytes[i]!, PRIME5)) | 0, 11), PRIME1);
  // Avalanche: every input bit affects every output bit.
  acc ^= acc >>> 15;
  acc = Math.imul(acc, PRIME2);
  acc ^= acc >>> 13;
  acc = Math.imul(acc, PRIME3);
  acc ^= acc >>> 16;
  return acc >>> 0;
}

const encoder = new TextEncoder();
/** Reused for short strings so that hashing a key allocates nothing; grown when a longer one comes. */
let scratch = new Uint8Array(256);

/** XXH32 of a string's UTF-8 bytes. */
export function xxhash32String(text: string, seed = 0): number {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  if (text.length * 3 > scratch.length) scratch = new Uint8Array(text.length * 3);
  const { written } = encoder.encodeInto(text, scratch);
  return xxhash32(scratch, written, seed);
}
