// The server end of MCP: a gRPC server with the Link and Stream methods. It speaks the protocol
// (HELLO, batches, heartbeats, CANCEL, DRAIN, frames) and hands each call to an InboundHandler,
// which knows about the app. A malformed message closes that one stream, never the process.
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { MeshError, toMeshError } from '../errors/mesh-error.ts';
import { Batcher } from './batcher.ts';
import { asBuffer, Compression, decodeBatch, decodeFrame, encodeBatch, encodeFrame, MessageType, Priority, type Batch, type Envelope, type Frame } from './codec.ts';
import { compressionCapability, compressPayload } from './compression.ts';
import { Capabilities, controlEnvelope, decompressEnvelope, Heartbeat } from './link-end.ts';
import { InboundConnections, type InboundConnectionLimits } from './connection-limits.ts';
import { newMessageId } from './ids.ts';
import { peerSource } from '../security/tls.ts';
import { type LinkEndSettings, LINK_METHOD, MAX_MESSAGE_BYTES, STREAM_METHOD } from './version.ts';

/** A response: the head (status, headers, inline payload) and, when streamed, the body. */
export interface InboundResponse {
  head: Envelope;
  body: AsyncIterable<Uint8Array> | null;
}

/**
 * Who made a call, as far as the called end can tell: the verified identity ("name.namespace" from
 * the peer's certificate; null in plaintext, where there is none) and the connection it came on (the
 * peer's address and port: a link and the Stream calls of its channel share one HTTP/2 connection).
 */
export interface CallOrigin {
  identity: string | null;
  connection: string;
}

export function sameOrigin(a: CallOrigin | undefined, b: CallOrigin | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.identity === b.identity && a.connection === b.connection);
}

export interface InboundHandler {
  /**
   * A REQUEST from a link, body inline. The response's body, if not inline, is parked for a pull by
   * `origin` (the server always gives one; undefined only for calls made inside the sidecar).
   */
  unary(request: Envelope, signal: AbortSignal, origin?: CallOrigin): Promise<Envelope>;
  /** A REQUEST on a Stream call: its body streams in, or is inline (Buffer), or absent. */
  stream(head: Envelope, body: Readable | Buffer | null, signal: AbortSignal): Promise<InboundResponse>;
  /**
   * The body of a response that unary() parked, or undefined if unknown or expired. Throws
   * BODY_PULL_DENIED (and keeps the body) when `origin` is not the origin of the call that parked it.
   */
  pull(bodyStreamId: string, origin?: CallOrigin): AsyncIterable<Uint8Array> | undefined;
}

export type MeshServerOptions = LinkEndSettings & {
  /** Bounds on the connections peers open to the inbound port (connection-limits.ts); none unless set. */
  connections?: InboundConnectionLimits;
};

/** The connection injector of one set of credentials, and the connections it accepted that are open. */
interface CredentialGeneration {
  injector: ReturnType<grpc.Server['createConnectionInjector']>;
  open: number;
}

/**
 * A request message that failed to decode. grpc-js (1.14), when its own deserializer throws, sends
 * INTERNAL straight on the HTTP/2 stream and ends it, behind the back of the call object: nothing
 * tells the handler, whose next write (an answer already under way, an ERROR envelope) then hits an
 * ended HTTP/2 stream, errors it before it can send its trailers, and the call never gets a status
 * (server-interceptors.js, BaseServerInterceptingCall.sendMessage does not check that a status went
 * out). So we decode leniently and end the call ourselves, in order with our own writes.
 */
class Undecodable {
  readonly reason: unknown;
  constructor(reason: unknown) { this.reason = reason; }
}

function lenient<T>(decode: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes) => {
    try { return decode(bytes); } catch (err) { return new Undecodable(err) as unknown as T; }
  };
}

/** The status grpc-js itself would have sent, through the call, so it follows what we wrote. */
function endUndecodable(call: grpc.ServerDuplexStream<unknown, unknown>): void {
  if (call.writableEnded) return; // our own answer is out: the call ends with it
  call.emit('error', { code: grpc.status.INTERNAL, details: 'Error deserializing request' });
}

