// The client end of one MCP link: one long-lived Link stream to one peer sidecar, carrying batches of
// REQUEST envelopes out and RESPONSE/ERROR envelopes back. See README.md in this folder for the flow.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { MeshError } from '../errors/mesh-error.ts';
import { Batcher } from './batcher.ts';
import { compressionCode, compressPayload, type CompressionSetting } from './compression.ts';
import { decodeBatch, decodeFrame, encodeBatch, encodeFrame, MessageType, type Batch, type Envelope, type Frame } from './codec.ts';
import { Capabilities, controlEnvelope, decompressEnvelope, Heartbeat } from './link-end.ts';
import { abortReason, sendCall, type LinkAnswer, type LinkCall } from './transport.ts';
import { identityOf, meshSource } from '../security/identity.ts';
import { jitteredBackoff } from '../resilience/backoff.ts';
import type { SecureNaming } from '../security/secure-naming.ts';
import { channelOptions, type LinkEndSettings, LINK_METHOD, MAX_MESSAGE_BYTES, STREAM_METHOD } from './version.ts';

export interface LinkOptions extends LinkEndSettings {
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  /**
   * Channel credentials; plaintext unless TLS is configured. A function is asked again each time
   * the link (re)connects: when it returns other credentials (rotated certificates), the link gets
   * a new channel (security/tls.ts, docs/security.md).
   */
  credentials?: grpc.ChannelCredentials | (() => grpc.ChannelCredentials);
  /**
   * Secure naming (mutual TLS): which identities may serve a service at this link's address. Every
   * call (and Stream call) for a service the peer's certificate may not serve is refused before it
   * is sent. Unset (plaintext): no check, there are no identities.
   */
  secureNaming?: SecureNaming;
}

/**
 * connecting → ready ⇄ (broken → connecting …); `draining` once the peer said DRAIN; `closed` at the end.
 * Only a `ready` link takes new calls.
 */
export type LinkState = 'connecting' | 'ready' | 'draining' | 'broken' | 'closed';

/** Told how many envelopes shared the batch a request left in (telemetry). */
export interface BatchObserver {
  batched?(batchSize: number): void;
}

/** A call waiting for its answer. Settling it stops watching the caller's signal. */
class PendingCall {
  sent = false;
  readonly observer: BatchObserver | undefined;
  /** The called service ("name.namespace", the request's destination): the errors of this call name it. */
  readonly service: string | undefined;
  /** Set when the caller passed a signal. */
  onAbort: (() => void) | undefined;
  readonly #resolve: (response: Envelope) => void;
  readonly #reject: (err: MeshError) => void;
  readonly #signal: AbortSignal | undefined;

  constructor(resolve: (response: Envelope) => void, reject: (err: MeshError) => void, signal: AbortSignal | undefined, observer: BatchObserver | undefined, service: string | undefined) {
    this.service = service;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#signal = signal;
    this.observer = observer;
  }

  resolve(response: Envelope): void {
    if (this.onAbort) this.#signal!.removeEventListener('abort', this.onAbort);
    this.#resolve(response);
  }

  reject(err: MeshError): void {
    if (this.onAbort) this.#signal!.removeEventListener('abort', this.onAbort);
    this.#reject(err);
  }
}

/**
 * One plaintext credentials object for every link: #open compares credentials by identity to see a
 * rotation, and a fresh one per reconnect made every plaintext reconnect build a new channel.
 */
const PLAINTEXT = grpc.credentials.createInsecure();

/** Most bytes one envelope may take: gRPC's message limit, less room for the batch around it. */
export const MAX_ENVELOPE_BYTES = MAX_MESSAGE_BYTES - 64 * 1024;

/** The envelope's approximate size when it could be near the limit, else undefined (cheap on the hot path). */
function oversized(request: Envelope): number | undefined {
  const payload = request.payload?.byteLength ?? 0;
  if (payload + 1024 * 1024 < MAX_ENVELOPE_BYTES) return undefined; // heads are far smaller than 1 MiB
  let size = payload + 512;
  for (const h of request.headers ?? []) size += h.name.length + h.value.length + 8;
  return size > MAX_ENVELOPE_BYTES ? size : undefined;
}

