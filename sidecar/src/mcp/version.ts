import type { Logger } from 'pino';

// MCP protocol version. A peer with another major version is refused; a newer minor still works,
// and each side uses only the capabilities both announce in HELLO.
export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 0;

/** What this build can do; a capability is used only when both sides list it. */
export const CAPABILITIES = ['batch', 'stream', 'body-pull', 'cancel', 'drain', 'gzip', 'lz4'] as const;

export const LINK_METHOD = '/mcpmesh.v1.Mesh/Link';
export const STREAM_METHOD = '/mcpmesh.v1.Mesh/Stream';

/** The largest gRPC message either end sends or takes (a full batch). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** What both ends of a link are tuned with (sidecar config `link.*`, plus who this sidecar is). */
export interface LinkEndSettings {
  /** This sidecar, as "service.namespace", and its instance name. */
  source: string;
  instance: string;
  batchMaxCount: number;
  batchMaxBytes: number;
  lingerMs: number;
  heartbeatIntervalMs: number;
  unhealthyAfterMs: number;
  logger: Logger;
  /**
   * Mutual TLS is on: the inbound end takes a peer's name ("service.namespace") from its verified
   * certificate's SPIFFE ID in this trust domain, never from what the peer claims (security/tls.ts).
   */
  tls?: { trustDomain: string } | undefined;
  /** What this end announces in HELLO (and so may use); CAPABILITIES unless set (tests play older peers). */
  capabilities?: readonly string[];
  /** Inbound: most Stream calls (SSE, large bodies) one peer may have open at once; unlimited unless set. */
  maxStreamsPerPeer?: number;
  /** A call refused by a limit (metrics): too many streams from one peer (inbound), a message too large to send (link). */
  onLimit?: (limit: 'streams_per_peer' | 'frame_size') => void;
  /** Inbound: other services ("name.namespace") this sidecar serves besides `source` (config `aliases`). */
  aliases?: readonly string[];
  /** A call refused because of who is at the other end (metrics; docs/security.md). */
  onRefused?: (reason: PeerRefusal) => void;
}

/**
 * Why a call was refused for who is at the other end: the peer's certificate may not serve the called
 * service (link), a call for a service this sidecar does not serve (inbound), a pull of a parked body
 * by another caller (inbound).
 */
export type PeerRefusal = 'peer_identity_mismatch' | 'misdirected' | 'body_pull_denied';

/** gRPC channel options shared by both ends: large enough for a full batch, no hidden retries. */
export function channelOptions(reconnectBaseMs: number, reconnectMaxMs: number): Record<string, number> {
  return {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.enable_retries': 0,
    'grpc.initial_reconnect_backoff_ms': Math.max(1, reconnectBaseMs),
    'grpc.max_reconnect_backoff_ms': Math.max(1, reconnectMaxMs),
    'grpc.min_reconnect_backoff_ms': Math.max(1, Math.min(reconnectBaseMs, 1000)),
    // A pool of its own per channel (each link has one channel to one peer): grpc-js's shared pool
    // is swept whole each time any channel closes, so closing N links cost N² (seconds at 5,000).
    'grpc.use_local_subchannel_pool': 1,
  };
}
