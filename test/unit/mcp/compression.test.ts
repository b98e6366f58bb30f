// compression.ts on its own: round trips, when not to compress, and what a receiver refuses
// (unknown algorithm, damaged bytes, decompression bombs).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { compressSync as lz4Compress } from 'lz4-napi';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { Compression } from '../../../sidecar/src/mcp/codec.ts';
import {
  compressionCapability, compressionCode, compressPayload, decompressPayload, MAX_DECOMPRESSED_BYTES,
} from '../../../sidecar/src/mcp/compression.ts';

/** About `bytes` of JSON such as services exchange: repetitive, so it compresses well. */
function jsonPayload(bytes: number): Buffer {
  const items: unknown[] = [];
  let text = '';
  for (let i = 0; text.length < bytes; i++) {
    items.push({ id: i, sku: `SKU-${(i * 7919) % 100_000}`, name: `item ${i} of the order`, price: ((i * 37) % 1000) / 10, inStock: i % 2 === 0 });
    text = JSON.stringify({ orders: items });
  }
  return Buffer.from(text.slice(0, bytes));
}

function protocolError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof MeshError && err.code === 'PROTOCOL_ERROR' && message.test(err.message));
}

describe('compressPayload / decompressPayload', () => {
  const json = jsonPayload(16 * 1024);

  for (const [name, code] of [['gzip', Compression.GZIP], ['lz4', Compression.LZ4]] as const) {
    it(`${name}: round-trips, and the compressed form is smaller`, () => {
      const { payload, compression } = compressPayload(json, code, 1024);
      assert.equal(compression, code);
      assert.ok(payload.byteLength < json.byteLength / 2, `${name}: ${payload.byteLength} bytes from ${json.byteLength}`);
      assert.deepEqual(Buffer.from(decompressPayload(payload, compression)), json);
    });

    it(`${name}: a payload below minBytes is left as is`, () => {
      const small = json.subarray(0, 1023);
      const result = compressPayload(small, code, 1024);
      assert.equal(result.compression, Compression.IDENTITY);
      assert.equal(result.payload, small, 'the very same bytes, not a copy');
      // At the threshold exactly it is compressed ("at least minBytes").
      assert.equal(compressPayload(json.subarray(0, 1024), code, 1024).compression, code);
    });

    it(`${name}: incompressible data is sent as is (compressing would make it larger)`, () => {
      const noise = randomBytes(4096);
      const result = compressPayload(noise, code, 0);
      assert.equal(result.compression, Compression.IDENTITY);
      assert.equal(result.payload, noise);
    });

    it(`${name}: an empty payload is left as is even with minBytes 0`, () => {
      assert.equal(compressPayload(new Uint8Array(), code, 0).compression, Compression.IDENTITY);
    });
  }

  it('IDENTITY compresses nothing and decompresses to the same bytes', () => {
    assert.equal(compressPayload(json, Compression.IDENTITY, 0).payload, json);
    assert.equal(decompressPayload(json, Compression.IDENTITY), json);
    assert.equal(decompressPayload(json, undefined), json);
  });

  it('takes a plain Uint8Array as well as a Buffer', () => {
    const bytes = new Uint8Array(json);
    for (const code of [Compression.GZIP, Compression.LZ4]) {
      const { payload, compression } = compressPayload(bytes, code, 0);
      assert.deepEqual(Buffer.from(decompressPayload(payload, compression)), json);
    }
  });

  it('lz4 payloads carry the uncompressed length as a uint32 LE prefix (mcp.proto says so)', () => {
    const { payload } = compressPayload(json, Compression.LZ4, 0);
    assert.equal(Buffer.from(payload).readUInt32LE(0), json.byteLength);
  });

  it('refuses an unknown algorithm with PROTOCOL_ERROR', () => {
    protocolError(() => decompressPayload(json, 7), /unknown payload compression 7/);
  });

  it('refuses damaged gzip and lz4 with PROTOCOL_ERROR', () => {
    protocolError(() => decompressPayload(Buffer.from('not gzip at all'), Compression.GZIP), /gzip payload does not decompress/);
    const gz = gzipSync(json);
    protocolError(() => decompressPayload(gz.subarray(0, gz.length - 8), Compression.GZIP), /does not decompress/);
    protocolError(() => decompressPayload(Buffer.from([1, 2]), Compression.LZ4), /shorter than its length prefix/);
    const lz = lz4Compress(json);
    protocolError(() => decompressPayload(lz.subarray(0, lz.length - 10), Compression.LZ4), /lz4 payload/);
    // A prefix that claims more than the blocks hold.
    const lying = Buffer.from(lz);
    lying.writeUInt32LE(json.byteLength + 1, 0);
    protocolError(() => decompressPayload(lying, Compression.LZ4), /declares \d+ bytes but holds/);
    // …or less.
    lying.writeUInt32LE(10, 0);
    protocolError(() => decompressPayload(lying, Compression.LZ4), /lz4 payload does not decompress/);
  });

  it('refuses a gzip bomb (100 MiB of zeros) without inflating it', () => {
    const bomb = gzipSync(Buffer.alloc(100 * 1024 * 1024));
    assert.ok(bomb.byteLength < 200 * 1024);
    protocolError(() => decompressPayload(bomb, Compression.GZIP), /inflates past 16777216 bytes/);
    // The limit itself is allowed.
    const atLimit = gzipSync(Buffer.alloc(MAX_DECOMPRESSED_BYTES));
    assert.equal(decompressPayload(atLimit, Compression.GZIP).byteLength, MAX_DECOMPRESSED_BYTES);
    protocolError(() => decompressPayload(atLimit, Compression.GZIP, 1024), /inflates past 1024 bytes/);
  });

  it('refuses an lz4 bomb by its declared length, before inflating (a forged 4 GiB would abort the process)', () => {
    const bomb = lz4Compress(Buffer.alloc(100 * 1024 * 1024));
    protocolError(() => decompressPayload(bomb, Compression.LZ4), /declares 104857600 bytes, over 16777216/);
    const forged = Buffer.from(lz4Compress(json));
    forged.writeUInt32LE(0xffff_fff0, 0);
    protocolError(() => decompressPayload(forged, Compression.LZ4), /declares 4294967280 bytes/);
  });

  it('maps names, wire values and capabilities', () => {
    assert.equal(compressionCode('gzip'), Compression.GZIP);
    assert.equal(compressionCode('lz4'), Compression.LZ4);
    assert.equal(compressionCode('none'), Compression.IDENTITY);
    assert.equal(compressionCapability(Compression.GZIP), 'gzip');
    assert.equal(compressionCapability(Compression.LZ4), 'lz4');
    assert.equal(compressionCapability(Compression.IDENTITY), undefined);
    assert.equal(compressionCapability(9), undefined);
  });
});
