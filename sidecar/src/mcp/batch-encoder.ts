// The Batch encoder of the Link, written out by hand. protobufjs's generated encoder records every
// field write as an operation object before copying it out, dozens per envelope: on the path of
// every call that was the largest single source of garbage. This one measures the batch first (one
// pass that notes each length it will need), then writes into one Buffer of exactly that size.
//
// It writes what protobufjs writes, byte for byte (test/unit/mcp/codec.test.ts compares them): fields
// in field-number order; a scalar or message when it is set (not null or undefined, and an own
// property, so decoded messages' prototype defaults are not written), a zero value included; a
// repeated field when non-empty. Field numbers are those of mcp.proto; decoding stays protobufjs's.
import type { Batch, Envelope, Header } from './codec.ts';

/** Lengths noted by the measuring pass, read back in the same order by the writing pass. */
const lengths: number[] = [];
let cursor = 0;

export function encodeBatch(batch: Batch): Buffer {
  lengths.length = 0;
  let size = 0;
  const envelopes = batch.envelopes;
  if (envelopes != null) {
    for (let i = 0; i < envelopes.length; i++) size += 1 + measured(measureEnvelope, envelopes[i]!);
  }
  const buf = Buffer.allocUnsafe(size);
  cursor = 0;
  let pos = 0;
  if (envelopes != null) {
    for (let i = 0; i < envelopes.length; i++) {
      buf[pos++] = 0x0a; // field 1, length-delimited
      pos = writeEnvelope(buf, writeVarint(buf, pos, lengths[cursor++]!), envelopes[i]!);
    }
  }
  return buf;
}

// ---- measuring ----

/** Note the length of a message (before those noted inside it) and return it with its length prefix. */
function measured<T>(measure: (value: T) => number, value: T): number {
  const slot = lengths.length;
  lengths.push(0);
  const length = measure(value);
  lengths[slot] = length;
  return varintSize(length) + length;
}

/** A string's UTF-8 length, noted; returns it with its length prefix. */
function measureString(value: string): number {
  const length = value.length < SHORT ? utf8Length(value) : Buffer.byteLength(value);
  lengths.push(length);
  return varintSize(length) + length;
}

/** Below this many characters a string is measured and copied in JS: cheaper than a call into Node's. */
const SHORT = 64;

function utf8Length(value: string): number {
  let length = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) length += 1;
    else if (c < 0x800) length += 2;
    else if ((c & 0xfc00) === 0xd800 && (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      length += 4;
      i++;
    } else length += 3; // the rest of the BMP, and a lone surrogate (written as U+FFFD, as Node does)
  }
  return length;
}

