// The outbound listener: where the local app's HTTP calls enter the mesh. Fastify owns the listener
// and the mesh API routes (Host = the sidecar itself); proxied calls are taken off the server before
// fastify's router (serverFactory), because they need the raw request: absolute-form targets,
// CONNECT tunnels, exact headers and an unparsed, streaming body.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline as streamPipeline, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { fastifyLogging } from '../telemetry/logger.ts';
import { levelOf } from '../telemetry/request-log.ts';
import type { CallPipeline, CallResult, OutboundCall, RequestBody } from '../call/pipeline.ts';
import { toMs } from '../config/duration.ts';
import { MeshError, toMeshError } from '../errors/mesh-error.ts';
import { answerWithMeshErrors } from '../errors/fastify.ts';
import { endWithMeshError, sendMeshError } from '../errors/respond.ts';
import { endToEndRequestHeaders, toFlat } from '../http/headers.ts';
import type { Header } from '../mcp/codec.ts';
import type { AsyncMessaging } from '../async/messaging.ts';
import { acceptAsync, callPriority, prefersAsync, registerAsyncRoutes } from './async-api.ts';
import { registerBatchRoute } from './batch.ts';
import { allowedBy, forwardEgress, notAllowed, tunnelEgress, type EgressOptions } from './egress.ts';
import { hostOf, serviceTarget, splitTarget, TargetCache } from './target.ts';

export interface OutboundOptions {
  namespace: string;
  maxBodyBytes: number;
  inlineBodyBytes: number;
  /** Largest request head, and the time the app has to send one (slow clients). */
  maxHeaderBytes: number;
  headerTimeoutMs: number;
  /** A request refused by a limit before it became a call (metrics). */
  onLimit?: (limit: 'header_size' | 'header_timeout' | 'malformed' | 'body_size') => void;
  logger: Logger;
  pipeline: CallPipeline;
  /** Services discovery knows, for CONNECT (the tunnel is opened only to a known service). */
  isKnownService: (service: string, namespace: string) => boolean;
  /** Async calls, pub/sub and dead letters (async/). */
  async: { messaging: AsyncMessaging; maxMessageBytes: number };
  /** Calls to hosts outside the mesh (egress.ts). */
  egress: EgressOptions;
}

export interface OutboundListener {
  app: FastifyInstance;
  /** Start refusing new calls (503 SHUTTING_DOWN); calls in flight go on. */
  stopAccepting(): void;
  /** Resolves when no call is in flight any more, or after `graceMs`. */
  drain(graceMs: number): Promise<void>;
  inFlight(): number;
}

