// The one table of the mesh's codes. Every error the mesh makes (as opposed to one the app makes)
// carries one of ERROR_CODES: in the `mcp-mesh-error` response header, in the JSON body, in MCP
// ERROR envelopes between sidecars and in the `code` of its log line. LOG_CODES are the codes of log
// lines that answer no request (a certificate reload failing, an inbound connection refused…).
// A log line's `code` can only be one of the two (telemetry/logger.ts types pino's fields so).
// docs/errors.md and docs/logging.md list them (a test checks both).

export interface ErrorCodeInfo {
  /** HTTP status the calling app receives. */
  status: number;
  /** One line for users: what happened. */
  summary: string;
  /**
   * MCP session errors are answered with a JSON-RPC error body (code -32001, "Session not found")
   * instead of the mesh's JSON, as the MCP specification asks, so MCP clients start a new session.
   */
  jsonRpc?: true;
}

export const ERROR_CODES = {
  UNKNOWN_SERVICE: { status: 404, summary: 'No service of that name is known to discovery.' },
  UNKNOWN_ROUTE: { status: 404, summary: 'The request was addressed to the sidecar itself (or to its admin listener), but no mesh API (or admin) route has that path and method.' },
  SESSION_OWNER_GONE: { status: 404, jsonRpc: true, summary: 'The MCP session belongs to a replica that is gone; start a new session (never moved to another replica mid-session).' },
  SESSION_TOKEN_INVALID: { status: 404, jsonRpc: true, summary: 'The MCP session id carries an owner token that does not verify (forged or damaged); start a new session.' },
  SESSION_LIMIT: { status: 503, summary: 'The replica already holds limits.maxSessions MCP sessions: the session its app had just opened was closed again. Another replica may take it (the caller\'s sidecar retries there when its retry policy allows), or try later.' },
  BAD_REQUEST: { status: 400, summary: 'The request is malformed: it cannot be routed (missing or malformed Host or target, a bad mcp-mesh-priority), or a mesh API or admin request whose body, query or parameters do not validate (such as an unknown log level).' },
  BODY_TOO_LARGE: { status: 413, summary: 'The request body is larger than limits.maxBodyBytes; the connection is closed after the answer, the rest of the body unread.' },
  HEADERS_TOO_LARGE: { status: 431, summary: 'The request line and headers are larger than limits.maxHeaderBytes.' },
  REQUEST_TIMEOUT: { status: 408, summary: 'The app did not send a whole request head within limits.headerTimeout (a slow or stalled client).' },
  NO_HEALTHY_ENDPOINT: { status: 503, summary: 'The service is known but none of its endpoints is reachable and healthy.' },
  CIRCUIT_OPEN: { status: 503, summary: "The service's circuit breaker is open after too many failures; the call was not sent." },
  OVERLOADED: { status: 503, summary: 'Too many calls to the service are in flight from this sidecar and its queue is full (Retry-After says when to try again).' },
  SHUTTING_DOWN: { status: 503, summary: 'The sidecar (local or remote) is draining and takes no new calls.' },
  PEER_UNAVAILABLE: { status: 502, summary: "The peer sidecar could not be reached; the request was not sent." },
  LINK_BROKEN: { status: 502, summary: 'The link to the peer sidecar broke while the call was in flight.' },
  PROTOCOL_ERROR: { status: 502, summary: 'The peer sidecar sent a malformed or unexpected message (that stream was closed), a payload that does not decompress, or a call whose method, path or headers HTTP/1.1 cannot carry, such as a CR or LF in a header (that call failed; the app never saw it).' },
  VERSION_UNSUPPORTED: { status: 502, summary: 'The peer sidecar speaks an MCP major version this sidecar does not.' },
  PEER_IDENTITY_MISMATCH: { status: 502, summary: "Under mutual TLS, the peer sidecar's certificate names an identity that may not serve the called service (a reused pod address, a stale endpoint list); the request was not sent, and the endpoint counts as failing for that service." },
  MISDIRECTED: { status: 421, summary: 'The called sidecar does not serve the service the call was addressed to (its destination); the app there never saw the call.' },
  APP_UNAVAILABLE: { status: 502, summary: "The called service's app refused or dropped the connection." },
  APP_RESET: { status: 502, summary: "The called service's app broke off its response midway, answered with something that is not valid HTTP, or with a response head (status line and headers) over 64 KiB." },
  DEADLINE_EXCEEDED: { status: 504, summary: 'The call did not complete before its deadline; it was abandoned on both sides.' },
  STREAM_IDLE_TIMEOUT: { status: 504, summary: 'A streamed body sent nothing for longer than timeouts.streamIdle.' },
  CLIENT_CLOSED: { status: 499, summary: 'The calling app went away before the answer came (or in the middle of sending its request body); the call was cancelled.' },
  EGRESS_NOT_ALLOWED: { status: 403, summary: 'The host is not a mesh service and the sidecar\'s egress.allow does not list it; or it is (or resolves to) an address egress never reaches: loopback, unspecified, link-local, multicast, a cloud metadata address or the pod\'s own, or a private range that no exact-name, address or CIDR entry names.' },
  BODY_PULL_DENIED: { status: 403, summary: 'A peer asked for a parked response body that belongs to another caller (another identity or connection); refused, and the body stays for its caller.' },
  ACCESS_DENIED: { status: 403, summary: 'The caller may not use this: an admin route that answers only local callers (and, with access rules, a source the rules do not allow).' },
  STORAGE_FULL: { status: 507, summary: 'The data directory is full (or storage.maxBytes is reached): the async message was not accepted. Synchronous calls still work.' },
  STORAGE_UNAVAILABLE: { status: 503, summary: 'The data directory cannot be written (missing, read-only, in use by another sidecar): the async message was not accepted. Synchronous calls still work.' },
  MESSAGE_NOT_FOUND: { status: 404, summary: 'No async message (or dead letter) with that id is kept by this sidecar: unknown, or past its retention.' },
  UNKNOWN_TOPIC: { status: 404, summary: 'No loaded policy subscribes any service to that topic, so a published event would reach no one.' },
  INTERNAL: { status: 500, summary: 'A fault inside the sidecar; the log has details.' },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Codes of log lines that answer no request: what went wrong (or changed) in the sidecar's own
 * life, for alerts and searches. Never sent to an app or a peer.
 */
export const LOG_CODES = {
  CONFIG_INVALID: { summary: 'The config file changed on disk but does not validate; the running config (its static endpoints) stays.' },
  CONFIG_WATCH_FAILED: { summary: 'Watching the config file failed; changes are not picked up until a restart.' },
  POLICY_INVALID: { summary: 'A policy change on disk was rejected (its problems are listed with file, line and column); the running policies stay.' },
  TLS_PLAINTEXT: { summary: 'No tls.cert/tls.key/tls.ca: sidecar-to-sidecar traffic is plaintext and peers are not checked against the called service.' },
  TLS_IDENTITY_MISMATCH: { summary: "This sidecar's certificate names another service than its config: peers see the certificate's name." },
  TLS_RELOADED: { summary: 'New certificate files were loaded (with their identity, expiry and fingerprint); new connections use them.' },
  TLS_RELOAD_FAILED: { summary: 'The certificate files changed but cannot be used; the previous ones stay.' },
  TLS_WATCH_FAILED: { summary: 'Watching the certificate files failed; new certificates are not picked up until a restart.' },
  TLS_PEER_REFUSED: { summary: "A peer's call was refused (UNAUTHENTICATED): its certificate carries no usable identity of the trust domain." },
  MCP_TOKEN_KEY_EPHEMERAL: { summary: 'mcp.tokenKey is not set: MCP session tokens are signed with a key of this sidecar only.' },
  INBOUND_CONNECTION_REFUSED: { summary: 'Inbound connections were refused over limits.maxConnectionsPerPeer or limits.maxInboundConnections (at most one line per 10 s, with how many).' },
  INBOUND_HANDSHAKE_TIMEOUT: { summary: 'Inbound connections were closed for starting no call within limits.inboundHandshakeTimeout (at most one line per 10 s, with how many).' },
  DNS_LOOKUP_FAILED: { summary: "A DNS lookup of a service's name failed; the last known endpoints are kept and the lookup is tried again after a back-off." },
  KUBERNETES_WATCH_FAILED: { summary: 'Listing or watching EndpointSlices failed; a new list and watch start after a back-off.' },
  APP_STATUS: { summary: "A durable message's delivery was answered by the app with a failing status (the message's lastError has the status); tried again or dead-lettered as the delivery policy says." },
} as const satisfies Record<string, { summary: string }>;

export type LogCode = keyof typeof LOG_CODES;

/** What a log line's `code` may be: a mesh error code, or a log-only code. */
export type MeshCode = ErrorCode | LogCode;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CODES, value);
}