export class PeerLink extends EventEmitter {
  readonly address: string;
  readonly #options: LinkOptions;
  #client: grpc.Client;
  #clientCredentials: grpc.ChannelCredentials;
  #state: LinkState = 'connecting';
  #stream: grpc.ClientDuplexStream<Batch, Batch> | undefined;
  #batcher: Batcher | undefined;
  readonly #pending = new Map<string, PendingCall>();
  #failures = 0;
  readonly #heartbeat: Heartbeat;
  #reconnectTimer: NodeJS.Timeout | undefined;
  readonly #capabilities: Capabilities;
  #batchesSent = 0;
  #envelopesSent = 0;
  /** The peer's name ("name.namespace") from the certificate of the current connection (mutual TLS). */
  #peerIdentity: string | undefined;

  constructor(address: string, options: LinkOptions) {
    super();
    this.address = address;
    this.#options = options;
    this.#capabilities = new Capabilities(options);
    this.#heartbeat = new Heartbeat(options, {
      silent: (silentMs) => { if (this.#stream) this.#onStreamEnd(this.#stream, new MeshError('PEER_UNAVAILABLE', `peer silent for ${silentMs} ms`)); },
      idle: () => { if (this.#stream && this.#state !== 'connecting') this.#sendControl(MessageType.HEARTBEAT); },
    });
    this.#clientCredentials = this.#credentials();
    this.#client = this.#newClient();
    this.#open();
  }

  get state(): LinkState {
    return this.#state;
  }

  /** Open calls on this link (sent or queued); the least-request balancer reads it. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Envelopes waiting in this link's batcher (all lanes) for the link to take them. */
  get queued(): number {
    return this.#batcher?.queued ?? 0;
  }

  /** The identity the peer's certificate names on the current connection; undefined in plaintext or before HELLO. */
  get peerIdentity(): string | undefined {
    return this.#peerIdentity;
  }

  get stats(): { batches: number; envelopes: number } {
    return { batches: this.#batchesSent, envelopes: this.#envelopesSent };
  }

  /** Resolves once the link is ready; rejects with PEER_UNAVAILABLE (naming `service`, if given) after `timeoutMs`. */
  whenReady(timeoutMs: number, signal?: AbortSignal, service?: string): Promise<void> {
    if (this.#state === 'ready') return Promise.resolve();
    if (this.#state === 'closed') return Promise.reject(this.#unavailable('link is closed', service));
    return new Promise((resolve, reject) => {
      const done = (err?: MeshError) => {
        clearTimeout(timer);
        this.off('state', onState);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err); else resolve();
      };
      const onState = (state: LinkState) => {
        if (state === 'ready') done();
        else if (state === 'closed') done(this.#unavailable('link is closed', service));
      };
      const onAbort = () => done(this.#unavailable('gave up waiting for the link', service));
      const timer = setTimeout(() => done(this.#unavailable(`no link to peer within ${timeoutMs} ms`, service)), timeoutMs);
      this.on('state', onState);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Send a REQUEST envelope and wait for its RESPONSE. Rejects with a MeshError: the peer's ERROR,
   * PEER_UNAVAILABLE (never sent), LINK_BROKEN (sent, then the link broke). On `signal` abort a
   * CANCEL goes to the peer and the promise rejects with the signal's reason.
   *
   * `compression` (the caller's policy): if both sides speak the algorithm, the payload is compressed
   * (when large enough and it helps) and the peer may compress the answer likewise; otherwise both go
   * plain. The caller's `request` is not modified; the promise resolves with the payload decompressed.
   * `observer` is told the size of the batch the request left in.
   */
  call(request: Envelope, signal?: AbortSignal, compression?: CompressionSetting, observer?: BatchObserver): Promise<Envelope> {
    const service = request.destination;
    if (this.#state !== 'ready' || !this.#batcher) {
      return Promise.reject(this.#state === 'draining'
        ? new MeshError('SHUTTING_DOWN', `peer ${this.address} is draining`, { service })
        : this.#unavailable(`link is ${this.#state}`, service));
    }
    const batcher = this.#batcher;
    if (signal?.aborted) return Promise.reject(abortReason(signal, service));
    const misnamed = this.#misnamed(service);
    if (misnamed) return Promise.reject(misnamed);
    // A message the peer would refuse (gRPC's limit) would break the whole link: refuse this one call instead.
    const tooLarge = oversized(request);
    if (tooLarge !== undefined) {
      this.#options.onLimit?.('frame_size');
      return Promise.reject(new MeshError('BODY_TOO_LARGE', `the call needs an MCP message of about ${tooLarge} bytes; at most ${MAX_ENVELOPE_BYTES} go between sidecars`, { service }));
    }
    // Only a call that asks for compression pays for it (the default path allocates nothing more).
    if (compression !== undefined && compression.algorithm !== 'none') request = this.#withCompression(request, compression);
    return new Promise<Envelope>((resolve, reject) => {
      const pending = new PendingCall(resolve, reject, signal, observer, service);
      this.#pending.set(request.id, pending);
      if (signal) {
        pending.onAbort = () => {
          if (this.#pending.get(request.id) !== pending) return;
          this.#pending.delete(request.id);
          // Not sent yet: take it back, so the peer never runs it. Sent: tell the peer to stop.
          if (pending.sent || !batcher.remove(request)) this.#sendControl(MessageType.CANCEL, request.id);
          reject(abortReason(signal, service));
        };
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      batcher.enqueue(request);
    });
  }

  /**
   * Send one try of a call: inline on this link (batched), as a Stream call (streamed body, expected
   * stream), or inline with its large answer's body pulled after (transport.ts). The caller builds no
   * envelope. Rejects with a MeshError naming `call.service`, or with `call.trySignal`'s reason.
   */
  send(call: LinkCall): Promise<LinkAnswer> {
    return sendCall(this, this.#options.source, call);
  }

  /**
   * Open a Stream call to the peer (streamed bodies and body pulls) for `service`; see stream-client.ts.
   * Throws PEER_IDENTITY_MISMATCH, with nothing opened, when the peer may not serve it.
   */
  openStream(service?: string): grpc.ClientDuplexStream<Frame, Frame> {
    const misnamed = this.#misnamed(service);
    if (misnamed) throw misnamed;
    return this.#client.makeBidiStreamRequest(STREAM_METHOD, encodeFrame, decodeFrame, new grpc.Metadata());
  }

  /**
   * Secure naming: the refusal of a call for `service` when the peer's certificate does not name an
   * identity that may serve it (a reused pod address, a stale endpoint list), else undefined.
   */
  #misnamed(service: string | undefined): MeshError | undefined {
    const naming = this.#options.secureNaming;
    if (!naming) return undefined;
    const identity = this.#peerIdentity;
    if (service && identity !== undefined && naming.mayServe(service, this.address, identity)) return undefined;
    const allowed = service ? naming.allowed(service, this.address) : [];
    this.#options.onRefused?.('peer_identity_mismatch');
    this.#options.logger.warn({ code: 'PEER_IDENTITY_MISMATCH', peer: this.address, identity, service, allowed },
      'refusing to send a call: the peer may not serve its service');
    return new MeshError('PEER_IDENTITY_MISMATCH', `the sidecar at ${this.address} is ${identity ?? 'of unknown identity'}, which may not serve ${service ?? 'an unnamed service'} (allowed: ${allowed.join(', ') || 'none'}); the call was not sent`, { service });
  }

  /** Whether the peer announced a capability in its HELLO. */
  peerCan(capability: string): boolean {
    return this.#capabilities.peerCan(capability);
  }

  /** The REQUEST as it goes out under `setting`: a copy, or `request` itself when the peer lacks the algorithm. */
  #withCompression(request: Envelope, setting: CompressionSetting): Envelope {
    // A capability is used only when both sides announced it; a peer without it gets plain bytes and
    // is not asked to compress its answer.
    if (!this.#capabilities.shared(setting.algorithm)) return request;
    const algorithm = compressionCode(setting.algorithm);
    const sent: Envelope = { ...request, acceptCompression: algorithm, compressMinBytes: setting.minBytes };
    if (request.payload && !request.compression) {
      const { payload, compression } = compressPayload(request.payload, algorithm, setting.minBytes);
      sent.payload = payload;
      sent.compression = compression;
    }
    return sent;
  }

  close(): void {
    if (this.#state === 'closed') return;
    this.#teardown(new MeshError('SHUTTING_DOWN', 'link closed by this sidecar'));
    clearTimeout(this.#reconnectTimer);
    this.#setState('closed');
    this.#client.close();
  }

  // ---- connection lifecycle ----

  #credentials(): grpc.ChannelCredentials {
    const credentials = this.#options.credentials;
    return typeof credentials === 'function' ? credentials() : credentials ?? PLAINTEXT;
  }

  #newClient(): grpc.Client {
    return new grpc.Client(this.address, this.#clientCredentials, channelOptions(this.#options.reconnectBaseMs, this.#options.reconnectMaxMs));
  }

  #open(): void {
    this.#setState('connecting');
    const credentials = this.#credentials();
    if (credentials !== this.#clientCredentials) {
      // Rotated certificates: a new channel (a new connection, handshaken with them). The old
      // channel is closed; Stream calls still running on it finish on its connection.
      const old = this.#client;
      this.#clientCredentials = credentials;
      this.#client = this.#newClient();
      old.close();
    }
    const stream = this.#client.makeBidiStreamRequest(LINK_METHOD, encodeBatch, decodeBatch, new grpc.Metadata());
    this.#stream = stream;
    stream.write({ envelopes: [this.#capabilities.hello(this.#options)] });
    stream.on('data', (batch: Batch) => this.#onBatch(stream, batch));
    stream.on('error', (err: grpc.ServiceError) => this.#onStreamEnd(stream, err));
    stream.on('end', () => this.#onStreamEnd(stream, undefined));
    this.#heartbeat.start();
  }

  #onBatch(stream: grpc.ClientDuplexStream<Batch, Batch>, batch: Batch): void {
    if (stream !== this.#stream) return;
    this.#heartbeat.lastReceived = Date.now();
    for (const envelope of batch.envelopes) {
      switch (envelope.type) {
        case MessageType.HELLO:
          this.#onHello(stream, envelope);
          break;
        case MessageType.RESPONSE:
        case MessageType.ERROR: {
          if (!envelope.correlationId) { // an error about the link itself, e.g. a refused HELLO
            const err = MeshError.fromWire(envelope.error ?? {});
            this.#protocolError(stream, err.message, err.code === 'VERSION_UNSUPPORTED' ? err.code : 'PROTOCOL_ERROR');
            return;
          }
          const pending = this.#pending.get(envelope.correlationId ?? '');
          if (!pending) break; // cancelled or timed out here already
          this.#pending.delete(envelope.correlationId!);
          if (envelope.type === MessageType.ERROR) pending.reject(MeshError.fromWire(envelope.error ?? {}, pending.service));
          else if (envelope.compression) this.#resolveCompressed(pending, envelope);
          else pending.resolve(envelope);
          break;
        }
        case MessageType.DRAIN:
          this.#options.logger.info({ peer: this.address }, 'peer is draining');
          this.#setState('draining');
          break;
        case MessageType.HEARTBEAT:
          break;
        default:
          this.#protocolError(stream, `unexpected ${envelope.type} envelope on a link`);
          return;
      }
    }
  }

  /** A bad compressed answer fails its own call only: the link and the other calls go on. */
  #resolveCompressed(pending: PendingCall, response: Envelope): void {
    const error = decompressEnvelope(response, pending.service);
    if (!error) return pending.resolve(response);
    this.#options.logger.warn({ peer: this.address, code: error.code }, error.message);
    pending.reject(error);
  }

  #onHello(stream: grpc.ClientDuplexStream<Batch, Batch>, envelope: Envelope): void {
    const refused = this.#capabilities.accept(envelope);
    if (refused) {
      this.#protocolError(stream, `the peer's HELLO: ${refused}`, 'VERSION_UNSUPPORTED');
      return;
    }
    const hello = envelope.hello!;
    this.#peerIdentity = this.#identityOf(stream);
    this.#failures = 0;
    this.#batcher = new Batcher((envelopes) => this.#write(stream, envelopes), {
      maxCount: this.#options.batchMaxCount, maxBytes: this.#options.batchMaxBytes, lingerMs: this.#options.lingerMs,
    });
    this.#options.logger.info({ peer: this.address, peerNode: hello.node, version: `${hello.major}.${hello.minor}`, identity: this.#peerIdentity }, 'link ready');
    this.#setState('ready');
  }

  /**
   * The name in the certificate the peer presented on this stream's connection (the handshake verified
   * its chain and trust domain: tls.ts channelCredentials); undefined in plaintext.
   */
  #identityOf(stream: grpc.ClientDuplexStream<Batch, Batch>): string | undefined {
    const tls = this.#options.tls;
    const cert = tls ? stream.getAuthContext()?.sslPeerCertificate : undefined;
    if (!tls || !cert) return undefined;
    const id = identityOf(cert.subjectaltname, tls.trustDomain);
    return typeof id === 'string' ? undefined : meshSource(id);
  }

  #write(stream: grpc.ClientDuplexStream<Batch, Batch>, envelopes: Envelope[]): boolean {
    for (const envelope of envelopes) {
      const pending = this.#pending.get(envelope.id);
      if (pending) {
        pending.sent = true;
        pending.observer?.batched?.(envelopes.length);
      }
    }
    this.#heartbeat.lastSent = Date.now();
    this.#batchesSent++;
    this.#envelopesSent += envelopes.length;
    this.emit('batch', envelopes.length);
    // One batch on the wire at a time: the next leaves when this one is written, carrying all that
    // queued meanwhile (so batches grow with load instead of piling up in the stream's buffer).
    stream.write({ envelopes }, () => { if (stream === this.#stream) this.#batcher?.drained(); });
    return false;
  }

  #sendControl(type: MessageType, correlationId?: string): void {
    if (this.#batcher && this.#state !== 'broken') this.#batcher.enqueue(controlEnvelope(type, correlationId));
  }

  #protocolError(stream: grpc.ClientDuplexStream<Batch, Batch>, message: string, code: 'PROTOCOL_ERROR' | 'VERSION_UNSUPPORTED' = 'PROTOCOL_ERROR'): void {
    this.#options.logger.warn({ peer: this.address, code }, message);
    stream.cancel();
    this.#onStreamEnd(stream, new MeshError(code, message));
  }

  #onStreamEnd(stream: grpc.ClientDuplexStream<Batch, Batch>, err: Error | undefined): void {
    if (stream !== this.#stream || this.#state === 'closed') return;
    const reason = err instanceof MeshError ? err : this.#unavailable(err ? err.message : 'peer ended the link');
    // Once per outage at warn; each failed reconnect after it at debug (thousands of unreachable
    // peers would otherwise fill the log, and its pipe, with the same line).
    this.#options.logger[this.#failures === 0 ? 'warn' : 'debug']({ peer: this.address, code: reason.code }, `link down: ${reason.message}`);
    this.#teardown(reason);
    this.#setState('broken');
    this.#scheduleReconnect();
  }

  /** Fail every open call: never-sent ones as PEER_UNAVAILABLE, sent ones as LINK_BROKEN. */
  #teardown(reason: MeshError): void {
    this.#heartbeat.stop();
    this.#batcher?.close();
    this.#batcher = undefined;
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream) {
      stream.removeAllListeners('data');
      stream.on('error', () => {}); // late errors of a stream we already gave up on
      stream.cancel();
    }
    const calls = [...this.#pending.values()];
    this.#pending.clear();
    for (const call of calls) {
      const service = call.service;
      if (reason.code === 'VERSION_UNSUPPORTED' || reason.code === 'SHUTTING_DOWN') call.reject(new MeshError(reason.code, reason.message, { service }));
      else if (call.sent) call.reject(new MeshError('LINK_BROKEN', `link to ${this.address} broke with the call in flight: ${reason.message}`, { service }));
      else call.reject(new MeshError('PEER_UNAVAILABLE', `peer ${this.address} unreachable: ${reason.message}`, { service }));
    }
  }

  #scheduleReconnect(): void {
    // Full-jitter exponential back-off, so many sidecars do not reconnect in step.
    const delay = jitteredBackoff({ baseMs: this.#options.reconnectBaseMs, maxMs: this.#options.reconnectMaxMs }, ++this.#failures);
    this.#reconnectTimer = setTimeout(() => { if (this.#state !== 'closed') this.#open(); }, delay);
    this.#reconnectTimer.unref();
  }

  #setState(state: LinkState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit('state', state);
  }

  #unavailable(message: string, service?: string): MeshError {
    return new MeshError('PEER_UNAVAILABLE', `peer ${this.address}: ${message}`, service === undefined ? undefined : { service });
  }
}
