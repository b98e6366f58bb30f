import { randomBytes } from 'node:crypto';

// ULIDs: 128-bit, lexicographically sortable by creation time, monotonic within one millisecond
// (https://github.com/ulid/spec): 10 Crockford base-32 characters of Unix time in ms, then 16 of
// randomness. Every envelope gets one, so they are made here with as little work as the format
// allows: the time part is encoded once per millisecond; within a millisecond the random part is
// incremented by one (as the spec's monotonic mode asks), which changes its last character and
// rarely more. Random bytes come from a pool refilled 4 KiB at a time (one OS call per 256 ids);
// one byte → one of 32 characters: 256 is a multiple of 32, so every character stays equally likely.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const RANDOM_CHARS = 16;
const POOL_BYTES = 4096;
let pool = randomBytes(POOL_BYTES);
let next = 0;

/** The random part as digits 0…31, and as text: all but the last character, which changes most. */
const digits = new Uint8Array(RANDOM_CHARS);
let lastTime = -1;
let head = ''; // time part + random characters but the last

function draw(): void {
  if (next + RANDOM_CHARS > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    next = 0;
  }
  for (let i = 0; i < RANDOM_CHARS; i++) digits[i] = pool[next++]! & 31;
}

function encodeTime(ms: number): string {
  let out = '';
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32]! + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

function setHead(): void {
  let random = '';
  for (let i = 0; i < RANDOM_CHARS - 1; i++) random += ALPHABET[digits[i]!]!;
  head = encodeTime(lastTime) + random;
}

/** Add one to the random part; on the (astronomically rare) overflow, move on to the next millisecond. */
function increment(): void {
  for (let i = RANDOM_CHARS - 1; i >= 0; i--) {
    if (digits[i]! < 31) {
      digits[i]!++;
      if (i < RANDOM_CHARS - 1) setHead();
      return;
    }
    digits[i] = 0;
  }
  lastTime++;
  draw();
  setHead();
}

export function newMessageId(): string {
  const now = Date.now();
  if (now > lastTime) {
    lastTime = now;
    draw();
    setHead();
  } else {
    increment(); // same millisecond (or the clock stepped back): keep order
  }
  return head + ALPHABET[digits[RANDOM_CHARS - 1]!]!;
}

/**
 * The id of a parked response body: 128 bits from the OS's CSPRNG, base64url (22 characters). Unlike
 * a ULID it says nothing about when it was made and has no neighbours to guess: it is the handle a
 * caller pulls the body with (inbound/app-forwarder.ts binds it to that caller as well).
 */
export function newBodyStreamId(): string {
  return randomBytes(16).toString('base64url');
}