export function createOutbound(options: OutboundOptions): OutboundListener {
  let accepting = true;
  let inFlight = 0;
  const idleWaiters: (() => void)[] = [];
  let ownAuthorities = new Set<string>();

  const handleProxy = (req: IncomingMessage, res: ServerResponse): void => {
    if (!accepting) return sendMeshError(res, new MeshError('SHUTTING_DOWN', 'this sidecar is shutting down'));
    inFlight++;
    res.on('close', () => { // 'close' comes once; `on` spares the wrapper `once` makes
      inFlight--;
      if (inFlight === 0) for (const wake of idleWaiters.splice(0)) wake();
    });
    proxy(req, res, options, targets).catch((err: unknown) => answerFailure(req, res, err, options, false));
  };
  const targets = new TargetCache(options.namespace);

  const app = Fastify({
    ...fastifyLogging(options.logger),
    // Long streams (SSE) must not be cut by the server's own timeouts.
    requestTimeout: 0,
    connectionTimeout: 0,
    forceCloseConnections: 'idle',
    // A request head too large, too slow or not HTTP never reaches a route: answered here, coded.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Socket) => refuseClient(err, socket, options),
    serverFactory: (fastifyHandler) => {
      const server = createServer({
        keepAliveTimeout: 65_000,
        maxHeaderSize: options.maxHeaderBytes,
        // A request without Host is answered by proxy() with a coded BAD_REQUEST, not Node's bare 400.
        requireHostHeader: false,
        // Only the head is timed (slowloris); bodies and streams may take as long as the call does.
        headersTimeout: options.headerTimeoutMs,
        requestTimeout: 0,
        // Node checks those timeouts on this interval (30 s by default): often enough for the limit to mean what it says.
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(options.headerTimeoutMs / 4))),
      }, (req, res) => {
        if (isForMeshApi(req, ownAuthorities)) fastifyHandler(req, res);
        else handleProxy(req, res);
      });
      server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => tunnel(server, req, socket, head, options));
      return server;
    },
  });
  app.addHook('onListen', async () => {
    const address = app.server.address();
    if (address && typeof address === 'object') {
      const port = address.port;
      ownAuthorities = new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${address.address}:${port}`]);
    }
  });
  // Requests addressed to the sidecar itself are for the mesh API (/mesh/v1/…); anything else there is unknown.
  registerBatchRoute(app, options.namespace, options.pipeline);
  registerAsyncRoutes(app, options.async.messaging, options.async.maxMessageBytes);
  // Mesh API errors are mesh errors too: coded, answered by the same writer as a call's.
  answerWithMeshErrors(app, (request) => `no mesh API route ${request.method} ${request.url} (a call to a service needs its name in Host)`);
  const drain = async (graceMs: number): Promise<void> => {
    if (inFlight === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, graceMs);
      idleWaiters.push(() => { clearTimeout(timer); resolve(); });
    });
  };
  return { app, stopAccepting: () => { accepting = false; }, drain, inFlight: () => inFlight };
}

/**
 * A proxied call failed: answer it with its mesh error. A call that failed in the pipeline has its
 * line in the request log already (telemetry/request-log.ts), at warn with its code; the failures
 * it never sees are logged by logFailure.
 */
function answerFailure(req: IncomingMessage, res: ServerResponse, err: unknown, options: OutboundOptions, inRequestLog: boolean): void {
  // Reading the body failed because the app closed the connection mid-upload: the caller went
  // away; not a fault of the sidecar.
  const meshError = !(err instanceof MeshError) && !req.complete && req.errored
    ? new MeshError('CLIENT_CLOSED', 'the calling app broke off its upload')
    : toMeshError(err);
  if (meshError.code === 'BODY_TOO_LARGE') options.onLimit?.('body_size');
  // An upload the app broke off gets its own line even when the call's request line has it.
  if (!inRequestLog || uploadBrokenOff(req, meshError)) logFailure(options.logger, req, res, meshError);
  // A body not read to its end (refused by its size, or the call failed first) is not drained
  // for keep-alive: `Connection: close`, and Node closes the connection once the answer is out.
  if (!req.complete && !res.headersSent) res.setHeader('connection', 'close');
  sendMeshError(res, meshError);
}

/**
 * A failed call the request log did not see: it failed before reaching the pipeline (a bad target,
 * a body over the limit, an async call not accepted) or after its answer's head went out (a stream
 * cut midway; the request log has the head's status). The caller going away is not a failure, but
 * an upload it broke off is logged at info: the app sent part of a body and nothing was done with it.
 */
function logFailure(logger: Logger, req: IncomingMessage, res: ServerResponse, err: MeshError): void {
  const brokenOff = uploadBrokenOff(req, err);
  if (err.code === 'CLIENT_CLOSED' && !brokenOff) return;
  const level = brokenOff ? 'info' : levelOf(err.code);
  if (!logger.isLevelEnabled(level)) return;
  const message = brokenOff ? 'the calling app broke off its upload' : err.message;
  logger[level]({ direction: 'outbound', method: req.method, target: err.service, status: err.status, code: err.code, afterHead: res.headersSent || undefined }, message);
}

/** The app closed its connection while still sending the request body. */
function uploadBrokenOff(req: IncomingMessage, err: MeshError): boolean {
  return err.code === 'CLIENT_CLOSED' && !req.complete;
}

/**
 * Node's HTTP parser gave up on a connection: a head over limits.maxHeaderBytes, a head not complete
 * within limits.headerTimeout, or bytes that are not HTTP. Answer with a coded mesh error when the
 * socket can still take one, then close it (the parser cannot go on after such an error).
 */
function refuseClient(err: NodeJS.ErrnoException, socket: Socket, options: OutboundOptions): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // The app closed its end in the middle of a request (an upload broken off): not malformed, and
  // no one to answer; the request's own handler reports it (CLIENT_CLOSED).
  const refusal = err.code === 'HPE_INVALID_EOF_STATE' ? undefined : refusalOf(err, options);
  if (refusal) {
    options.onLimit?.(refusal.limit);
    options.logger.debug({ code: refusal.error.code, reason: err.code }, refusal.error.message);
  }
  // A response still being written for a request that arrived whole (the bad bytes came after it, on
  // the same connection) is let finish first; only then is the connection closed. A request whose own
  // body was malformed cannot be answered: its connection closes at once.
  const inProgress = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (inProgress && !inProgress.writableFinished && inProgress.req.complete) {
    inProgress.once('finish', () => socket.destroy());
    inProgress.once('close', () => socket.destroy());
    return;
  }
  if (refusal) endWithMeshError(socket, refusal.error);
  socket.destroy();
}

/** The coded answer to what Node's parser gave up on, and the limit it counts against. */
function refusalOf(err: NodeJS.ErrnoException, options: OutboundOptions): { error: MeshError; limit: 'header_size' | 'header_timeout' | 'malformed' } {
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return { error: new MeshError('HEADERS_TOO_LARGE', `the request head is larger than ${options.maxHeaderBytes} bytes (limits.maxHeaderBytes)`), limit: 'header_size' };
  }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return { error: new MeshError('REQUEST_TIMEOUT', `no complete request head within ${options.headerTimeoutMs} ms (limits.headerTimeout)`), limit: 'header_timeout' };
  }
  return { error: new MeshError('BAD_REQUEST', `malformed HTTP request: ${err.code ?? err.message}`), limit: 'malformed' };
}

/** host or [IPv6] (with a zone id, %25 escaped: RFC 6874), then an optional port: what a request may name as its target. */
const WELL_FORMED_AUTHORITY = /^(\[[0-9A-Fa-f:.]+(%25[0-9A-Za-z._~-]+)?\]|[^\s[\]/@:]+)(:[0-9]{1,5})?$/;

function isForMeshApi(req: IncomingMessage, ownAuthorities: Set<string>): boolean {
  return req.url!.startsWith('/') && ownAuthorities.has(req.headers.host ?? '');
}

async function proxy(req: IncomingMessage, res: ServerResponse, options: OutboundOptions, targets: TargetCache): Promise<void> {
  const { authority, path } = splitTarget(req.url!, req.headers.host);
  if (!authority) throw new MeshError('BAD_REQUEST', 'the request names no service: send a Host header or an absolute URL');
  const target = targets.get(authority);
  // An authority that names a service is well formed already; only the others need the check.
  if (!target && !WELL_FORMED_AUTHORITY.test(authority)) throw new MeshError('BAD_REQUEST', `"${authority}" is not a host[:port]`);
  if (!target || (options.egress.allow.length > 0 && !options.isKnownService(target.service, target.namespace))) {
    // Not a service discovery knows (asked only when egress allows some hosts): a host outside the
    // mesh, forwarded only if egress allows it; otherwise the pipeline answers UNKNOWN_SERVICE.
    const entry = allowedBy(hostOf(authority), options.egress.allow);
    if (entry !== undefined) return forwardEgress(req, res, { authority, path, entry, headers: requestHeaders(req, authority) }, options.egress);
    if (!target) throw notAllowed(hostOf(authority));
  }
  if (prefersAsync(req)) {
    if (!options.isKnownService(target.service, target.namespace)) {
      throw new MeshError('UNKNOWN_SERVICE', `no service "${target.service}" in namespace "${target.namespace}" is known to discovery`, { service: target.service });
    }
    const { messaging, maxMessageBytes } = options.async;
    return acceptAsync(req, res, target, { path, authority }, { messaging, maxMessageBytes, headers: requestHeaders(req, authority) });
  }

  // The call's one AbortController (its signal and deadline are the call's, from here on).
  const clientGone = new AbortController();
  res.on('close', () => { if (!res.writableFinished) clientGone.abort(new MeshError('CLIENT_CLOSED', 'the calling app went away', { service: `${target.service}.${target.namespace}` })); });

  const call: OutboundCall = {
    target,
    method: req.method!,
    path,
    authority,
    headers: requestHeaders(req, authority),
    body: await readBody(req, options, target.service),
    expectStream: (req.headers.accept ?? '').includes('text/event-stream'),
    deadlineMs: deadlineOf(req),
    cancel: clientGone,
    priority: callPriority(req),
  };
  let result: CallResult;
  try {
    result = await options.pipeline(call);
  } catch (err) {
    return answerFailure(req, res, err, options, true);
  }
  try {
    res.writeHead(result.status, toFlat(result.headers));
  } catch (err) {
    // A head Node refuses (no status, a bad header character from a faulty peer): drop the body too.
    if (!Buffer.isBuffer(result.body)) result.body.destroy();
    throw new MeshError('PROTOCOL_ERROR', `the peer's answer cannot be sent on: ${(err as Error).message}`, { service: target.service });
  }
  if (Buffer.isBuffer(result.body)) {
    res.end(result.body);
    return;
  }
  res.flushHeaders(); // an SSE client needs the head before the first event
  await pipeline(result.body, res).catch((err: unknown) => {
    // The app hung up on a stream (an SSE client leaving): nothing broke; pipeline() has already
    // destroyed the body, which cancels the call up to the called app.
    if (clientGone.signal.aborted) throw new MeshError('CLIENT_CLOSED', 'the calling app closed the stream', { service: target.service });
    // Headers are out: the only signal left is to cut the response (sendMeshError does that).
    throw toMeshError(err, 'LINK_BROKEN', target.service);
  });
}

/** Small bodies with a known length are read whole and ride the shared link; the rest stream. */
async function readBody(req: IncomingMessage, options: OutboundOptions, service: string): Promise<RequestBody> {
  const lengthHeader = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (lengthHeader === undefined || lengthHeader === '0')) return { kind: 'none' };
  const length = lengthHeader === undefined ? undefined : Number(lengthHeader);
  if (options.maxBodyBytes > 0 && length !== undefined && length > options.maxBodyBytes) {
    // Not read at all: the 413 goes out with `Connection: close` (see handleProxy).
    throw new MeshError('BODY_TOO_LARGE', `request body of ${length} bytes is over the limit of ${options.maxBodyBytes}`, { service });
  }
  if (length !== undefined && length <= options.inlineBodyBytes) return { kind: 'inline', bytes: await readWhole(req) };
  if (options.maxBodyBytes > 0 && length === undefined) return { kind: 'stream', stream: limitBody(req, options.maxBodyBytes, service) };
  return { kind: 'stream', stream: req };
}

