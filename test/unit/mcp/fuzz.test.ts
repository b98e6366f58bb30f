// Bad input on the MCP wire: the envelope decoder fuzzed directly, then a real MeshServer fuzzed over
// real gRPC (raw bytes as messages, so malformed protobuf reaches the server's deserializer) while a
// well-behaved link keeps calling through the same server. Seeded: FUZZ_SEED=<n> replays a run.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { Compression, decodeBatch, decodeFrame, encodeBatch, encodeFrame, MessageType, type Envelope, type Frame } from '../../../sidecar/src/mcp/codec.ts';
import { newMessageId } from '../../../sidecar/src/mcp/ids.ts';
import type { InboundHandler, InboundResponse } from '../../../sidecar/src/mcp/server.ts';
import { LINK_METHOD, PROTOCOL_MAJOR, STREAM_METHOD } from '../../../sidecar/src/mcp/version.ts';
import { fuzzInput, fuzzSeed, mutate, MUTATIONS, Rng, sampleBatch, sampleEnvelope, sampleFrame, varint } from '../../helpers/fuzz.ts';
import { echo, helloEnvelope, openLink, requestEnvelope, startServer, withTimeout } from './fixtures.ts';

const DECODER_CASES = 12_000;
/** A single decode of a message under 1 MiB is microseconds; anything near this is a hang in the making. */
const MAX_CASE_MS = 250;

function timeDecode(decode: (bytes: Buffer) => unknown, input: Buffer): number {
  const t0 = performance.now();
  try { decode(input); } catch { /* the first try already judged the outcome */ }
  return performance.now() - t0;
}

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
        let took = performance.now() - t0;
        // A slow input is slow every time; a machine that stalled once (GC, another process) is not: time it again.
        for (let again = 0; again < 3 && took >= MAX_CASE_MS; again++) took = Math.min(took, timeDecode(decode, input));
        slowest = Math.max(slowest, took);
        assert.ok(took < MAX_CASE_MS, `seed ${seed} case ${i}: decoding took ${took.toFixed(1)} ms (the fastest of 4 tries); input ${hex(input)}`);
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
      const v = varint(length);
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
  });
});

// ---------------------------------------------------------------------------------------------------
// A real MeshServer, fuzzed over real gRPC.

/** The app side: echoes unary calls; streamed calls answer 200 after reading (or ignoring) the body. */
class FuzzHandler implements InboundHandler {
  unary(request: Envelope): Promise<Envelope> {
    return Promise.resolve(echo(request));
  }

  async stream(head: Envelope, body: Readable | Buffer | null): Promise<InboundResponse> {
    // Like a real app, sometimes answering before reading the body, sometimes after reading it all.
    // An ignored body gets an error listener, as any stream consumer should. (One fuzz run without it saw
    // two uncaught "MeshError: x" — error frames destroying an unread body — while a failing run was being
    // torn down; not reproduced in isolation, see the report.)
    if (body instanceof Readable && head.id.length % 2 !== 0) body.on('error', () => {});
    if (body instanceof Readable && head.id.length % 2 === 0) {
      try {
        for await (const chunk of body) void chunk;
      } catch { /* the caller's error frame or a protocol failure ended the body */ }
    }
    return { head: { id: newMessageId(), type: MessageType.RESPONSE, correlationId: head.id, http: { status: 200 } }, body: null };
  }

  pull(): undefined {
    return undefined;
  }
}

const LINK_LEVEL = /must be HELLO|unexpected envelope type|is not supported/;

/**
 * The codes a fuzzed call may be refused with: malformed input, an unknown protocol version, or a
 * mutated `destination` that names a service the server does not serve (secure naming, 421).
 */
const CALL_ERROR_CODES = new Set(['PROTOCOL_ERROR', 'VERSION_UNSUPPORTED', 'MISDIRECTED']);

type Fate = { fate: 'clean' } | { fate: 'undecodable'; index: number } | { fate: 'violation'; index: number; code: string };

/** What the server must do with this sequence of Link messages (mirrors the rules of ServerLink). */
function predictLink(messages: Buffer[]): Fate {
  let helloDone = false;
  for (const [index, bytes] of messages.entries()) {
    let batch;
    try { batch = decodeBatch(bytes); } catch { return { fate: 'undecodable', index }; }
    for (const envelope of batch.envelopes) {
      if (!helloDone && envelope.type !== MessageType.HELLO) return { fate: 'violation', index, code: 'PROTOCOL_ERROR' };
      if (envelope.type === MessageType.HELLO) {
        if (!envelope.hello || envelope.hello.major !== PROTOCOL_MAJOR) return { fate: 'violation', index, code: 'VERSION_UNSUPPORTED' };
        helloDone = true;
      } else if (envelope.type !== MessageType.REQUEST && envelope.type !== MessageType.CANCEL && envelope.type !== MessageType.HEARTBEAT) {
        return { fate: 'violation', index, code: 'PROTOCOL_ERROR' };
      }
    }
  }
  return { fate: 'clean' };
}

