// Per-message payload compression on a link (Envelope.compression). Used only with an algorithm both
// sides announced in HELLO; the caller's policy picks it (policy `compression`), and a REQUEST's
// accept_compression lets the answer come back compressed the same way.
//
// Synchronous on purpose: link payloads are inline bodies, at most limits.inlineBodyBytes (64 KiB by
// default, 4 MiB at most; larger ones go on Stream calls, never compressed). At 64 KiB gzip takes about
// 0.6 ms and lz4 0.1 ms; the async API would add a thread-pool hand-off and an await to every such call.
// Revisit if inline bodies grow towards the maximum (gzip costs ~7 ms per MiB).
import { gunzipSync, gzipSync } from 'node:zlib';
import { compressSync as lz4Compress, uncompressSync as lz4Uncompress } from 'lz4-napi';
import { MeshError } from '../errors/mesh-error.ts';
import { asBuffer, Compression } from './codec.ts';
import { MAX_MESSAGE_BYTES } from './version.ts';

export type CompressionName = 'none' | 'gzip' | 'lz4';

/** The caller's policy: compress with `algorithm` payloads at least `minBytes` long. */
export interface CompressionSetting {
  algorithm: CompressionName;
  minBytes: number;
}

export interface CompressedPayload {
  payload: Uint8Array;
  compression: Compression;
}

/**
 * The most a peer can make this sidecar inflate: the gRPC message size limit, which no honest payload
 * exceeds (it would not have fitted uncompressed). Beyond it the payload is a bomb and is refused.
 */
export const MAX_DECOMPRESSED_BYTES = MAX_MESSAGE_BYTES;

/** lz4-napi's block format starts with the uncompressed length, uint32 little-endian. */
const LZ4_SIZE_PREFIX = 4;

/** The wire value for an algorithm name. */
export function compressionCode(name: CompressionName): Compression {
  return name === 'gzip' ? Compression.GZIP : name === 'lz4' ? Compression.LZ4 : Compression.IDENTITY;
}

/** The HELLO capability that announces a wire value ('gzip', 'lz4'); undefined for IDENTITY or unknown. */
export function compressionCapability(compression: number | undefined): 'gzip' | 'lz4' | undefined {
  return compression === Compression.GZIP ? 'gzip' : compression === Compression.LZ4 ? 'lz4' : undefined;
}

/**
 * Compress `payload` when it is at least `minBytes` long and compression actually makes it smaller;
 * otherwise it is returned as is, IDENTITY.
 */
export function compressPayload(payload: Uint8Array, compression: Compression, minBytes: number): CompressedPayload {
  if (compression === Compression.IDENTITY || payload.byteLength === 0 || payload.byteLength < minBytes) {
    return { payload, compression: Compression.IDENTITY };
  }
  let compressed: Uint8Array;
  try {
    compressed = compression === Compression.GZIP ? gzipSync(payload) : lz4Compress(asBuffer(payload));
  } catch {
    // Only on exhaustion (no valid input makes these fail): the call still goes, just not smaller.
    return { payload, compression: Compression.IDENTITY };
  }
  return compressed.byteLength < payload.byteLength ? { payload: compressed, compression } : { payload, compression: Compression.IDENTITY };
}

/**
 * The payload as the sender gave it. Throws MeshError PROTOCOL_ERROR for an unknown algorithm, bytes
 * that do not decompress, or a result over `maxBytes` (checked before or while inflating, never after).
 */
export function decompressPayload(payload: Uint8Array, compression: number | undefined, maxBytes = MAX_DECOMPRESSED_BYTES): Uint8Array {
  switch (compression) {
    case undefined:
    case Compression.IDENTITY:
      return payload;
    case Compression.GZIP:
      try {
        // maxOutputLength makes zlib stop as soon as the output would pass the limit.
        return gunzipSync(payload, { maxOutputLength: maxBytes });
      } catch (err) {
        const tooLarge = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
        throw new MeshError('PROTOCOL_ERROR', tooLarge
          ? `gzip payload inflates past ${maxBytes} bytes; refused`
          : `gzip payload does not decompress: ${(err as Error).message}`, { cause: err });
      }
    case Compression.LZ4: {
      if (payload.byteLength < LZ4_SIZE_PREFIX) throw new MeshError('PROTOCOL_ERROR', 'lz4 payload is shorter than its length prefix');
      const bytes = asBuffer(payload);
      const declared = bytes.readUInt32LE(0);
      // lz4-napi allocates the declared size up front, and a failed allocation aborts the process:
      // check it before calling.
      if (declared > maxBytes) throw new MeshError('PROTOCOL_ERROR', `lz4 payload declares ${declared} bytes, over ${maxBytes}; refused`);
      let inflated: Buffer;
      try {
        inflated = lz4Uncompress(bytes);
      } catch (err) {
        throw new MeshError('PROTOCOL_ERROR', `lz4 payload does not decompress: ${(err as Error).message}`, { cause: err });
      }
      // The library returns what the blocks hold even when the prefix said more: a damaged payload.
      if (inflated.byteLength !== declared) throw new MeshError('PROTOCOL_ERROR', `lz4 payload declares ${declared} bytes but holds ${inflated.byteLength}`);
      return inflated;
    }
    default:
      throw new MeshError('PROTOCOL_ERROR', `unknown payload compression ${compression}`);
  }
}
