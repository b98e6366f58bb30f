import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  asBuffer, Compression, decodeBatch, decodeFrame, encodeBatch, encodeFrame, MessageType, Priority, type Envelope, type Frame,
} from '../../../sidecar/src/mcp/codec.ts';

/**
 * Decoded protobufjs messages are class instances whose unset scalars live on the prototype and whose
 * bytes are Buffers; this turns one into plain data so deepEqual compares values, not prototypes.
 */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

const fullEnvelope: Envelope = {
  id: '01J0000000000000000000000A',
  type: MessageType.REQUEST,
  timestampMs: 1_718_000_000_123.5,
  source: 'orders.default',
  destination: 'payments.shop',
  priority: Priority.LOW,
  compression: Compression.GZIP,
  correlationId: '01J0000000000000000000000B',
  deadlineMs: 4_000_000_000, // uint32, above 2^31
  trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'congo=t61rcWkgMzE' },
  headers: [
    { name: 'content-type', value: 'application/json' },
    { name: 'set-cookie', value: 'a=1' },
    { name: 'set-cookie', value: 'b=2' },
  ],
  payload: new Uint8Array([0, 1, 2, 250, 255]),
  http: { method: 'PATCH', path: '/charge?x=1&y=%20', authority: 'payments.shop:8080', status: 201, bodyStreamId: 'body-1', bodyFollows: true },
  hello: { major: 1, minor: 7, capabilities: ['batch', 'stream'], node: 'orders-1234' },
  error: { code: 'APP_UNAVAILABLE', message: 'connect ECONNREFUSED' },
};

describe('codec: Batch', () => {
  it('round-trips every Envelope field', () => {
    const decoded = decodeBatch(encodeBatch({ envelopes: [fullEnvelope] }));
    assert.equal(decoded.envelopes.length, 1);
    assert.deepEqual(plain(decoded.envelopes[0]), plain(fullEnvelope));
  });

  it('covers every field declared in the .proto (a new field must be added to this test)', () => {
    // If someone adds a field to the proto and to the interface, fullEnvelope above must grow too.
    const protoFields = ['id', 'type', 'timestampMs', 'source', 'destination', 'priority', 'compression', 'correlationId',
      'deadlineMs', 'trace', 'headers', 'payload', 'http', 'hello', 'error'];
    assert.deepEqual(Object.keys(fullEnvelope).sort(), [...protoFields].sort());
  });

  it('round-trips every MessageType and Priority value', () => {
    const envelopes: Envelope[] = [];
    for (const type of Object.values(MessageType)) {
      for (const priority of Object.values(Priority)) envelopes.push({ id: `${type}-${priority}`, type, priority });
    }
    const decoded = decodeBatch(encodeBatch({ envelopes }));
    assert.deepEqual(decoded.envelopes.map((e) => [e.id, e.type, e.priority]), envelopes.map((e) => [e.id, e.type, e.priority]));
  });

  it('round-trips many envelopes in order, and an empty batch', () => {
    const envelopes = Array.from({ length: 300 }, (_, i): Envelope => ({ id: `id-${i}`, type: MessageType.RESPONSE, payload: Buffer.from(`body ${i}`) }));
    const decoded = decodeBatch(encodeBatch({ envelopes }));
    assert.deepEqual(decoded.envelopes.map((e) => e.id), envelopes.map((e) => e.id));
    assert.equal(Buffer.from(decoded.envelopes[299]!.payload!).toString(), 'body 299');
    assert.deepEqual(decodeBatch(encodeBatch({ envelopes: [] })).envelopes, []);
  });

  it('keeps latin-1 and other non-ASCII header values exactly', () => {
    const values = ['café', 'naïve ÿ', '\u00e9\u00e0\u00fc', 'emoji 🚀', '\u0080\u00ff'];
    const envelope: Envelope = { id: 'x', type: MessageType.REQUEST, headers: values.map((value) => ({ name: 'x-v', value })) };
    const decoded = decodeBatch(encodeBatch({ envelopes: [envelope] }));
    assert.deepEqual(decoded.envelopes[0]!.headers!.map((h) => h.value), values);
    // Node hands header bytes over as latin-1: é arrives as one code unit 0xE9 and must leave as one.
    assert.equal(Buffer.from(decoded.envelopes[0]!.headers![0]!.value, 'latin1').toString('latin1'), 'café');
    assert.equal(decoded.envelopes[0]!.headers![0]!.value.charCodeAt(3), 0xe9);
  });

  it('returns a Buffer for encoded bytes and for decoded payloads', () => {
    const bytes = encodeBatch({ envelopes: [{ id: 'x', type: MessageType.REQUEST, payload: new Uint8Array([1, 2, 3]) }] });
    assert.ok(Buffer.isBuffer(bytes));
    assert.deepEqual([...decodeBatch(bytes).envelopes[0]!.payload!], [1, 2, 3]);
  });

  it('throws on garbage bytes, so the receiver can refuse the stream', () => {
    const garbage = [
      Buffer.from('garbage bytes!'), // field 12, wire type 7: invalid wire type
      Buffer.from([0x0a, 0xff, 0x01, 0x00]), // envelopes: length 255, only 2 bytes follow
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // varint that never ends
      encodeBatch({ envelopes: [fullEnvelope] }).subarray(0, 20), // truncated
    ];
    for (const bytes of garbage) assert.throws(() => decodeBatch(bytes), Error, `should refuse ${bytes.toString('hex')}`);
  });
});

