// Original file: sidecar/src/mcp/mcp.proto

export const MessageType = {
  TYPE_UNSPECIFIED: 0,
  /**
   * first message each way on a Link: version and capabilities
   */
  HELLO: 1,
  /**
   * an HTTP request for the peer's app
   */
  REQUEST: 2,
  /**
   * the answer to a REQUEST (correlation_id = request id)
   */
  RESPONSE: 3,
  /**
   * a mesh error instead of a RESPONSE (correlation_id = request id)
   */
  ERROR: 4,
  /**
   * the caller gave up on a REQUEST (correlation_id = request id)
   */
  CANCEL: 5,
  /**
   * sent on an idle link so both sides know the other is alive
   */
  HEARTBEAT: 6,
  /**
   * the sender is shutting down: send it no new requests
   */
  DRAIN: 7,
  /**
   * Reserved in 1.x. A durable message (async call or published event) travels as a REQUEST with
   * message_id set, and its RESPONSE, sent only once the receiver has recorded it, is the acknowledgement.
   */
  ACK: 8,
  EVENT: 9,
} as const;

export type MessageType =
  | 'TYPE_UNSPECIFIED'
  | 0
  /**
   * first message each way on a Link: version and capabilities
   */
  | 'HELLO'
  | 1
  /**
   * an HTTP request for the peer's app
   */
  | 'REQUEST'
  | 2
  /**
   * the answer to a REQUEST (correlation_id = request id)
   */
  | 'RESPONSE'
  | 3
  /**
   * a mesh error instead of a RESPONSE (correlation_id = request id)
   */
  | 'ERROR'
  | 4
  /**
   * the caller gave up on a REQUEST (correlation_id = request id)
   */
  | 'CANCEL'
  | 5
  /**
   * sent on an idle link so both sides know the other is alive
   */
  | 'HEARTBEAT'
  | 6
  /**
   * the sender is shutting down: send it no new requests
   */
  | 'DRAIN'
  | 7
  /**
   * Reserved in 1.x. A durable message (async call or published event) travels as a REQUEST with
   * message_id set, and its RESPONSE, sent only once the receiver has recorded it, is the acknowledgement.
   */
  | 'ACK'
  | 8
  | 'EVENT'
  | 9

export type MessageType__Output = typeof MessageType[keyof typeof MessageType]