/** What the server must do with the first frame of a Stream call (what follows depends on timing). */
function predictStream(frames: Buffer[]): Fate {
  let first;
  try { first = decodeFrame(frames[0]!); } catch { return { fate: 'undecodable', index: 0 }; }
  if (!first.head || first.head.compression || first.head.http?.bodyStreamId) return { fate: 'violation', index: 0, code: 'PROTOCOL_ERROR' };
  return { fate: 'clean' };
}

function laterUndecodable(messages: Buffer[], from: number, decode: (b: Buffer) => unknown): boolean {
  return messages.slice(from + 1).some((b) => { try { decode(b); return false; } catch { return true; } });
}

/** A Link batch a peer might send after HELLO: mostly allowed types, so streams live long enough to be fuzzed. */
function linkSample(rng: Rng): Buffer {
  const types = [MessageType.REQUEST, MessageType.REQUEST, MessageType.HEARTBEAT, MessageType.CANCEL, MessageType.HELLO, rng.pick(Object.values(MessageType))];
  return encodeBatch({ envelopes: Array.from({ length: 1 + rng.int(3) }, () => sampleEnvelope(rng, rng.pick(types))) });
}

function streamHead(rng: Rng): Buffer {
  const head = sampleEnvelope(rng, MessageType.REQUEST);
  head.compression = Compression.IDENTITY;
  head.http = { ...head.http, bodyStreamId: '', bodyFollows: rng.chance(0.7) };
  return encodeFrame({ head });
}

function streamSample(rng: Rng): Buffer {
  return rng.chance(0.1) ? sampleFrame(rng) : encodeFrame(rng.pick<Frame>([{ data: rng.bytes(rng.int(100)) }, { data: rng.bytes(rng.int(100)) }, { end: {} }, { error: { code: 'APP_RESET', message: 'x' } }]));
}

interface Outcome { status: grpc.StatusObject; received: Buffer[] }