describe('codec: Frame', () => {
  const head: Envelope = { id: 'h', type: MessageType.REQUEST, headers: [], http: { method: 'POST', path: '/upload', bodyFollows: true } };
  const frames: [keyof Frame, Frame][] = [
    ['head', { head }],
    ['data', { data: Buffer.from('chunk of body \u00e9') }],
    ['end', { end: { trailers: [{ name: 'grpc-ish', value: 'v' }] } }],
    ['error', { error: { code: 'APP_RESET', message: 'app went away' } }],
  ];

  for (const [kind, frame] of frames) {
    it(`round-trips a ${kind} frame and decodes exactly that one field`, () => {
      const decoded = decodeFrame(encodeFrame(frame));
      assert.deepEqual(Object.keys(decoded), [kind]);
      assert.deepEqual(plain(decoded), plain(frame));
    });
  }

  it('round-trips an end frame without trailers and an empty data frame as their kinds', () => {
    assert.deepEqual(Object.keys(decodeFrame(encodeFrame({ end: {} }))), ['end']);
    const data = decodeFrame(encodeFrame({ data: Buffer.alloc(0) }));
    assert.deepEqual(Object.keys(data), ['data']);
    assert.equal(data.data!.byteLength, 0);
  });

  it('decodes an empty message as a frame with no field', () => {
    assert.deepEqual(decodeFrame(Buffer.alloc(0)), {});
  });

  it('throws on garbage bytes', () => {
    assert.throws(() => decodeFrame(Buffer.from('garbage bytes!')));
    assert.throws(() => decodeFrame(Buffer.from([0x12, 0x7f, 0x01])));
  });
});

describe('asBuffer', () => {
  it('hands back decoded bytes without a copy, and an unset bytes field as an empty Buffer', () => {
    const decoded = decodeBatch(encodeBatch({ envelopes: [{ id: 'a', type: MessageType.RESPONSE, payload: Buffer.from('xyz') }, { id: 'b', type: MessageType.RESPONSE }] }));
    const payload = decoded.envelopes[0]!.payload!;
    assert.equal(asBuffer(payload), payload, 'the same Buffer, not a copy');
    const unset = asBuffer(decoded.envelopes[1]!.payload!);
    assert.ok(Buffer.isBuffer(unset));
    assert.equal(unset.byteLength, 0);
    const view = new Uint8Array([1, 2, 3, 4]).subarray(1, 3);
    assert.deepEqual([...asBuffer(view)], [2, 3]);
  });
});