function varintSize(value: number): number {
  value >>>= 0;
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** protobufjs's int32 (enums): a negative value takes ten bytes. */
function int32Size(value: number): number {
  return value < 0 ? 10 : varintSize(value);
}

const has = (message: object, key: string, value: unknown): boolean => value != null && Object.hasOwn(message, key);

function measureEnvelope(e: Envelope): number {
  let n = 0;
  if (has(e, 'id', e.id)) n += 1 + measureString(e.id);
  if (has(e, 'type', e.type)) n += 1 + int32Size(e.type);
  if (has(e, 'timestampMs', e.timestampMs)) n += 1 + 8;
  if (has(e, 'source', e.source)) n += 1 + measureString(e.source!);
  if (has(e, 'destination', e.destination)) n += 1 + measureString(e.destination!);
  if (has(e, 'priority', e.priority)) n += 1 + int32Size(e.priority!);
  if (has(e, 'compression', e.compression)) n += 1 + int32Size(e.compression!);
  if (has(e, 'correlationId', e.correlationId)) n += 1 + measureString(e.correlationId!);
  if (has(e, 'deadlineMs', e.deadlineMs)) n += 1 + varintSize(e.deadlineMs!);
  if (has(e, 'trace', e.trace)) n += 1 + measured(measureTrace, e.trace!);
  const headers = e.headers;
  if (headers != null) for (let i = 0; i < headers.length; i++) n += 1 + measured(measureHeader, headers[i]!);
  if (has(e, 'payload', e.payload)) {
    const length = e.payload!.length >>> 0;
    n += 1 + varintSize(length) + length;
  }
  if (has(e, 'http', e.http)) n += 1 + measured(measureHttp, e.http!);
  if (has(e, 'hello', e.hello)) n += 1 + measured(measureHello, e.hello!);
  if (has(e, 'error', e.error)) n += 1 + measured(measureError, e.error!);
  if (has(e, 'messageId', e.messageId)) n += 2 + measureString(e.messageId!);
  if (has(e, 'attempt', e.attempt)) n += 2 + varintSize(e.attempt!);
  if (has(e, 'topic', e.topic)) n += 2 + measureString(e.topic!);
  if (has(e, 'acceptCompression', e.acceptCompression)) n += 2 + int32Size(e.acceptCompression!);
  if (has(e, 'compressMinBytes', e.compressMinBytes)) n += 2 + varintSize(e.compressMinBytes!);
  return n;
}

function measureTrace(t: NonNullable<Envelope['trace']>): number {
  let n = 0;
  if (has(t, 'traceparent', t.traceparent)) n += 1 + measureString(t.traceparent!);
  if (has(t, 'tracestate', t.tracestate)) n += 1 + measureString(t.tracestate!);
  return n;
}

function measureHeader(h: Header): number {
  let n = 0;
  if (has(h, 'name', h.name)) n += 1 + measureString(h.name);
  if (has(h, 'value', h.value)) n += 1 + measureString(h.value);
  return n;
}

function measureHttp(h: NonNullable<Envelope['http']>): number {
  let n = 0;
  if (has(h, 'method', h.method)) n += 1 + measureString(h.method!);
  if (has(h, 'path', h.path)) n += 1 + measureString(h.path!);
  if (has(h, 'authority', h.authority)) n += 1 + measureString(h.authority!);
  if (has(h, 'status', h.status)) n += 1 + varintSize(h.status!);
  if (has(h, 'bodyStreamId', h.bodyStreamId)) n += 1 + measureString(h.bodyStreamId!);
  if (has(h, 'bodyFollows', h.bodyFollows)) n += 2;
  return n;
}

function measureHello(h: NonNullable<Envelope['hello']>): number {
  let n = 0;
  if (has(h, 'major', h.major)) n += 1 + varintSize(h.major);
  if (has(h, 'minor', h.minor)) n += 1 + varintSize(h.minor);
  const capabilities = h.capabilities;
  if (capabilities != null) for (let i = 0; i < capabilities.length; i++) n += 1 + measureString(capabilities[i]!);
  if (has(h, 'node', h.node)) n += 1 + measureString(h.node!);
  return n;
}

function measureError(e: NonNullable<Envelope['error']>): number {
  let n = 0;
  if (has(e, 'code', e.code)) n += 1 + measureString(e.code);
  if (has(e, 'message', e.message)) n += 1 + measureString(e.message);
  return n;
}

// ---- writing (the same fields, in the same order, reading the noted lengths back) ----

function writeVarint(buf: Buffer, pos: number, value: number): number {
  value >>>= 0;
  while (value > 127) {
    buf[pos++] = (value & 127) | 128;
    value >>>= 7;
  }
  buf[pos++] = value;
  return pos;
}

function writeInt32(buf: Buffer, pos: number, value: number): number {
  if (value >= 0) return writeVarint(buf, pos, value);
  // Sign-extended to 64 bits, as protobufjs (and every protobuf) writes a negative int32.
  let rest = BigInt.asUintN(64, BigInt(value));
  for (let i = 0; i < 9; i++) {
    buf[pos++] = Number(rest & 127n) | 128;
    rest >>= 7n;
  }
  buf[pos++] = Number(rest);
  return pos;
}

function writeString(buf: Buffer, pos: number, value: string): number {
  const length = lengths[cursor++]!;
  pos = writeVarint(buf, pos, length);
  if (value.length >= SHORT) {
    buf.write(value, pos, length, 'utf8');
    return pos + length;
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) {
      buf[pos++] = c;
    } else if (c < 0x800) {
      buf[pos++] = 0xc0 | (c >> 6);
      buf[pos++] = 0x80 | (c & 63);
    } else if ((c & 0xfc00) === 0xd800 && (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      const code = 0x10000 + ((c & 0x3ff) << 10) + (value.charCodeAt(++i) & 0x3ff);
      buf[pos++] = 0xf0 | (code >> 18);
      buf[pos++] = 0x80 | ((code >> 12) & 63);
      buf[pos++] = 0x80 | ((code >> 6) & 63);
      buf[pos++] = 0x80 | (code & 63);
    } else {
      const code = (c & 0xf800) === 0xd800 ? 0xfffd : c; // a lone surrogate: the replacement character
      buf[pos++] = 0xe0 | (code >> 12);
      buf[pos++] = 0x80 | ((code >> 6) & 63);
      buf[pos++] = 0x80 | (code & 63);
    }
  }
  return pos;
}

/** A tag of field 16 or above (two bytes): `low` is the first byte. */
function tag2(buf: Buffer, pos: number, low: number): number {
  buf[pos] = low;
  buf[pos + 1] = 0x01;
  return pos + 2;
}

function writeEnvelope(buf: Buffer, pos: number, e: Envelope): number {
  if (has(e, 'id', e.id)) { buf[pos++] = 0x0a; pos = writeString(buf, pos, e.id); }
  if (has(e, 'type', e.type)) { buf[pos++] = 0x10; pos = writeInt32(buf, pos, e.type); }
  if (has(e, 'timestampMs', e.timestampMs)) { buf[pos++] = 0x19; pos = buf.writeDoubleLE(e.timestampMs!, pos); }
  if (has(e, 'source', e.source)) { buf[pos++] = 0x22; pos = writeString(buf, pos, e.source!); }
  if (has(e, 'destination', e.destination)) { buf[pos++] = 0x2a; pos = writeString(buf, pos, e.destination!); }
  if (has(e, 'priority', e.priority)) { buf[pos++] = 0x30; pos = writeInt32(buf, pos, e.priority!); }
  if (has(e, 'compression', e.compression)) { buf[pos++] = 0x38; pos = writeInt32(buf, pos, e.compression!); }
  if (has(e, 'correlationId', e.correlationId)) { buf[pos++] = 0x42; pos = writeString(buf, pos, e.correlationId!); }
  if (has(e, 'deadlineMs', e.deadlineMs)) { buf[pos++] = 0x48; pos = writeVarint(buf, pos, e.deadlineMs!); }
  if (has(e, 'trace', e.trace)) {
    buf[pos++] = 0x52;
    const t = e.trace!;
    pos = writeVarint(buf, pos, lengths[cursor++]!);
    if (has(t, 'traceparent', t.traceparent)) { buf[pos++] = 0x0a; pos = writeString(buf, pos, t.traceparent!); }
    if (has(t, 'tracestate', t.tracestate)) { buf[pos++] = 0x12; pos = writeString(buf, pos, t.tracestate!); }
  }
  const headers = e.headers;
  if (headers != null) {
    for (let i = 0; i < headers.length; i++) {
      const h = headers[i]!;
      buf[pos++] = 0x5a;
      pos = writeVarint(buf, pos, lengths[cursor++]!);
      if (has(h, 'name', h.name)) { buf[pos++] = 0x0a; pos = writeString(buf, pos, h.name); }
      if (has(h, 'value', h.value)) { buf[pos++] = 0x12; pos = writeString(buf, pos, h.value); }
    }
  }
  if (has(e, 'payload', e.payload)) {
    const payload = e.payload!;
    const length = payload.length >>> 0;
    buf[pos++] = 0x62;
    pos = writeVarint(buf, pos, length);
    if (length > 0) buf.set(payload, pos);
    pos += length;
  }
  if (has(e, 'http', e.http)) {
    const h = e.http!;
    buf[pos++] = 0x6a;
    pos = writeVarint(buf, pos, lengths[cursor++]!);
    if (has(h, 'method', h.method)) { buf[pos++] = 0x0a; pos = writeString(buf, pos, h.method!); }
    if (has(h, 'path', h.path)) { buf[pos++] = 0x12; pos = writeString(buf, pos, h.path!); }
    if (has(h, 'authority', h.authority)) { buf[pos++] = 0x1a; pos = writeString(buf, pos, h.authority!); }
    if (has(h, 'status', h.status)) { buf[pos++] = 0x20; pos = writeVarint(buf, pos, h.status!); }
    if (has(h, 'bodyStreamId', h.bodyStreamId)) { buf[pos++] = 0x2a; pos = writeString(buf, pos, h.bodyStreamId!); }
    if (has(h, 'bodyFollows', h.bodyFollows)) { buf[pos++] = 0x30; buf[pos++] = h.bodyFollows ? 1 : 0; }
  }
  if (has(e, 'hello', e.hello)) {
    const h = e.hello!;
    buf[pos++] = 0x72;
    pos = writeVarint(buf, pos, lengths[cursor++]!);
    if (has(h, 'major', h.major)) { buf[pos++] = 0x08; pos = writeVarint(buf, pos, h.major); }
    if (has(h, 'minor', h.minor)) { buf[pos++] = 0x10; pos = writeVarint(buf, pos, h.minor); }
    const capabilities = h.capabilities;
    if (capabilities != null) for (let i = 0; i < capabilities.length; i++) { buf[pos++] = 0x1a; pos = writeString(buf, pos, capabilities[i]!); }
    if (has(h, 'node', h.node)) { buf[pos++] = 0x22; pos = writeString(buf, pos, h.node!); }
  }
  if (has(e, 'error', e.error)) {
    const err = e.error!;
    buf[pos++] = 0x7a;
    pos = writeVarint(buf, pos, lengths[cursor++]!);
    if (has(err, 'code', err.code)) { buf[pos++] = 0x0a; pos = writeString(buf, pos, err.code); }
    if (has(err, 'message', err.message)) { buf[pos++] = 0x12; pos = writeString(buf, pos, err.message); }
  }
  if (has(e, 'messageId', e.messageId)) { pos = tag2(buf, pos, 0x82); pos = writeString(buf, pos, e.messageId!); }
  if (has(e, 'attempt', e.attempt)) { pos = tag2(buf, pos, 0x88); pos = writeVarint(buf, pos, e.attempt!); }
  if (has(e, 'topic', e.topic)) { pos = tag2(buf, pos, 0x92); pos = writeString(buf, pos, e.topic!); }
  if (has(e, 'acceptCompression', e.acceptCompression)) { pos = tag2(buf, pos, 0x98); pos = writeInt32(buf, pos, e.acceptCompression!); }
  if (has(e, 'compressMinBytes', e.compressMinBytes)) { pos = tag2(buf, pos, 0xa0); pos = writeVarint(buf, pos, e.compressMinBytes!); }
  return pos;
}