/** One raw call: write `messages` as they are (passthrough serializer), half-close, collect what comes back. */
function rawCall(client: grpc.Client, method: string, messages: Buffer[], hangMs?: number): Promise<Outcome | 'hang'> {
  const call = client.makeBidiStreamRequest(method, (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata());
  const received: Buffer[] = [];
  call.on('data', (b: Buffer) => received.push(b));
  call.on('error', () => {}); // the status says it
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  for (const message of messages) call.write(message);
  call.end();
  if (hangMs === undefined) return withTimeout(status.then((s) => ({ status: s, received })), `${method} call to finish`);
  let timer: NodeJS.Timeout;
  return Promise.race([
    status.then((s) => ({ status: s, received })),
    new Promise<'hang'>((resolve) => { timer = setTimeout(() => { call.cancel(); resolve('hang'); }, hangMs); }),
  ]).finally(() => clearTimeout(timer));
}

describe('MeshServer fuzz (raw gRPC)', { timeout: 120_000 }, () => {
  const CALLS = 100; // per method
  const PER_CALL = 50;
  const WAVE = 20;
  /** A call that has not finished this long after its last write never will (a hang, a leaked server call). */
  const HANG_MS = 3000;

  it(`${CALLS} Link and ${CALLS} Stream calls of ${PER_CALL} mutated or random messages each: each bad stream closed with a code, a good link unaffected, no uncaught exception`, async () => {
    const seed = fuzzSeed(0x5e7e4);
    const rng = new Rng(seed);
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => { uncaught.push(err); };
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    const started = performance.now();
    const { server, address } = await startServer(new FuzzHandler());
    const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 << 20 });
    const good = openLink(address);
    let stop = false;
    let goodCalls = 0;
    const goodFailures: unknown[] = [];
    const tally: Record<string, number> = {};
    const count = (key: string) => { tally[key] = (tally[key] ?? 0) + 1; };
    try {
      await good.whenReady(5000);
      // The well-behaved link calls throughout, four at a time (bounded: at most 200,000 calls).
      const goodLoop = Promise.all(Array.from({ length: 4 }, async (_, worker) => {
        for (let i = 0; !stop && i < 50_000; i++) {
          const request = requestEnvelope(`/good/${worker}/${i}`, `payload ${worker} ${i}`);
          try {
            const response = await good.call(request);
            assert.equal(response.type, MessageType.RESPONSE);
            assert.equal(Buffer.from(response.payload!).toString(), `payload ${worker} ${i}`);
            goodCalls++;
          } catch (err) {
            goodFailures.push(err);
          }
        }
      }));

      const jobs: (() => Promise<void>)[] = [];
      for (let c = 0; c < CALLS; c++) {
        const messages = [rng.chance(0.7) ? encodeBatch({ envelopes: [helloEnvelope(PROTOCOL_MAJOR, 0)] }) : fuzzInput(rng, linkSample)];
        while (messages.length < PER_CALL) messages.push(rng.chance(0.6) ? linkSample(rng) : fuzzInput(rng, linkSample));
        jobs.push(async () => {
          const where = `seed ${seed} Link call ${c}`;
          const outcome = await rawCall(client, LINK_METHOD, messages, HANG_MS);
          if (outcome === 'hang') {
            const summary = messages.map((b) => { try { return decodeBatch(b).envelopes.map((e) => `${e.type}${e.compression ? `/c${e.compression}` : ''}`).join('+'); } catch { return 'X'; } });
            assert.fail(`${where}: the call hung; predicted ${JSON.stringify(predictLink(messages))}; messages ${summary.join(' ')}; first 3 hex ${messages.slice(0, 3).map(hex).join(' ')}`);
          }
          const { status, received } = outcome;
          const envelopes = received.flatMap((b) => decodeBatch(b).envelopes);
          const linkErrors = envelopes.filter((e) => e.type === MessageType.ERROR && LINK_LEVEL.test(e.error?.message ?? ''));
          const fate = predictLink(messages);
          const show = () => `${where}: predicted ${JSON.stringify(fate)}, got status ${status.code} ${status.details}, link errors ${JSON.stringify(linkErrors.map((e) => e.error))}; first decisive message ${fate.fate === 'clean' ? '-' : hex(messages[fate.index]!)}`;
          for (const e of envelopes.filter((x) => x.type === MessageType.ERROR)) assert.ok(CALL_ERROR_CODES.has(e.error?.code ?? ''), `${show()}: unexpected error code ${e.error?.code}`);
          if (fate.fate === 'undecodable') {
            assert.equal(status.code, grpc.status.INTERNAL, show());
            assert.match(status.details, /deserializ/, show());
            assert.equal(linkErrors.length, 0, show());
            count('link: gRPC INTERNAL (undecodable)');
          } else if (fate.fate === 'violation') {
            if (status.code === grpc.status.INTERNAL && laterUndecodable(messages, fate.index, decodeBatch)) {
              count('link: gRPC INTERNAL (a later undecodable message won the race)');
            } else {
              assert.equal(status.code, grpc.status.OK, show());
              assert.equal(linkErrors.length, 1, show());
              assert.equal(linkErrors[0]!.error?.code, fate.code, show());
              count(`link: ERROR envelope ${fate.code}`);
            }
          } else {
            assert.equal(status.code, grpc.status.OK, show());
            assert.equal(linkErrors.length, 0, show());
            count('link: clean (every message valid)');
          }
        });
      }
      for (let c = 0; c < CALLS; c++) {
        const frames = [rng.chance(0.7) ? streamHead(rng) : fuzzInput(rng, sampleFrame)];
        while (frames.length < PER_CALL) frames.push(rng.chance(0.5) ? streamSample(rng) : fuzzInput(rng, streamSample));
        jobs.push(async () => {
          const where = `seed ${seed} Stream call ${c}`;
          const outcome = await rawCall(client, STREAM_METHOD, frames, HANG_MS);
          if (outcome === 'hang') {
            assert.fail(`${where}: the call hung; frames ${frames.slice(0, 4).map(hex).join(' ')}`);
          }
          const { status, received } = outcome;
          const answers = received.map((b) => decodeFrame(b));
          const fate = predictStream(frames);
          const errors = answers.filter((f) => f.error);
          const show = () => `${where}: predicted ${JSON.stringify(fate)}, got status ${status.code} ${status.details}, frames ${JSON.stringify(answers.map((f) => Object.keys(f)[0]))}, errors ${JSON.stringify(errors.map((f) => f.error))}; first frame ${hex(frames[0]!)}`;
          for (const f of errors) assert.ok(f.error?.code === 'PROTOCOL_ERROR' || f.error?.code === 'MISDIRECTED', show());
          if (status.code !== grpc.status.OK) {
            assert.equal(status.code, grpc.status.INTERNAL, show());
            assert.match(status.details, /deserializ/, show());
            assert.ok(fate.fate === 'undecodable' || laterUndecodable(frames, 0, decodeFrame), show());
            count('stream: gRPC INTERNAL (undecodable)');
          } else if (fate.fate === 'violation') {
            assert.ok(answers[0]?.error, show());
            count('stream: error frame PROTOCOL_ERROR on the first frame');
          } else {
            assert.notEqual(fate.fate, 'undecodable', show());
            assert.ok(answers.length > 0 && (answers[0]!.head || answers[0]!.error), show());
            count(answers.some((f) => f.error) ? 'stream: error frame PROTOCOL_ERROR later' : 'stream: answered');
          }
        });
      }
      // Interleave Link and Stream jobs, WAVE at a time.
      const order = jobs.map((job, i) => ({ job, key: (i % CALLS) * 2 + Math.floor(i / CALLS) })).sort((a, b) => a.key - b.key).map((x) => x.job);
      for (let i = 0; i < order.length; i += WAVE) await Promise.all(order.slice(i, i + WAVE).map((job) => job()));

      stop = true;
      await withTimeout(goodLoop, 'the good link\'s calls to finish');
      assert.deepEqual(goodFailures.map(String), [], `seed ${seed}: the well-behaved link's calls all succeed`);
      assert.ok(goodCalls > 0, 'the well-behaved link made calls throughout');
      assert.equal(good.state, 'ready');
      // And the server still takes new links.
      const late = openLink(address);
      try {
        await late.whenReady(5000);
        const request = requestEnvelope('/after-fuzz', 'still up');
        assert.equal(Buffer.from((await late.call(request)).payload!).toString(), 'still up');
      } finally {
        late.close();
      }
      assert.deepEqual(uncaught.map(String), [], `seed ${seed}: no uncaught exception or unhandled rejection`);
      console.log(`# MeshServer fuzz: seed ${seed}, ${CALLS * 2 * PER_CALL} messages on ${CALLS * 2} calls, ${goodCalls} good calls alongside, ${(performance.now() - started).toFixed(0)} ms; ${JSON.stringify(tally)}`);
    } finally {
      stop = true;
      good.close();
      client.close();
      await server.close();
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
    }
  });
});

