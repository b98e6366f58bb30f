// What both ends of a Link stream do alike — the calling end (link.ts) and the called end (server.ts
// ServerLink): the HELLO each sends and the check of the one it gets, the capabilities both announced,
// control envelopes, heartbeats and the silence that ends a link, and decompressing a payload the
// peer compressed. One copy, so the two ends cannot drift apart.
import { MeshError, toMeshError } from '../errors/mesh-error.ts';
import { Compression, MessageType, Priority, type Envelope } from './codec.ts';
import { decompressPayload } from './compression.ts';
import { newMessageId } from './ids.ts';
import { CAPABILITIES, PROTOCOL_MAJOR, PROTOCOL_MINOR, type LinkEndSettings } from './version.ts';

/** An envelope about the link itself (HELLO, HEARTBEAT, CANCEL, DRAIN, a link-level ERROR). */
export function controlEnvelope(type: MessageType, correlationId?: string): Envelope {
  const envelope: Envelope = { id: newMessageId(), type, timestampMs: Date.now(), priority: Priority.HIGH };
  if (correlationId !== undefined) envelope.correlationId = correlationId;
  return envelope;
}

/** The capabilities this end announces, and those both ends did (only these are ever used). */
export class Capabilities {
  readonly own: ReadonlySet<string>;
  #peer: ReadonlySet<string> = new Set();

  constructor(settings: Pick<LinkEndSettings, 'capabilities'>) {
    this.own = new Set(settings.capabilities ?? CAPABILITIES);
  }

  /** Whether the peer announced `capability` in its HELLO. */
  peerCan(capability: string): boolean {
    return this.#peer.has(capability);
  }

  /** Whether both ends announced `capability`. */
  shared(capability: string): boolean {
    return this.own.has(capability) && this.#peer.has(capability);
  }

  /** This end's HELLO. */
  hello(settings: Pick<LinkEndSettings, 'source' | 'instance'>): Envelope {
    return { ...controlEnvelope(MessageType.HELLO), source: settings.source, hello: { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR, capabilities: [...this.own], node: settings.instance } };
  }

  /**
   * Take the peer's HELLO: its capabilities are recorded and undefined returned, or the reason it is
   * refused (another major version) — each end then closes the link its own way.
   */
  accept(envelope: Envelope): string | undefined {
    const hello = envelope.hello;
    if (!hello || hello.major !== PROTOCOL_MAJOR) return `MCP ${hello?.major ?? '?'}.${hello?.minor ?? '?'} is not supported; this sidecar speaks ${PROTOCOL_MAJOR}.x`;
    this.#peer = new Set(hello.capabilities ?? []);
    return undefined;
  }
}

/**
 * Decompress an envelope's payload in place (a REQUEST on the called end, a RESPONSE on the calling
 * end). Returns the error that fails that one call (corrupt, unknown algorithm, a bomb: PROTOCOL_ERROR,
 * naming `service` when known), or undefined; the link and its other calls go on either way.
 */
export function decompressEnvelope(envelope: Envelope, service?: string): MeshError | undefined {
  try {
    envelope.payload = decompressPayload(envelope.payload ?? new Uint8Array(), envelope.compression);
    envelope.compression = Compression.IDENTITY;
    return undefined;
  } catch (err) {
    return service === undefined ? toMeshError(err, 'PROTOCOL_ERROR') : new MeshError(err instanceof MeshError ? err.code : 'PROTOCOL_ERROR', (err as Error).message, { service, cause: err });
  }
}

export interface HeartbeatHooks {
  /** Nothing came from the peer for longer than unhealthyAfterMs: end the link. */
  silent(silentMs: number): void;
  /** Nothing went to the peer for heartbeatIntervalMs: send a HEARTBEAT (if the link is up). */
  idle(): void;
}

/**
 * The heartbeat of one link end: stamps what went out and came in, checks twice per interval, sends a
 * HEARTBEAT when this end was quiet and gives up on a peer that was silent too long.
 */
export class Heartbeat {
  lastSent = Date.now();
  lastReceived = Date.now();
  readonly #settings: Pick<LinkEndSettings, 'heartbeatIntervalMs' | 'unhealthyAfterMs'>;
  readonly #hooks: HeartbeatHooks;
  #timer: NodeJS.Timeout | undefined;

  constructor(settings: Pick<LinkEndSettings, 'heartbeatIntervalMs' | 'unhealthyAfterMs'>, hooks: HeartbeatHooks) {
    this.#settings = settings;
    this.#hooks = hooks;
  }

  /** (Re)start checking, with both stamps at now (a new stream). */
  start(): void {
    this.stop();
    this.lastSent = this.lastReceived = Date.now();
    const { heartbeatIntervalMs, unhealthyAfterMs } = this.#settings;
    this.#timer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastReceived > unhealthyAfterMs) this.#hooks.silent(now - this.lastReceived);
      else if (now - this.lastSent >= heartbeatIntervalMs) this.#hooks.idle();
    }, Math.max(10, Math.floor(heartbeatIntervalMs / 2)));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
