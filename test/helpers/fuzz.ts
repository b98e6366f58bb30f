// Seeded, reproducible fuzzing pieces: a small PRNG (mulberry32), byte mutators for protobuf messages
// (bit flips, truncation, insertion, deletion, length-field corruption, duplicated fields) and valid
// MCP batches and frames to mutate. Every failure message should quote the seed and the case's bytes.
import { Compression, encodeBatch, encodeFrame, MessageType, Priority, type Envelope, type Frame } from '../../sidecar/src/mcp/codec.ts';
import { compressPayload } from '../../sidecar/src/mcp/compression.ts';
import { seededRandom } from '../unit/balancer/seeded-random.ts';

/** Numbers from mulberry32 (shared with the balancer tests): 32-bit state, good enough for test inputs, identical on every platform. */
export class Rng {
  readonly seed: number;
  readonly #next: () => number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#next = seededRandom(this.seed);
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }

  chance(p: number): boolean {
    return this.#next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  text(max: number): string {
    const alphabet = Array.from('abcdefghijklmnopqrstuvwxyz0123456789-._/:é\u0000\u00ff\u{1f600}');
    let s = '';
    const n = this.int(max + 1);
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** The seed for a fuzz run: FUZZ_SEED from the environment when set (to replay), else a fixed default. */
export function fuzzSeed(fallback: number): number {
  const fromEnv = process.env.FUZZ_SEED;
  return fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : fallback;
}

export function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A length-delimited field's length prefix: where it sits, its size in bytes and the length it says. */
interface LengthPrefix { at: number; size: number; length: number }

/** Where the length prefixes of length-delimited fields sit, at any depth (nested messages parsed when they parse). */
export function lengthPrefixes(bytes: Buffer, base = 0, depth = 0, out: LengthPrefix[] = []): LengthPrefix[] {
  let pos = 0;
  const readVarint = (): number | undefined => {
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= bytes.length) return undefined;
      const b = bytes[pos++]!;
      result += (b & 0x7f) * shift;
      if ((b & 0x80) === 0) return result;
      shift *= 128;
    }
    return undefined;
  };
  while (pos < bytes.length) {
    const tag = readVarint();
    if (tag === undefined || tag === 0) return out;
    const wire = tag % 8;
    if (wire === 0) { if (readVarint() === undefined) return out; }
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const at = pos;
      const length = readVarint();
      if (length === undefined || pos + length > bytes.length) return out;
      out.push({ at: base + at, size: pos - at, length });
      if (depth < 4 && length > 0) lengthPrefixes(bytes.subarray(pos, pos + length), base + pos, depth + 1, out);
      pos += length;
    } else return out;
  }
  return out;
}

export const MUTATIONS = ['bitflip', 'truncate', 'insert', 'delete', 'length', 'huge-length', 'duplicate', 'overwrite', 'splice-random'] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** One mutation of `input` (a new buffer; the input is left alone). */
export function mutate(rng: Rng, input: Buffer, kind: Mutation = rng.pick(MUTATIONS)): Buffer {
  const bytes = Buffer.from(input);
  const n = bytes.length;
  switch (kind) {
    case 'bitflip': {
      if (n === 0) return rng.bytes(1);
      const flips = 1 + rng.int(4);
      for (let i = 0; i < flips; i++) bytes[rng.int(n)]! ^= 1 << rng.int(8);
      return bytes;
    }
    case 'truncate':
      return bytes.subarray(0, rng.int(n + 1));
    case 'insert': {
      const at = rng.int(n + 1);
      return Buffer.concat([bytes.subarray(0, at), rng.bytes(1 + rng.int(8)), bytes.subarray(at)]);
    }
    case 'delete': {
      if (n === 0) return bytes;
      const at = rng.int(n);
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + rng.int(Math.min(8, n - at)))]);
    }
    case 'length':
    case 'huge-length': {
      const prefixes = lengthPrefixes(bytes);
      if (prefixes.length === 0) return mutate(rng, input, 'bitflip');
      const { at, size } = rng.pick(prefixes);
      // A length a little off, or one claiming up to 2 GiB / 4 GiB (must not be allocated).
      const claimed = kind === 'huge-length'
        ? rng.pick([0x7fffffff, 0x80000000, 0xffffffff, 2 ** 35, 16 * 1024 * 1024 + 1])
        : Math.max(0, bytes.readUIntLE(at, 1) % 128 + rng.int(9) - 4);
      return Buffer.concat([bytes.subarray(0, at), varint(claimed), bytes.subarray(at + size)]);
    }
    case 'duplicate': {
      // Repeat a whole length-delimited field (a duplicated envelope, header, head...), or a random slice.
      const prefixes = lengthPrefixes(bytes);
      if (prefixes.length > 0 && rng.chance(0.7)) {
        const { at, size, length } = rng.pick(prefixes);
        // The field starts at its tag, one byte before the length for field numbers < 16.
        const start = Math.max(0, at - 1);
        const end = Math.min(n, at + size + length);
        const field = bytes.subarray(start, end);
        return Buffer.concat([bytes.subarray(0, end), field, bytes.subarray(end)]);
      }
      if (n === 0) return bytes;
      const start = rng.int(n);
      const end = start + rng.int(n - start + 1);
      return Buffer.concat([bytes.subarray(0, end), bytes.subarray(start, end), bytes.subarray(end)]);
    }
    case 'overwrite': {
      if (n === 0) return rng.bytes(1);
      const at = rng.int(n);
      const patch = rng.bytes(1 + rng.int(Math.min(6, n - at)));
      patch.copy(bytes, at);
      return bytes;
    }
    case 'splice-random': {
      const at = rng.int(n + 1);
      return Buffer.concat([bytes.subarray(0, at), rng.bytes(rng.int(32))]);
    }
  }
}

