// Shared pieces for the MCP protocol unit tests (server.test.ts, link.test.ts): a real MeshServer on
// 127.0.0.1 port 0 with a test-double InboundHandler, and a raw gRPC client for speaking MCP by hand.
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { decodeBatch, encodeBatch, MessageType, Priority, type Batch, type Envelope } from '../../../sidecar/src/mcp/codec.ts';
import { newMessageId } from '../../../sidecar/src/mcp/ids.ts';
import { PeerLink, type LinkOptions, type LinkState } from '../../../sidecar/src/mcp/link.ts';
import { MeshServer, type InboundHandler, type InboundResponse, type MeshServerOptions } from '../../../sidecar/src/mcp/server.ts';
import { LINK_METHOD } from '../../../sidecar/src/mcp/version.ts';

export const silentLogger = pino({ level: 'silent' });

/** Safety net only: every wait below resolves on an event; this turns a hang into a clear failure. */
export const EVENT_TIMEOUT_MS = 10_000;

export const serverOptions: MeshServerOptions = {
  source: 'payments.shop', instance: 'payments-test', batchMaxCount: 128, batchMaxBytes: 1 << 20, lingerMs: 0,
  heartbeatIntervalMs: 1000, unhealthyAfterMs: 3000, logger: silentLogger,
};

export const linkOptions: LinkOptions = {
  source: 'orders.default', instance: 'orders-test', batchMaxCount: 128, batchMaxBytes: 1 << 20, lingerMs: 0,
  heartbeatIntervalMs: 1000, unhealthyAfterMs: 3000, reconnectBaseMs: 10, reconnectMaxMs: 50, logger: silentLogger,
};

/** What FakeInboundHandler saw for one REQUEST. */
export interface SeenRequest {
  request: Envelope;
  signal: AbortSignal;
  /** Answer the request (only when the handler was told to hold it). */
  respond: (response: Envelope) => void;
  fail: (err: unknown) => void;
}

/**
 * Test double for the InboundHandler (the app side of a sidecar). By default it echoes: a RESPONSE
 * with status 200 and the request's payload. With `hold = true` it keeps each request open until the
 * test answers it or the request's signal aborts (then it rejects with the signal's reason, like the
 * real AppForwarder whose undici request is aborted).
 */
export class FakeInboundHandler implements InboundHandler {
  hold = false;
  readonly seen: SeenRequest[] = [];
  #waiters: ((seen: SeenRequest) => void)[] = [];

  unary(request: Envelope, signal: AbortSignal): Promise<Envelope> {
    return new Promise<Envelope>((resolve, reject) => {
      const seen: SeenRequest = { request, signal, respond: resolve, fail: reject };
      this.seen.push(seen);
      for (const wake of this.#waiters.splice(0)) wake(seen);
      if (this.hold) {
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        return;
      }
      resolve(echo(request));
    });
  }

  /** Refuses: most tests here use the link only; one that streams sets its own. */
  stream(): Promise<InboundResponse> {
    return Promise.reject(new Error('FakeInboundHandler.stream is not used by these tests'));
  }

  pull(): undefined {
    return undefined;
  }

  /** Resolves with the next request the handler receives (or one already received, by index). */
  nextRequest(index = this.seen.length): Promise<SeenRequest> {
    if (this.seen[index]) return Promise.resolve(this.seen[index]);
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        if (this.seen[index]) resolve(this.seen[index]);
        else this.#waiters.push(check);
      };
      this.#waiters.push(check);
    }), `handler request #${index}`);
  }
}

export function echo(request: Envelope): Envelope {
  return {
    id: newMessageId(), type: MessageType.RESPONSE, timestampMs: Date.now(), correlationId: request.id,
    http: { status: 200 }, headers: [{ name: 'x-echo', value: request.http?.path ?? '' }], payload: request.payload ?? new Uint8Array(),
  };
}

