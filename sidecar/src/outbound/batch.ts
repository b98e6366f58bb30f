// POST /mesh/v1/batch on the outbound listener: many calls in one request. Each call goes through
// the same pipeline (policies, retries, breakers, affinity) as a call made by Host; they run
// concurrently under a limit, and the results come back in input order, each with its own answer or
// coded error (the status, headers and `error` the call alone would have got), so one failure never
// fails the batch.
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { CallPipeline, CallResult, OutboundCall } from '../call/pipeline.ts';
import { MeshError, toMeshError } from '../errors/mesh-error.ts';
import { errorAnswer } from '../errors/respond.ts';
import { endToEndRequestHeaders } from '../http/headers.ts';
import { jsonAnswer, type JsonAnswer } from '../http/json-answer.ts';
import { serviceTarget } from './target.ts';

/** Most calls in one batch, and the largest answer kept per call (a batch is for small calls). */
export const MAX_BATCH_CALLS = 1000;
export const MAX_RESULT_BODY_BYTES = 1024 * 1024;
/** Most answer bytes kept for a whole batch: the answer is one JSON document held in memory. */
export const MAX_BATCH_RESULT_BYTES = 32 * 1024 * 1024;

const BatchCall = Type.Object({
  service: Type.String({ minLength: 1, description: 'service name, as in a Host: payments, payments.shop, …' }),
  method: Type.String({ pattern: '^[A-Z]+$', default: 'GET' }),
  path: Type.String({ pattern: '^/', default: '/' }),
  headers: Type.Optional(Type.Record(Type.String(), Type.String())),
  body: Type.Optional(Type.String({ description: 'UTF-8 text' })),
  bodyBase64: Type.Optional(Type.String({ description: 'binary, base64' })),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
}, { additionalProperties: false });

const BatchRequest = Type.Object({
  calls: Type.Array(BatchCall, { minItems: 1, maxItems: MAX_BATCH_CALLS }),
  concurrency: Type.Integer({ minimum: 1, maximum: 256, default: 16 }),
}, { additionalProperties: false });

type BatchCall = Static<typeof BatchCall>;

/** An answer, or the mesh error the call alone would have been answered with (errors/respond.ts). */
export type BatchResult = JsonAnswer | ReturnType<typeof errorAnswer>;

export function registerBatchRoute(app: FastifyInstance, namespace: string, pipeline: CallPipeline): void {
  app.post('/mesh/v1/batch', { schema: { body: BatchRequest }, bodyLimit: 64 * 1024 * 1024 }, async (request, reply) => {
    const batch = request.body as Static<typeof BatchRequest>;
    // Each entry is a call with its own AbortController (its deadline aborts it); the app hanging up
    // aborts those still running.
    const running = new Set<AbortController>();
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished) return;
      for (const cancel of running) cancel.abort(new MeshError('CLIENT_CLOSED', 'the calling app went away'));
    });
    const room = { bytes: MAX_BATCH_RESULT_BYTES };
    const results = await runLimited(batch.calls, batch.concurrency, (call) => runOne(call, namespace, pipeline, running, room));
    return { results };
  });
}

async function runOne(entry: BatchCall, namespace: string, pipeline: CallPipeline, running: Set<AbortController>, room: { bytes: number }): Promise<BatchResult> {
  const cancel = new AbortController();
  running.add(cancel);
  try {
    const target = serviceTarget(entry.service, namespace);
    if (!target) throw new MeshError('UNKNOWN_SERVICE', `"${entry.service}" is not a mesh service name`, { service: entry.service });
    const raw = Object.entries(entry.headers ?? {}).flat();
    const body = entry.bodyBase64 !== undefined ? Buffer.from(entry.bodyBase64, 'base64') : entry.body !== undefined ? Buffer.from(entry.body, 'utf8') : undefined;
    const call: OutboundCall = {
      target,
      method: entry.method,
      path: entry.path,
      authority: entry.service,
      headers: endToEndRequestHeaders(raw),
      body: body && body.byteLength > 0 ? { kind: 'inline', bytes: body } : { kind: 'none' },
      expectStream: false,
      deadlineMs: entry.timeoutMs,
      cancel,
      batched: true,
    };
    return await toResult(await pipeline(call), entry.service, room);
  } catch (err) {
    return errorAnswer(toMeshError(err));
  } finally {
    running.delete(cancel);
  }
}

async function toResult(result: CallResult, service: string, room: { bytes: number }): Promise<BatchResult> {
  const limit = Math.min(MAX_RESULT_BODY_BYTES, room.bytes);
  const body = Buffer.isBuffer(result.body) ? result.body : await readLimited(result.body, service, limit);
  if (body.byteLength > limit) throw tooLarge(service, limit);
  room.bytes -= body.byteLength;
  return jsonAnswer(result.status, result.headers, body);
}

async function readLimited(stream: AsyncIterable<Buffer> & { destroy(): void }, service: string, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.byteLength;
    if (size > limit) {
      stream.destroy();
      throw tooLarge(service, limit);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function tooLarge(service: string, limit: number): MeshError {
  return new MeshError('BODY_TOO_LARGE', `the answer does not fit (${limit} bytes left of ${MAX_RESULT_BODY_BYTES} per call and ${MAX_BATCH_RESULT_BYTES} per batch); make large or streamed calls one by one`, { service });
}

/** Run `work` over `items` with at most `limit` at once; results in input order. */
async function runLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