const SERVICE: grpc.ServiceDefinition = {
  Link: {
    path: LINK_METHOD, requestStream: true, responseStream: true, originalName: 'link',
    requestSerialize: encodeBatch, requestDeserialize: lenient(decodeBatch),
    responseSerialize: encodeBatch, responseDeserialize: decodeBatch,
  },
  Stream: {
    path: STREAM_METHOD, requestStream: true, responseStream: true, originalName: 'stream',
    requestSerialize: encodeFrame, requestDeserialize: lenient(decodeFrame),
    responseSerialize: encodeFrame, responseDeserialize: decodeFrame,
  },
};

export class MeshServer {
  readonly #server: grpc.Server;
  readonly #handler: InboundHandler;
  readonly #options: MeshServerOptions;
  readonly #links = new Set<ServerLink>();
  /** Stream calls open per peer connection (maxStreamsPerPeer). */
  readonly #streamsByPeer = new Map<string, number>();
  #inFlight = 0;
  #listener: Server | undefined;
  readonly #connections: InboundConnections;
  #injector: CredentialGeneration | undefined;
  /** Injectors of earlier credentials with connections still open; each is released when its last one ends. */
  readonly #oldInjectors = new Set<CredentialGeneration>();
  #draining = false;
  #idleWaiters: (() => void)[] = [];
  /** The destinations this sidecar answers: its own service and its aliases. */
  readonly #serves: ReadonlySet<string>;

