// Bounds on the connections peers open to the inbound port: how many at once (in all, and from one
// address), how long one may take to start its first call (TLS handshake, HTTP/2 preface, the call's
// headers), and how long one may stay open with no call. MeshServer owns the TCP listener and hands
// each accepted socket to grpc-js, so the socket-level bounds live here; the idle bound is grpc-js's
// own `grpc.max_connection_idle_ms`, which counts a session's open streams and closes it gracefully
// (GOAWAY). grpc-js starts that clock only once the HTTP/2 session exists, i.e. after the TLS
// handshake: a peer that never finishes its handshake is left to the first-call deadline here.
import type { Server, Socket } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { LogFields } from '../telemetry/logger.ts';

/** Why a connection was refused or closed early (the `limit` label of mcp_limit_rejections_total). */
export type ConnectionLimit = 'connections_per_peer' | 'inbound_connections' | 'handshake_timeout';

export interface InboundConnectionLimits {
  /** Most connections open at once from one remote address; unlimited unless set (0: unlimited). */
  maxPerPeer?: number;
  /** Most inbound connections open at once; unlimited unless set (0: unlimited). */
  maxTotal?: number;
  /** A connection that has not started a call this long after it was accepted is closed; none unless set (0: none). */
  handshakeTimeoutMs?: number;
  /** A connection with no open call for this long is closed (GOAWAY); never unless set (0: never). */
  idleTimeoutMs?: number;
  /** A connection refused or closed by one of these limits (metrics). */
  onLimit?: (limit: ConnectionLimit) => void;
}

/** Under a flood, one warning per interval per limit says how many were refused, not one line each. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * Logs the first refusal at once, then at most one line per `intervalMs`, carrying how many were
 * refused since the last line (the metric has the exact count).
 */
export class RefusalLog {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #lastLine = -Infinity;
  #unlogged = 0;

  constructor(logger: Logger, intervalMs = REFUSAL_LOG_INTERVAL_MS, now: () => number = () => performance.now()) {
    this.#logger = logger;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  refused(fields: LogFields, message: string): void {
    this.#unlogged++;
    const now = this.#now();
    if (now - this.#lastLine < this.#intervalMs) return;
    const refused = this.#unlogged;
    this.#lastLine = now;
    this.#unlogged = 0;
    const since = refused > 1 ? ` (${refused} refused since the last such line)` : '';
    this.#logger.warn({ ...fields, refused }, message + since);
  }
}

function unlimitedIfZero(value: number | undefined): number {
  return value === undefined || value === 0 ? Infinity : value;
}

/** Node's timers take at most 2^31-1 ms (a longer delay fires at once); grpc-js reads that much as "never". */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** A connection's key while it is open: its remote address and port (what a call can tell of it). */
function connectionKey(address: string | undefined, port: number | undefined): string {
  return `${address} ${port}`;
}

export class InboundConnections {
  readonly #maxPerPeer: number;
  readonly #maxTotal: number;
  readonly #handshakeTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #onLimit: (limit: ConnectionLimit) => void;
  /** Open connections by remote address. */
  readonly #perPeer = new Map<string, number>();
  /** Connections that have not started a call yet, and the timer that will close each. */
  readonly #awaitingFirstCall = new Map<string, NodeJS.Timeout>();
  readonly #logs: Record<ConnectionLimit, RefusalLog>;

  constructor(limits: InboundConnectionLimits = {}, logger: Logger) {
    this.#maxPerPeer = unlimitedIfZero(limits.maxPerPeer);
    this.#maxTotal = unlimitedIfZero(limits.maxTotal);
    this.#handshakeTimeoutMs = Math.min(limits.handshakeTimeoutMs ?? 0, LONGEST_TIMER_MS);
    this.#idleTimeoutMs = Math.min(limits.idleTimeoutMs ?? 0, LONGEST_TIMER_MS);
    this.#onLimit = limits.onLimit ?? (() => {});
    this.#logs = { connections_per_peer: new RefusalLog(logger), inbound_connections: new RefusalLog(logger), handshake_timeout: new RefusalLog(logger) };
  }

  /**
   * Options for the grpc.Server: grpc-js's idle timeout, and (with a first-call deadline) an
   * interceptor that sees each call arrive and so tells which connection has started one.
   */
  grpcOptions(): grpc.ServerOptions {
    const options: grpc.ServerOptions = {};
    if (this.#idleTimeoutMs > 0) options['grpc.max_connection_idle_ms'] = this.#idleTimeoutMs;
    if (this.#handshakeTimeoutMs > 0) {
      options.interceptors = [(_method, call) => {
        // Most calls come on connections past their first call: no key to make, nothing to clear.
        if (this.#awaitingFirstCall.size > 0) {
          const { remoteAddress, remotePort } = call.getConnectionInfo();
          this.#clearFirstCallDeadline(connectionKey(remoteAddress, remotePort));
        }
        // Passed on as it is: grpc-js only needs the call interface here, and a wrapping
        // ServerInterceptingCall would add a closure to every message of every Link stream.
        return call as grpc.ServerInterceptingCall;
      }];
    }
    return options;
  }

  /** The total cap is Node's own (`maxConnections`): the listener closes the extra socket before we see it. */
  watch(listener: Server): void {
    if (this.#maxTotal === Infinity) return;
    listener.maxConnections = this.#maxTotal;
    listener.on('drop', (dropped) => this.#refuse('inbound_connections', dropped?.remoteAddress,
      `inbound connection refused: ${this.#maxTotal} are open, the most this sidecar takes (limits.maxInboundConnections)`));
  }

  /** Whether to serve a socket just accepted; one over a limit is closed at once. */
  admit(socket: Socket): boolean {
    const address = socket.remoteAddress;
    if (address === undefined) { socket.destroy(); return false; } // already gone
    const open = this.#perPeer.get(address) ?? 0;
    if (open >= this.#maxPerPeer) {
      socket.destroy();
      this.#refuse('connections_per_peer', address,
        `inbound connection from ${address} refused: ${open} are open from it, the most one address may have (limits.maxConnectionsPerPeer)`);
      return false;
    }
    this.#perPeer.set(address, open + 1);
    const key = connectionKey(address, socket.remotePort);
    if (this.#handshakeTimeoutMs > 0) {
      const timer = setTimeout(() => this.#noCallInTime(socket, address, key), this.#handshakeTimeoutMs);
      timer.unref();
      this.#awaitingFirstCall.set(key, timer);
    }
    socket.once('close', () => {
      const left = (this.#perPeer.get(address) ?? 1) - 1;
      if (left > 0) this.#perPeer.set(address, left);
      else this.#perPeer.delete(address);
      this.#clearFirstCallDeadline(key);
    });
    return true;
  }

  #clearFirstCallDeadline(key: string): void {
    const timer = this.#awaitingFirstCall.get(key);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#awaitingFirstCall.delete(key);
  }

  #noCallInTime(socket: Socket, address: string, key: string): void {
    this.#awaitingFirstCall.delete(key);
    socket.destroy();
    this.#refuse('handshake_timeout', address,
      `inbound connection from ${address} closed: no call within ${this.#handshakeTimeoutMs} ms of connecting (limits.inboundHandshakeTimeout)`);
  }

  #refuse(limit: ConnectionLimit, address: string | undefined, message: string): void {
    this.#onLimit(limit);
    const code = limit === 'handshake_timeout' ? 'INBOUND_HANDSHAKE_TIMEOUT' : 'INBOUND_CONNECTION_REFUSED';
    this.#logs[limit].refused({ code, limit, peer: address }, message);
  }
}
