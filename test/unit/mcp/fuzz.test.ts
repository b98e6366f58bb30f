// Bad input on the MCP wire: the envelope decoder fuzzed directly, then a real MeshServer fuzzed over
// real gRPC (raw bytes as messages, so malformed protobuf reaches the server's deserializer) while a
// well-behaved link keeps calling through the same server. Seeded: FUZZ_SEED=<n> replays a run.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { decodeBatch, decodeFrame, encodeBatch, encodeFrame, MessageType } from '../../../sidecar/src/mcp/codec.ts';
import { fuzzInput, fuzzSeed, mutate, MUTATIONS, Rng, sampleBatch, sampleFrame } from '../../helpers/fuzz.ts';

const DECODER_CASES = 12_000;
/** A single decode of a message under 1 MiB is microseconds; anything near this is a hang in the making. */
const MAX_CASE_MS = 250;

function hex(bytes: Buffer): string {
  return bytes.length > 512 ? `${bytes.subarray(0, 512).toString('hex')}… (${bytes.length} bytes)` : bytes.toString('hex');
}

describe('MCP decoder fuzz', () => {
  for (const [name, decode, sample] of [
    ['decodeBatch', (b: Buffer) => decodeBatch(b), sampleBatch],
    ['decodeFrame', (b: Buffer) => decodeFrame(b), sampleFrame],
  ] as const) {
    it(`${name}: ${DECODER_CASES} random and mutated inputs either decode or throw an Error, quickly, without growing memory`, () => {
      const seed = fuzzSeed(name === 'decodeBatch' ? 0xb47c4 : 0xf4a3e);
      const rng = new Rng(seed);
      const started = performance.now();
      const memoryBefore = process.memoryUsage();
      let decoded = 0;
      let thrown = 0;
      let slowest = 0;
      for (let i = 0; i < DECODER_CASES; i++) {
        // Every mutation kind gets its turn on valid input; the rest is the random mix.
        const input = i < MUTATIONS.length * 200 ? mutate(rng, sample(rng), MUTATIONS[i % MUTATIONS.length]) : fuzzInput(rng, sample);
        const t0 = performance.now();
        try {
          const value = decode(input) as unknown as Record<string, unknown>;
          decoded++;
          if (name === 'decodeBatch') assert.ok(Array.isArray(value.envelopes), 'a decoded batch has an envelopes array');
          else assert.ok(Object.keys(value).length <= 1, 'a decoded frame has at most one kind');
        } catch (err) {
          if (err instanceof assert.AssertionError) throw new Error(`seed ${seed} case ${i}: ${err.message}; input ${hex(input)}`, { cause: err });
          thrown++;
          assert.ok(err instanceof Error, `seed ${seed} case ${i}: threw a non-Error ${String(err)}; input ${hex(input)}`);
        }
        const took = performance.now() - t0;
        slowest = Math.max(slowest, took);
        assert.ok(took < MAX_CASE_MS, `seed ${seed} case ${i}: decoding took ${took.toFixed(1)} ms; input ${hex(input)}`);
      }
      const memoryAfter = process.memoryUsage();
      const grownMiB = (memoryAfter.arrayBuffers + memoryAfter.heapUsed - memoryBefore.arrayBuffers - memoryBefore.heapUsed) / 2 ** 20;
      // A decoder trusting a 2 GiB length would have allocated it (or died trying).
      assert.ok(grownMiB < 256, `seed ${seed}: memory grew ${grownMiB.toFixed(0)} MiB over the run`);
      assert.ok(decoded > 0 && thrown > 0, `seed ${seed}: both outcomes occur (decoded ${decoded}, thrown ${thrown})`);
      console.log(`# ${name}: seed ${seed}, ${DECODER_CASES} cases, ${decoded} decoded, ${thrown} thrown, slowest ${slowest.toFixed(2)} ms, ${(performance.now() - started).toFixed(0)} ms in all`);
    });
  }

  it('a length prefix claiming 2 GiB or 4 GiB throws at once, allocating nothing of the sort', () => {
    for (const length of [0x7fffffff, 0x80000000, 0xffffffff]) {
      const v: number[] = [];
      for (let x = length; ; x = Math.floor(x / 128)) { if (x < 128) { v.push(x); break; } v.push((x % 128) | 0x80); }
      const before = process.memoryUsage().arrayBuffers;
      // Batch.envelopes (field 1) / Frame.data (field 2), each with the huge length and 3 bytes after it.
      assert.throws(() => decodeBatch(Buffer.from([0x0a, ...v, 1, 2, 3])));
      assert.throws(() => decodeFrame(Buffer.from([0x12, ...v, 1, 2, 3])));
      assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 2 ** 20);
    }
  });

  it('round-trips still work (the samples are valid before mutation)', () => {
    const rng = new Rng(7);
    for (let i = 0; i < 200; i++) {
      const batch = sampleBatch(rng);
      assert.deepEqual(encodeBatch(decodeBatch(batch)), batch);
      const frame = sampleFrame(rng);
      assert.deepEqual(encodeFrame(decodeFrame(frame)), frame);
    }
    assert.ok(MessageType.HELLO);
  });
});