/**
 * A small body, read whole. Plain listeners rather than `for await`: an async iterator per request
 * costs more than the read itself. Fails as the iterator would, with the stream's error.
 */
function readWhole(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer) => { chunks.push(chunk); };
    const done = (err?: Error | null) => {
      req.off('data', onData);
      req.off('end', done);
      req.off('error', done);
      req.off('close', onClose);
      if (err) reject(err); else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)); // a chunk is the body's own memory: no copy
    };
    const onClose = () => { if (!req.readableEnded) done(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })); };
    if (req.destroyed) return onClose();
    // on, not once (done removes them all): once wraps each listener in another closure.
    req.on('data', onData);
    req.on('end', done);
    req.on('error', done);
    req.on('close', onClose);
  });
}

/** A chunked body is counted as it streams; past the limit the call fails with BODY_TOO_LARGE. */
function limitBody(req: IncomingMessage, maxBytes: number, service: string): Readable {
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.byteLength;
      if (seen > maxBytes) done(new MeshError('BODY_TOO_LARGE', `request body is over the limit of ${maxBytes} bytes`, { service }));
      else done(null, chunk);
    },
  });
  // pipeline() wires errors both ways and never leaves one unhandled: a client that aborts its upload
  // while the call still waits (queue, start-up) must not take the process down.
  streamPipeline(req, counter, () => {});
  return counter;
}