describe('MeshServer Stream calls: bugs found by the fuzzer', () => {
  const HEAD = () => encodeFrame({ head: { id: 'ab', type: MessageType.REQUEST, http: { method: 'POST', path: '/', bodyFollows: true } } });
  const END = Buffer.from('1a00', 'hex');
  const UNDECODABLE = Buffer.from('ffffffff', 'hex');

  async function run(frames: Buffer[]): Promise<{ outcome: Outcome | 'hang'; uncaught: unknown[] }> {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => { uncaught.push(err); };
    process.on('uncaughtException', onUncaught);
    const handler: InboundHandler = {
      unary: (request) => Promise.resolve(echo(request)),
      async stream(head, body) {
        if (body instanceof Readable) { try { for await (const chunk of body) void chunk; } catch { /* ended by an error */ } }
        return { head: { id: newMessageId(), type: MessageType.RESPONSE, correlationId: head.id, http: { status: 200 } }, body: null };
      },
      pull: () => undefined,
    };
    const { server, address } = await startServer(handler);
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const outcome = await rawCall(client, STREAM_METHOD, frames, 3000);
      // Let any late error events fire: the server's answer is out, so one more round trip is plenty.
      const link = openLink(address);
      try { await link.whenReady(5000); await link.call(requestEnvelope('/ping')); } finally { link.close(); }
      return { outcome, uncaught };
    } finally {
      client.close();
      await server.close();
      process.off('uncaughtException', onUncaught);
    }
  }

  it('Link: a protocol violation followed by an undecodable message: the call ends (ERROR envelope, status OK or INTERNAL)', async () => {
    const { server, address } = await startServer(new FuzzHandler());
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const messages = [encodeBatch({ envelopes: [helloEnvelope(PROTOCOL_MAJOR, 0)] }), encodeBatch({ envelopes: [{ id: 'a', type: MessageType.TYPE_UNSPECIFIED }] }), UNDECODABLE];
    try {
      assert.notEqual(await rawCall(client, LINK_METHOD, messages, 3000), 'hang', `messages ${messages.map(hex).join(' ')}`);
    } finally {
      client.close();
      await server.close();
    }
  });

  it('a head (body follows), `end`, then an undecodable frame: the call ends (status INTERNAL or OK)', async () => {
    const { outcome, uncaught } = await run([HEAD(), END, UNDECODABLE]);
    assert.notEqual(outcome, 'hang', `frames ${[HEAD(), END, UNDECODABLE].map(hex).join(' ')}`);
    assert.deepEqual(uncaught.map(String), [], 'no uncaught exception');
  });
});