export function requestEnvelope(path = '/', payload = 'hello', priority: Priority = Priority.MEDIUM): Envelope {
  return {
    id: newMessageId(), type: MessageType.REQUEST, timestampMs: Date.now(), source: 'orders.default', destination: 'payments.shop',
    priority, http: { method: 'POST', path, authority: 'payments' }, payload: Buffer.from(payload),
  };
}

export function helloEnvelope(major: number, minor: number): Envelope {
  return { id: newMessageId(), type: MessageType.HELLO, timestampMs: Date.now(), priority: Priority.HIGH, hello: { major, minor, capabilities: ['batch'], node: 'raw-client' } };
}

export async function startServer(handler: InboundHandler, port = 0, options: Partial<MeshServerOptions> = {}): Promise<{ server: MeshServer; port: number; address: string }> {
  const server = new MeshServer(handler, { ...serverOptions, ...options });
  const bound = await server.listen('127.0.0.1', port);
  return { server, port: bound, address: `127.0.0.1:${bound}` };
}

export function withTimeout<T>(promise: Promise<T>, what: string, ms = EVENT_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Records every state a link goes through, and waits for a given one. */
export function watchStates(link: PeerLink): { states: LinkState[]; reach(state: LinkState): Promise<void> } {
  const states: LinkState[] = [link.state];
  link.on('state', (state: LinkState) => states.push(state));
  return {
    states,
    reach: (state) => withTimeout(new Promise<void>((resolve) => {
      if (link.state === state) return resolve();
      const onState = (s: LinkState) => { if (s === state) { link.off('state', onState); resolve(); } };
      link.on('state', onState);
    }), `link state ${state} (states so far: ${states.join(' → ')})`),
  };
}

export function openLink(address: string, options: Partial<LinkOptions> = {}): PeerLink {
  return new PeerLink(address, { ...linkOptions, ...options });
}

/**
 * A MeshServer with a fake handler (held when `hold`), a PeerLink to it that is ready, then `body`;
 * the link and the server are closed afterwards whatever happens.
 */
export async function withReadyLink(options: { hold?: boolean; link?: Partial<LinkOptions> }, body: (ctx: { handler: FakeInboundHandler; server: MeshServer; link: PeerLink }) => Promise<void>): Promise<void> {
  const handler = new FakeInboundHandler();
  handler.hold = options.hold ?? false;
  const { server, address } = await startServer(handler);
  const link = openLink(address, options.link);
  try {
    await link.whenReady(5000);
    await body({ handler, server, link });
  } finally {
    link.close();
    await server.close();
  }
}

/** Runs `fn` and returns the MeshError it rejects with (fails the test if it resolves). */
export async function meshRejection(promise: Promise<unknown>): Promise<MeshError> {
  try {
    await withTimeout(promise, 'a rejection');
  } catch (err) {
    if (err instanceof MeshError) return err;
    throw err;
  }
  throw new Error('expected a MeshError rejection, but it resolved');
}

/** A hand-driven Link stream: write batches, read envelopes one at a time, see the final status. */
export class RawLink {
  readonly client: grpc.Client;
  readonly stream: grpc.ClientDuplexStream<Batch, Batch>;
  readonly received: Envelope[] = [];
  /** Resolves with the gRPC status once the server has closed the stream. */
  readonly closed: Promise<grpc.StatusObject>;
  #waiters: (() => void)[] = [];

  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
    this.stream = this.client.makeBidiStreamRequest(LINK_METHOD, encodeBatch, decodeBatch, new grpc.Metadata());
    this.stream.on('data', (batch: Batch) => {
      this.received.push(...batch.envelopes);
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.stream.on('error', () => {}); // the status below says what happened
    this.closed = new Promise((resolve) => this.stream.on('status', resolve));
  }

  send(...envelopes: Envelope[]): void {
    this.stream.write({ envelopes });
  }

  /** The envelope at `index` in arrival order, once it has arrived. */
  envelope(index: number): Promise<Envelope> {
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        if (this.received[index]) resolve(this.received[index]);
        else this.#waiters.push(check);
      };
      check();
    }), `envelope #${index} on a raw link`);
  }

  close(): void {
    this.stream.cancel();
    this.client.close();
  }
}
