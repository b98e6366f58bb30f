import { randomBytes } from 'node:crypto';
import { monotonicFactory } from 'ulidx';

// ULIDs: 128-bit, lexicographically sortable by creation time, monotonic within one millisecond.
// Their random part is drawn one character at a time; asking the OS for each (ulidx's default,
// crypto.getRandomValues per character) showed up in sidecar profiles, so the bytes come from a
// pool refilled 4 KiB at a time. One byte → one of 32 characters: 256 is a multiple of 32, so
// every character stays equally likely.
const POOL_BYTES = 4096;
let pool = randomBytes(POOL_BYTES);
let next = 0;

function pooledRandom(): number {
  if (next === POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    next = 0;
  }
  return pool[next++]! / 256;
}

const nextUlid = monotonicFactory(pooledRandom);

export function newMessageId(): string {
  return nextUlid();
}