/** The deadline the app asked for with `mcp-mesh-timeout: 250ms` (or ms); otherwise the policy's applies. */
function deadlineOf(req: IncomingMessage): number | undefined {
  const asked = req.headers['mcp-mesh-timeout'];
  if (typeof asked !== 'string') return undefined;
  try {
    return toMs(/^[0-9]+$/.test(asked) ? Number(asked) : asked);
  } catch {
    return undefined;
  }
}

/** The app's end-to-end headers, then the forwarding ones. */
function requestHeaders(req: IncomingMessage, authority: string): Header[] {
  // forwardingHeaders() re-emits x-forwarded-for with this hop appended, so the app's own line goes.
  const headers = endToEndRequestHeaders(req.rawHeaders, 'x-forwarded-for');
  const [forwarded, forwardedFor] = forwardingHeaders(req, authority);
  headers.push(forwarded!, forwardedFor!);
  return headers;
}

/** RFC 7239 `Forwarded` and the de-facto `X-Forwarded-For`, appended to what the app sent. */
function forwardingHeaders(req: IncomingMessage, authority: string): Header[] {
  const client = req.socket.remoteAddress ?? 'unknown';
  const forNode = client.includes(':') ? `"[${client}]"` : client;
  const previousXff = req.headers['x-forwarded-for'];
  // host is a quoted-string (RFC 7239): an authority with a port is not a token.
  const headers: Header[] = [{ name: 'forwarded', value: `for=${forNode};host="${authority.replace(/["\\]/g, '')}";proto=http` }];
  headers.push({ name: 'x-forwarded-for', value: previousXff ? `${previousXff}, ${client}` : client });
  return headers;
}

