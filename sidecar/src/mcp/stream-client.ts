// The calling end of a Stream call: send a head (a REQUEST, or a pull of a parked response body),
// then the request body as data frames, and read the response head and body frames back — each
// direction held back by HTTP/2 flow control, so neither side buffers a body whole.
import { once } from 'node:events';
import { Readable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { MeshError } from '../errors/mesh-error.ts';
import type { Envelope, Frame } from './codec.ts';

export interface StreamCallOptions {
  /** Abort before the response head arrives (deadline, client gone). */
  signal: AbortSignal;
  /** Cut the exchange when no frame arrives for this long once the body streams. */
  idleTimeoutMs: number;
  /** The called service, named by the errors the call fails with. */
  service?: string;
}

export interface StreamedResponse {
  head: Envelope;
  body: Readable;
}

/**
 * Run one Stream call. Resolves with the response head and a body Readable once the head arrives.
 * The body errors with a MeshError if the peer fails midway or goes idle too long.
 */
export function streamCall(call: grpc.ClientDuplexStream<Frame, Frame>, head: Envelope, requestBody: Readable | null, options: StreamCallOptions): Promise<StreamedResponse> {
  const named = options.service === undefined ? undefined : { service: options.service };
  return new Promise((resolve, reject) => {
    let responseHead: Envelope | undefined;
    let idleTimer: NodeJS.Timeout | undefined;
    let settled = false;
    let failed = false;
    /** The peer sent its end frame: the body is complete even if the reader has not caught up. */
    let ended = false;
    const body = new Readable({ read: () => call.resume() });
    // A body nobody reads yet (its consumer failed before piping it) must not crash the process
    // when it is destroyed with an error; its consumer, if any, still sees the error.
    body.on('error', () => {});
    const fail = (err: MeshError) => {
      // Once only: cancelling the call makes gRPC report an error too, which must not fail it again
      // (a second destroy(err) on a body nobody reads yet would be an unhandled 'error').
      if (failed) return;
      failed = true;
      clearTimeout(idleTimer);
      options.signal.removeEventListener('abort', onAbort);
      call.cancel();
      requestBody?.destroy();
      if (!settled) { settled = true; reject(err); } else body.destroy(err);
    };
    const touch = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => fail(new MeshError('STREAM_IDLE_TIMEOUT', `no data for ${options.idleTimeoutMs} ms`, named)), options.idleTimeoutMs);
      idleTimer.unref();
    };
    const onAbort = () => fail(options.signal.reason instanceof MeshError ? options.signal.reason : new MeshError('CLIENT_CLOSED', 'call cancelled', named));
    // The consumer stopped reading (the calling app is slow or gone): stop the stream, not just pause.
    body.on('close', () => { if (!ended) { clearTimeout(idleTimer); call.cancel(); } });

    call.on('data', (frame: Frame) => {
      touch();
      if (!responseHead) {
        if (frame.head) {
          responseHead = frame.head;
          settled = true;
          options.signal.removeEventListener('abort', onAbort);
          resolve({ head: responseHead, body });
        } else if (frame.error) {
          fail(MeshError.fromWire(frame.error, options.service));
        } else {
          fail(new MeshError('PROTOCOL_ERROR', 'a Stream response must start with a head frame', named));
        }
        return;
      }
      if (frame.data) {
        if (!body.push(frame.data)) call.pause();
      } else if (frame.end) {
        ended = true;
        clearTimeout(idleTimer);
        body.push(null);
      } else if (frame.error) {
        fail(MeshError.fromWire(frame.error, options.service));
      } else {
        fail(new MeshError('PROTOCOL_ERROR', 'a frame with no content', named));
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (ended) return;
      fail(new MeshError(responseHead ? 'LINK_BROKEN' : 'PEER_UNAVAILABLE', `stream to peer failed: ${err.details || err.message}`, named));
    });
    call.on('end', () => {
      if (!responseHead) fail(new MeshError('PROTOCOL_ERROR', 'peer ended the stream without a response', named));
      else if (!ended) fail(new MeshError('LINK_BROKEN', 'peer ended the stream before the body was complete', named));
    });
    // Listeners first, then the abort check: an already-aborted signal must fail the call cleanly.
    if (options.signal.aborted) return onAbort();
    options.signal.addEventListener('abort', onAbort, { once: true });

    call.write({ head });
    if (requestBody) void sendBody(call, requestBody).catch((err: unknown) => fail(err instanceof MeshError ? err : new MeshError('CLIENT_CLOSED', `request body failed: ${(err as Error).message}`, named)));
    else if (!head.http?.bodyStreamId) { call.write({ end: {} }); call.end(); }
    else call.end();
  });
}

async function sendBody(call: grpc.ClientDuplexStream<Frame, Frame>, body: Readable): Promise<void> {
  for await (const chunk of body) {
    if (!call.write({ data: chunk as Buffer })) await once(call, 'drain');
  }
  call.write({ end: {} });
  call.end();
}
