// Large bodies for tests without holding them in memory: a deterministic pattern generated chunk by
// chunk (each chunk distinct, so reordered, dropped or repeated chunks change the hash) and hashing
// of streams as they pass.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

const CHUNK = 64 * 1024;

function patternChunk(index: number, size: number, seed: number): Buffer {
  const chunk = Buffer.allocUnsafe(size);
  // xorshift32 seeded per chunk: cheap, varied bytes, and every chunk different.
  let x = (seed * 0x9e3779b1 + index * 0x85ebca6b + 1) >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    chunk.writeUInt32LE(x, i);
  }
  for (; i < size; i++) chunk[i] = (index + i) & 0xff;
  return chunk;
}

/** `totalBytes` of the pattern for `seed`, as a stream of 64 KiB chunks. */
export function patternStream(totalBytes: number, seed = 1): Readable {
  let sent = 0;
  let index = 0;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (sent >= totalBytes) {
        this.push(null);
        return;
      }
      const size = Math.min(CHUNK, totalBytes - sent);
      sent += size;
      this.push(patternChunk(index++, size, seed));
    },
  });
}

/** The sha256 (hex) of patternStream(totalBytes, seed), computed without keeping the data. */
export function patternSha256(totalBytes: number, seed = 1): string {
  const hash = createHash('sha256');
  for (let index = 0, done = 0; done < totalBytes; index++) {
    const size = Math.min(CHUNK, totalBytes - done);
    hash.update(patternChunk(index, size, seed));
    done += size;
  }
  return hash.digest('hex');
}

/** Consume a stream, returning its sha256 (hex) and length; `onChunk` sees each chunk's size as it passes. */
export async function hashStream(stream: AsyncIterable<Uint8Array | string>, onChunk?: (bytes: number) => void): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    hash.update(buffer);
    bytes += buffer.byteLength;
    onChunk?.(buffer.byteLength);
  }
  return { sha256: hash.digest('hex'), bytes };
}

export const MiB = 1024 * 1024;