/**
 * CONNECT (Node's fetch with NODE_USE_ENV_PROXY=1 tunnels even plain HTTP this way): accepted only
 * for a known mesh service; the tunnelled bytes are then parsed by this same server, so the requests
 * inside go through the same routing and policies as any other call.
 */
function tunnel(server: Server, req: IncomingMessage, socket: Socket, head: Buffer, options: OutboundOptions): void {
  // Node drops its own error handler before 'connect': a client resetting now must not crash us.
  socket.on('error', () => socket.destroy());
  const target = serviceTarget(req.url ?? '', options.namespace);
  if (!target || !options.isKnownService(target.service, target.namespace)) {
    // Not a mesh service: a host outside the mesh, tunnelled only if egress allows it.
    const entry = allowedBy(hostOf(req.url ?? ''), options.egress.allow);
    if (entry !== undefined) {
      tunnelEgress(socket, head, { authority: req.url ?? '', entry }, options.egress).catch((err: unknown) => endWithMeshError(socket, toMeshError(err)));
      return;
    }
    endWithMeshError(socket, new MeshError('UNKNOWN_SERVICE', `CONNECT to "${req.url}" refused: not a known mesh service`, { service: target?.service ?? req.url ?? '' }));
    return;
  }
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) socket.unshift(head);
  server.emit('connection', socket);
}