  constructor(handler: InboundHandler, options: MeshServerOptions) {
    this.#handler = handler;
    this.#options = options;
    this.#serves = new Set([options.source, ...(options.aliases ?? [])]);
    this.#connections = new InboundConnections(options.connections, options.logger);
    this.#server = new grpc.Server({
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      ...this.#connections.grpcOptions(),
    });
    this.#server.addService(SERVICE, {
      Link: (call: grpc.ServerDuplexStream<Batch, Batch>) => this.#onLink(call),
      Stream: (call: grpc.ServerDuplexStream<Frame, Frame>) => this.#onStream(call),
    });
  }

  /**
   * Bind and start; resolves with the port actually bound (for port 0). The TCP listener is ours,
   * not grpc-js's, so that accepted sockets get TCP_NODELAY: without it the kernel holds small
   * response batches back (Nagle) and answers stall for milliseconds under load.
   */
  async listen(host: string, port: number, credentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    this.#injector = this.#generation(credentials);
    // Each accepted socket goes to the injector of the credentials current at that moment.
    const listener = createServer({ noDelay: true }, (socket) => {
      if (!this.#connections.admit(socket)) return;
      const generation = this.#injector!;
      generation.open++;
      socket.once('close', () => {
        generation.open--;
        if (generation.open === 0 && this.#oldInjectors.delete(generation)) generation.injector.destroy();
      });
      generation.injector.injectConnection(socket);
    });
    this.#connections.watch(listener);
    this.#listener = listener;
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(port, host, () => { listener.off('error', reject); resolve(); });
    });
    return (listener.address() as AddressInfo).port;
  }

  /**
   * New certificates: connections accepted from now on are handshaken with `credentials`. The
   * listener stays; connections already open keep their TLS session (and their streams) until they
   * end; the old injector is released with the last of them.
   */
  setCredentials(credentials: grpc.ServerCredentials): void {
    if (!this.#injector) throw new Error('setCredentials before listen');
    const old = this.#injector;
    this.#injector = this.#generation(credentials);
    if (old.open > 0) this.#oldInjectors.add(old);
    else old.injector.destroy();
  }

  /** Credential sets in use: the current one, and earlier ones that still have open connections. */
  get credentialGenerations(): number {
    return (this.#injector ? 1 : 0) + this.#oldInjectors.size;
  }

  #generation(credentials: grpc.ServerCredentials): CredentialGeneration {
    return { injector: this.#server.createConnectionInjector(credentials), open: 0 };
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Stop taking new calls: tell every peer (DRAIN), refuse new REQUESTs with SHUTTING_DOWN, and
   * resolve when the calls in flight have finished or `graceMs` has passed.
   */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    for (const link of this.#links) link.sendDrain();
    if (this.#inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idleWaiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  async close(): Promise<void> {
    for (const link of this.#links) link.close({ flush: true });
    this.#listener?.close();
    this.#injector?.injector.destroy();
    for (const old of this.#oldInjectors) old.injector.destroy();
    this.#oldInjectors.clear();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.#server.forceShutdown(); resolve(); }, 1000);
      this.#server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
  }

  // Counted for drain(): a call is in flight from arrival until its answer is written.
  #begin(): void {
    this.#inFlight++;
  }

  #finish(): void {
    this.#inFlight--;
    if (this.#inFlight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  /**
   * With mTLS, the peer's verified name, or undefined after refusing the call (UNAUTHENTICATED)
   * when its certificate carries no usable identity. Without TLS: null (the claimed source stands).
   */
  #verifiedSource(call: grpc.ServerDuplexStream<unknown, unknown>): string | null | undefined {
    const tls = this.#options.tls;
    if (!tls) return null;
    const peer = peerSource(call, tls.trustDomain);
    if (typeof peer === 'string') {
      this.#options.logger.warn({ code: 'TLS_PEER_REFUSED', peer: call.getPeer() }, `refusing a peer call: ${peer}`);
      call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: `peer identity refused: ${peer}` });
      return undefined;
    }
    return peer.source;
  }

  /** Put the verified name in place of the claimed one (a disagreement is logged at debug). */
  #useVerifiedSource(envelope: Envelope, verified: string | null): void {
    if (verified === null || envelope.source === verified) return;
    if (envelope.source) this.#options.logger.debug({ claimed: envelope.source, verified, request: envelope.id }, 'claimed source replaced by the certificate identity');
    envelope.source = verified;
  }

  /**
   * The refusal of a call addressed to a service this sidecar does not serve (a reused pod address,
   * a stale endpoint list), or undefined. An envelope without a destination is let through: body
   * pulls carry none, and neither did peers older than this check (docs/protocol.md).
   */
  #misdirected(envelope: Envelope, origin: CallOrigin): MeshError | undefined {
    const destination = envelope.destination;
    if (!destination || this.#serves.has(destination.toLowerCase())) return undefined;
    this.#options.onRefused?.('misdirected');
    this.#options.logger.warn({ code: 'MISDIRECTED', destination, source: envelope.source, peer: origin.connection, request: envelope.id },
      `refusing a call for ${destination}: this sidecar serves ${[...this.#serves].join(', ')}`);
    return new MeshError('MISDIRECTED', `${this.#options.source} does not serve ${destination}; the call was not run`);
  }

  #onLink(call: grpc.ServerDuplexStream<Batch, Batch>): void {
    const verified = this.#verifiedSource(call);
    if (verified === undefined) return;
    const origin: CallOrigin = { identity: verified, connection: call.getPeer() };
    if (verified !== null) {
      // Which certificate the peer presented: what an operator checks after rotating certificates.
      const fingerprint = (call.getAuthContext()?.sslPeerCertificate as { fingerprint256?: string } | undefined)?.fingerprint256;
      this.#options.logger.debug({ peer: call.getPeer(), source: verified, fingerprint }, 'link accepted');
    }
    const link = new ServerLink(call, this.#options, {
      onRequest: (request, reply, signal) => {
        this.#useVerifiedSource(request, verified);
        const misdirected = this.#misdirected(request, origin);
        if (misdirected) {
          reply(errorEnvelope(request, misdirected));
          return;
        }
        if (this.#draining) {
          reply(errorEnvelope(request, new MeshError('SHUTTING_DOWN', `${this.#options.source} is draining`)));
          return;
        }
        this.#begin();
        // Counted out once its answer is queued (drain waits for that); no .finally(): one promise less per call.
        this.#handler.unary(request, signal, origin).then((response) => {
          try { reply(response); } finally { this.#finish(); }
        }, (err: unknown) => {
          try {
            if (!signal.aborted || !(err instanceof MeshError && err.code === 'CLIENT_CLOSED')) reply(errorEnvelope(request, toMeshError(err)));
          } finally { this.#finish(); }
        });
      },
      isDraining: () => this.#draining,
    });
    this.#links.add(link);
    call.on('close', () => this.#links.delete(link));
  }

  #onStream(call: grpc.ServerDuplexStream<Frame, Frame>): void {
    const verified = this.#verifiedSource(call);
    if (verified === undefined) return;
    // Each stream holds memory and an app connection: one peer gets at most maxStreamsPerPeer at once.
    const peer = call.getPeer();
    const origin: CallOrigin = { identity: verified, connection: peer };
    const open = this.#streamsByPeer.get(peer) ?? 0;
    const limit = this.#options.maxStreamsPerPeer ?? Infinity;
    if (open >= limit) {
      this.#options.onLimit?.('streams_per_peer');
      call.write({ error: { code: 'OVERLOADED', message: `${open} streams from ${verified || peer} are open, the most one peer may have (limits.maxStreamsPerPeer: ${limit})` } });
      call.end();
      return;
    }
    this.#streamsByPeer.set(peer, open + 1);
    call.once('close', () => {
      const left = (this.#streamsByPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.#streamsByPeer.set(peer, left); else this.#streamsByPeer.delete(peer);
    });
    const abort = new AbortController();
    let body: Readable | null = null;
    let gotHead = false;
    let finished = false;
    const fail = (err: MeshError) => {
      if (finished) return;
      finished = true;
      abort.abort(err);
      body?.destroy(err);
      if (call.writableEnded) return; // ended already (an undecodable frame): nothing more goes out
      call.write({ error: { code: err.code, message: err.message } });
      call.end();
    };
    call.on('cancelled', () => { abort.abort(new MeshError('CLIENT_CLOSED', 'caller cancelled the stream')); body?.destroy(); });
    call.on('error', (err) => { abort.abort(toMeshError(err, 'PROTOCOL_ERROR')); body?.destroy(); });
    call.on('data', (frame: Frame) => {
      if (frame instanceof Undecodable) {
        if (finished) return;
        finished = true;
        endUndecodable(call); // its 'error' aborts the app's call and fails the body
        return;
      }
      if (call.writableEnded) return; // the call is over: what the peer still sends goes nowhere
      if (!gotHead) {
        gotHead = true;
        if (!frame.head) return fail(new MeshError('PROTOCOL_ERROR', 'a Stream call must start with a head frame'));
        if (this.#draining && !frame.head.http?.bodyStreamId) return fail(new MeshError('SHUTTING_DOWN', `${this.#options.source} is draining`));
        // Streams are never compressed (README.md): compressed bytes must not reach the app as a body.
        if (frame.head.compression) return fail(new MeshError('PROTOCOL_ERROR', 'a Stream call\'s payload cannot be compressed'));
        const head = frame.head;
        this.#useVerifiedSource(head, verified);
        const pullId = head.http?.bodyStreamId;
        if (pullId) {
          let parked: AsyncIterable<Uint8Array> | undefined;
          try {
            parked = this.#handler.pull(pullId, origin);
          } catch (err) {
            const refused = toMeshError(err);
            if (refused.code === 'BODY_PULL_DENIED') {
              this.#options.onRefused?.('body_pull_denied');
              this.#options.logger.warn({ code: refused.code, source: verified, peer }, 'refusing a pull of a parked response body made for another caller');
            }
            return fail(refused);
          }
          if (!parked) return fail(new MeshError('PROTOCOL_ERROR', `no parked response body ${pullId} (expired or already taken)`));
          this.#begin();
          // Every Stream response starts with a head frame, a pull's too (status and headers came on the link).
          call.write({ head: { id: newMessageId(), type: MessageType.RESPONSE, timestampMs: Date.now(), correlationId: head.id } });
          pipeBody(call, parked, abort.signal).then(() => { finished = true; }, (err) => fail(toMeshError(err, 'APP_RESET'))).finally(() => this.#finish());
          return;
        }
        const misdirected = this.#misdirected(head, origin);
        if (misdirected) return fail(misdirected);
        let appBody: Readable | Buffer | null = null;
        if (head.http?.bodyFollows) {
          appBody = body = new Readable({ read: () => call.resume() });
          // The peer may end the body with an error frame before anyone reads it: that must fail this
          // call (its reader sees the stream destroyed), never surface as an unhandled 'error'.
          body.on('error', () => {});
        }
        else if (head.payload && head.payload.byteLength > 0) appBody = asBuffer(head.payload);
        this.#begin();
        this.#handler.stream(head, appBody, abort.signal)
          .then(async (response) => {
            if (finished || call.writableEnded) return; // ended meanwhile (an undecodable frame)
            call.write({ head: response.head });
            if (response.body) await pipeBody(call, response.body, abort.signal);
            else { call.write({ end: {} }); call.end(); }
            finished = true;
          })
          .catch((err: unknown) => fail(toMeshError(err)))
          .finally(() => this.#finish());
        return;
      }
      if (!body) {
        if (frame.end) return; // the end of a request with no streamed body
        return fail(new MeshError('PROTOCOL_ERROR', 'data frame for a request whose body does not follow'));
      }
      if (frame.data) {
        if (!body.push(frame.data)) call.pause(); // HTTP/2 flow control holds the sender back
      } else if (frame.end) {
        body.push(null);
      } else if (frame.error) {
        body.destroy(MeshError.fromWire(frame.error));
      } else {
        fail(new MeshError('PROTOCOL_ERROR', 'a frame with no content'));
      }
    });
    call.on('end', () => { if (body && !body.readableEnded) body.push(null); });
  }
}

/** Copy a body to a Stream call as data frames, waiting on flow control, then send `end`. */
async function pipeBody(call: grpc.ServerDuplexStream<Frame, Frame>, body: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<void> {
  // A caller that cancels must reach the app at once, even while the body is idle (an SSE stream
  // waiting for its next event): destroying the body ends the loop and closes the app's connection.
  const destroyBody = () => (body as Partial<Readable>).destroy?.(signal.reason instanceof Error ? signal.reason : undefined);
  if (signal.aborted) destroyBody();
  signal.addEventListener('abort', destroyBody, { once: true });
  try {
    for await (const chunk of body) {
      if (signal.aborted) throw signal.reason;
      if (!call.write({ data: chunk })) await waitForDrain(call, signal);
    }
  } finally {
    signal.removeEventListener('abort', destroyBody);
  }
  call.write({ end: {} });
  call.end();
}

function waitForDrain(stream: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => { signal.removeEventListener('abort', onAbort); resolve(); };
    const onAbort = () => { stream.off('drain', onDrain); reject(signal.reason); };
    stream.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function errorEnvelope(request: Envelope, err: MeshError): Envelope {
  return {
    id: newMessageId(), type: MessageType.ERROR, timestampMs: Date.now(), correlationId: request.id,
    priority: request.priority ?? Priority.MEDIUM, error: { code: err.code, message: err.message },
  };
}

interface ServerLinkHooks {
  onRequest(request: Envelope, reply: (response: Envelope) => void, signal: AbortSignal): void;
  isDraining(): boolean;
}

/** One accepted Link stream: HELLO check, request dispatch, cancels, heartbeats, compression. */
class ServerLink {
  readonly #call: grpc.ServerDuplexStream<Batch, Batch>;
  readonly #options: MeshServerOptions;
  readonly #hooks: ServerLinkHooks;
  readonly #batcher: Batcher;
  readonly #open = new Map<string, AbortController>();
  readonly #capabilities: Capabilities;
  #helloDone = false;
  #closed = false;
  readonly #heartbeat: Heartbeat;

  constructor(call: grpc.ServerDuplexStream<Batch, Batch>, options: MeshServerOptions, hooks: ServerLinkHooks) {
    this.#call = call;
    this.#options = options;
    this.#hooks = hooks;
    this.#capabilities = new Capabilities(options);
    this.#batcher = new Batcher((envelopes) => {
      this.#heartbeat.lastSent = Date.now();
      call.write({ envelopes }, () => this.#batcher.drained()); // one batch on the wire at a time (see link.ts)
      return false;
    }, { maxCount: options.batchMaxCount, maxBytes: options.batchMaxBytes, lingerMs: options.lingerMs });
    call.on('data', (batch: Batch) => this.#onBatch(batch));
    call.on('end', () => this.close());
    call.on('cancelled', () => this.close());
    call.on('error', () => this.close());
    this.#heartbeat = new Heartbeat(options, {
      silent: (silentMs) => {
        this.#options.logger.warn({ silentMs }, 'closing a link: peer silent');
        this.close();
      },
      idle: () => { if (this.#helloDone) this.#enqueue(controlEnvelope(MessageType.HEARTBEAT)); },
    });
    this.#heartbeat.start();
  }

  sendDrain(): void {
    if (this.#helloDone && !this.#closed) this.#enqueue(controlEnvelope(MessageType.DRAIN));
  }

  /** `flush`: send what is still queued first (answers of calls that finished during a drain). */
  close(options: { flush?: boolean } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#heartbeat.stop();
    const unsent = this.#batcher.close();
    if (options.flush) {
      try {
        for (let i = 0; i < unsent.length; i += this.#options.batchMaxCount) this.#call.write({ envelopes: unsent.slice(i, i + this.#options.batchMaxCount) });
      } catch { /* the peer is gone already */ }
    }
    for (const controller of this.#open.values()) controller.abort(new MeshError('CLIENT_CLOSED', 'link closed'));
    this.#open.clear();
    try { this.#call.end(); } catch { /* already gone */ }
  }

  #enqueue(envelope: Envelope): void {
    if (!this.#closed) this.#batcher.enqueue(envelope);
  }

  #onBatch(batch: Batch): void {
    this.#heartbeat.lastReceived = Date.now();
    if (this.#closed) return; // answered and ending: nothing the peer sends now counts
    if (batch instanceof Undecodable) {
      endUndecodable(this.#call); // before close(): its status is INTERNAL, with no ERROR envelope
      this.close();
      return;
    }
    for (const envelope of batch.envelopes) {
      if (!this.#helloDone && envelope.type !== MessageType.HELLO) return this.#reject('PROTOCOL_ERROR', 'the first envelope on a link must be HELLO');
      switch (envelope.type) {
        case MessageType.HELLO: {
          const refused = this.#capabilities.accept(envelope);
          if (refused) return this.#reject('VERSION_UNSUPPORTED', refused);
          this.#helloDone = true;
          this.#enqueue(this.#capabilities.hello(this.#options));
          if (this.#hooks.isDraining()) this.sendDrain();
          break;
        }
        case MessageType.REQUEST: {
          if (envelope.compression && !this.#decompress(envelope)) break;
          const controller = new AbortController();
          this.#open.set(envelope.id, controller);
          this.#hooks.onRequest(envelope, (response) => {
            if (!this.#open.delete(envelope.id)) return;
            this.#enqueue(envelope.acceptCompression ? this.#compressAnswer(envelope, response) : response);
          }, controller.signal);
          break;
        }
        case MessageType.CANCEL: {
          const controller = this.#open.get(envelope.correlationId ?? '');
          this.#open.delete(envelope.correlationId ?? '');
          controller?.abort(new MeshError('CLIENT_CLOSED', 'caller cancelled the call'));
          break;
        }
        case MessageType.HEARTBEAT:
          break;
        default:
          return this.#reject('PROTOCOL_ERROR', `unexpected envelope type ${envelope.type} on a link`);
      }
    }
  }

  /**
   * Decompress a REQUEST's payload in place. On failure (corrupt, unknown algorithm, a bomb) answer that
   * request with PROTOCOL_ERROR and return false: one bad message does not cost the link.
   */
  #decompress(request: Envelope): boolean {
    const error = decompressEnvelope(request);
    if (!error) return true;
    this.#options.logger.warn({ code: error.code, request: request.id }, `refusing a request: ${error.message}`);
    this.#enqueue(errorEnvelope(request, error));
    return false;
  }

  /** The answer as the caller allowed (accept_compression), if both sides speak the algorithm. */
  #compressAnswer(request: Envelope, response: Envelope): Envelope {
    const capability = compressionCapability(request.acceptCompression);
    if (response.type !== MessageType.RESPONSE || !response.payload || response.compression
      || !capability || !this.#capabilities.shared(capability)) return response;
    const compressed = compressPayload(response.payload, request.acceptCompression!, request.compressMinBytes ?? 0);
    return compressed.compression === Compression.IDENTITY ? response : { ...response, ...compressed };
  }

  /** Tell the peer why, then close this stream only. */
  #reject(code: 'PROTOCOL_ERROR' | 'VERSION_UNSUPPORTED', message: string): void {
    this.#options.logger.warn({ code }, `closing a link: ${message}`);
    this.#call.write({ envelopes: [{ ...controlEnvelope(MessageType.ERROR), error: { code, message } }] });
    this.close();
  }

}
