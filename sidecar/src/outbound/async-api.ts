// The asynchronous side of the outbound listener:
//   - a routed request with `Prefer: respond-async` (RFC 7240) is written to the outbox and answered
//     202 Accepted with `Location: /mesh/v1/messages/<id>` once it is on disk;
//   - the mesh API routes for message status, publishing to a topic and the dead-letter queue.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { AsyncMessaging } from '../async/messaging.ts';
import type { PriorityName } from '../async/types.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { endToEndRequestHeaders } from '../http/headers.ts';
import type { Header } from '../mcp/codec.ts';
import type { ServiceTarget } from './target.ts';

export const MESSAGES_PATH = '/mesh/v1/messages';

/** Does the request ask for asynchronous handling (`Prefer: respond-async`, RFC 7240)? */
export function prefersAsync(req: IncomingMessage): boolean {
  const prefer = req.headers.prefer;
  if (prefer === undefined) return false;
  return preferTokens(prefer).includes('respond-async');
}

function preferTokens(prefer: string | string[]): string[] {
  return [prefer].flat().join(',').split(',').map((p) => p.split(';')[0]!.trim().toLowerCase());
}

/** The mesh's own per-call headers: `mcp-mesh-priority` and `mcp-mesh-ordering-key`. */
export function callPriority(req: IncomingMessage): PriorityName | undefined {
  const value = req.headers['mcp-mesh-priority'];
  if (value === undefined) return undefined;
  const priority = String(value).trim().toLowerCase();
  if (priority === 'high' || priority === 'medium' || priority === 'low') return priority;
  throw new MeshError('BAD_REQUEST', `mcp-mesh-priority must be high, medium or low, not "${String(value)}"`);
}

function orderingKey(req: IncomingMessage): string | undefined {
  const value = req.headers['mcp-mesh-ordering-key'];
  if (value === undefined) return undefined;
  const key = String(value);
  if (key.length === 0 || key.length > 256) throw new MeshError('BAD_REQUEST', 'mcp-mesh-ordering-key must be 1 to 256 characters');
  return key;
}

export interface AcceptOptions {
  messaging: AsyncMessaging;
  maxMessageBytes: number;
  /** The app's headers and the forwarding ones this hop adds (Forwarded, X-Forwarded-For), as for a synchronous call. */
  headers: Header[];
}

/** Write the call to the outbox, then answer 202 with where its status can be read. */
export async function acceptAsync(req: IncomingMessage, res: ServerResponse, target: ServiceTarget, call: { path: string; authority: string }, options: AcceptOptions): Promise<void> {
  const priority = callPriority(req);
  const key = orderingKey(req);
  const body = await readWhole(req, options.maxMessageBytes, target.service);
  const headers = options.headers.filter((h) => h.name !== 'content-length').flatMap(withoutRespondAsync);
  const id = await options.messaging.accept({
    service: target.service, namespace: target.namespace, priority, orderingKey: key,
    request: { method: req.method!, path: call.path, authority: call.authority, headers, body },
  });
  const location = `${MESSAGES_PATH}/${id}`;
  const answer = JSON.stringify({ id, state: 'queued', location });
  res.writeHead(202, {
    'content-type': 'application/json', 'content-length': Buffer.byteLength(answer), location, 'preference-applied': 'respond-async',
  });
  res.end(answer);
}

/** `Prefer: respond-async` is for this sidecar; other preferences go on to the app. */
function withoutRespondAsync(header: Header): Header[] {
  if (header.name !== 'prefer') return [header];
  const rest = header.value.split(',').filter((p) => p.split(';')[0]!.trim().toLowerCase() !== 'respond-async').map((p) => p.trim());
  return rest.length > 0 ? [{ name: 'prefer', value: rest.join(', ') }] : [];
}

async function readWhole(req: IncomingMessage, limit: number, service: string): Promise<Buffer> {
  const declared = req.headers['content-length'];
  const tooLarge = () => new MeshError('BODY_TOO_LARGE', `an async message body may be at most ${limit} bytes (storage.maxMessageBytes)`, { service });
  if (declared !== undefined && Number(declared) > limit) {
    req.resume(); // let the client finish sending so it can read the 413
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > limit) {
      req.resume();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const IdParams = Type.Object({ id: Type.String({ pattern: '^[0-9A-HJKMNP-TV-Z]{26}$' }) });
const TopicParams = Type.Object({ topic: Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9._-]{0,247}[A-Za-z0-9])?$' }) });
const PageQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  after: Type.Optional(Type.String({ pattern: '^[0-9A-HJKMNP-TV-Z]{26}$' })),
}, { additionalProperties: false });

function notFound(id: string, what: string): MeshError {
  return new MeshError('MESSAGE_NOT_FOUND', `no ${what} ${id} is kept by this sidecar`);
}

export function registerAsyncRoutes(app: FastifyInstance, messaging: AsyncMessaging, maxMessageBytes: number): void {
  app.get(`${MESSAGES_PATH}/:id`, { schema: { params: IdParams } }, async (request) => {
    const { id } = request.params as Static<typeof IdParams>;
    const view = await messaging.status(id);
    if (!view) throw notFound(id, 'message');
    return view;
  });

  app.get('/mesh/v1/dead-letters', { schema: { querystring: PageQuery } }, async (request) => {
    const { limit, after } = request.query as Static<typeof PageQuery>;
    const deadLetters = await messaging.deadLetters(limit, after);
    return { deadLetters, ...(deadLetters.length === limit ? { next: deadLetters.at(-1)!.id } : {}) };
  });
  app.get('/mesh/v1/dead-letters/:id', { schema: { params: IdParams } }, async (request) => {
    const { id } = request.params as Static<typeof IdParams>;
    const view = await messaging.deadLetter(id);
    if (!view) throw notFound(id, 'dead letter');
    return view;
  });
  app.post('/mesh/v1/dead-letters/replay', async () => ({ replayed: await messaging.replay(undefined) }));
  app.post('/mesh/v1/dead-letters/:id/replay', { schema: { params: IdParams } }, async (request) => {
    const { id } = request.params as Static<typeof IdParams>;
    const replayed = await messaging.replay(id);
    if (replayed.length === 0) throw notFound(id, 'dead letter');
    return { replayed };
  });
  app.delete('/mesh/v1/dead-letters', async () => ({ deleted: await messaging.deleteDead(undefined) }));
  app.delete('/mesh/v1/dead-letters/:id', { schema: { params: IdParams } }, async (request, reply) => {
    const { id } = request.params as Static<typeof IdParams>;
    if (await messaging.deleteDead(id) === 0) throw notFound(id, 'dead letter');
    return reply.code(204).send();
  });

  // Publishing takes any body as it is: its own scope, with one raw parser for every content type.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxMessageBytes }, (_request, body, done) => done(null, body));
    scope.post('/mesh/v1/publish/:topic', { schema: { params: TopicParams }, bodyLimit: maxMessageBytes }, async (request, reply) => {
      const { topic } = request.params as Static<typeof TopicParams>;
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const headers = endToEndRequestHeaders(request.raw.rawHeaders).filter((h) => h.name !== 'content-length' && h.name !== 'prefer');
      const published = await messaging.publish(topic, { headers, body, priority: callPriority(request.raw), orderingKey: orderingKey(request.raw) });
      return reply.code(202).send({
        id: published.eventId, topic, messages: published.messages.map((m) => ({ ...m, location: `${MESSAGES_PATH}/${m.id}` })),
        ...(published.unreached.length > 0 ? { unreached: published.unreached } : {}),
      });
    });
  });
}