/** Several mutations in a row (1 to `max`). */
export function mutateMany(rng: Rng, input: Buffer, max = 3): Buffer {
  let out = input;
  const count = 1 + rng.int(max);
  for (let i = 0; i < count; i++) out = mutate(rng, out);
  return out;
}

const ALL_TYPES = Object.values(MessageType);

/** A valid envelope of `type`, with a random selection of the optional fields. */
export function sampleEnvelope(rng: Rng, type: MessageType = rng.pick(ALL_TYPES)): Envelope {
  const envelope: Envelope = { id: `01J${rng.text(23)}`, type, timestampMs: 1_700_000_000_000 + rng.int(1e9), priority: rng.pick([Priority.MEDIUM, Priority.HIGH, Priority.LOW]) };
  if (rng.chance(0.5)) envelope.source = 'orders.default';
  if (rng.chance(0.5)) envelope.destination = 'payments.shop';
  if (rng.chance(0.5)) envelope.correlationId = `01J${rng.text(10)}`;
  if (rng.chance(0.3)) envelope.deadlineMs = rng.int(60_000);
  if (rng.chance(0.3)) envelope.trace = { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, tracestate: rng.text(8) };
  if (rng.chance(0.6)) envelope.headers = Array.from({ length: rng.int(5) }, () => ({ name: rng.text(10), value: rng.text(20) }));
  if (rng.chance(0.6)) {
    const payload = Buffer.from(rng.text(200).repeat(1 + rng.int(5)));
    const compression = rng.pick([Compression.IDENTITY, Compression.GZIP, Compression.LZ4]);
    Object.assign(envelope, compressPayload(payload, compression, 0));
  }
  if (type === MessageType.REQUEST || type === MessageType.RESPONSE || rng.chance(0.1)) {
    envelope.http = { method: 'POST', path: `/${rng.text(12)}`, authority: 'payments', status: type === MessageType.RESPONSE ? 200 : 0, bodyStreamId: rng.chance(0.2) ? rng.text(8) : '', bodyFollows: rng.chance(0.3) };
  }
  if (type === MessageType.HELLO || rng.chance(0.05)) envelope.hello = { major: 1, minor: rng.int(3), capabilities: ['batch', 'gzip', 'lz4'].slice(0, rng.int(4)), node: rng.text(6) };
  if (type === MessageType.ERROR || rng.chance(0.05)) envelope.error = { code: 'PROTOCOL_ERROR', message: rng.text(30) };
  if (rng.chance(0.2)) { envelope.messageId = rng.text(10); envelope.attempt = 1 + rng.int(5); }
  if (rng.chance(0.1)) envelope.topic = rng.text(8);
  if (rng.chance(0.3)) { envelope.acceptCompression = rng.pick([Compression.GZIP, Compression.LZ4]); envelope.compressMinBytes = rng.int(2048); }
  return envelope;
}

export function sampleBatch(rng: Rng): Buffer {
  return encodeBatch({ envelopes: Array.from({ length: 1 + rng.int(4) }, () => sampleEnvelope(rng)) });
}

export function sampleFrameValue(rng: Rng): Frame {
  switch (rng.int(4)) {
    case 0: return { head: sampleEnvelope(rng, rng.pick([MessageType.REQUEST, MessageType.RESPONSE])) };
    case 1: return { data: rng.bytes(rng.int(64)) };
    case 2: return { end: { trailers: Array.from({ length: rng.int(3) }, () => ({ name: rng.text(8), value: rng.text(8) })) } };
    default: return { error: { code: 'APP_RESET', message: rng.text(20) } };
  }
}

export function sampleFrame(rng: Rng): Buffer {
  return encodeFrame(sampleFrameValue(rng));
}

/** A fuzz input: random bytes (a fifth of the time) or a mutated valid message from `sample`. */
export function fuzzInput(rng: Rng, sample: (rng: Rng) => Buffer): Buffer {
  if (rng.chance(0.2)) return rng.bytes(rng.int(64));
  return mutateMany(rng, sample(rng));
}
