// Original file: sidecar/src/mcp/mcp.proto


/**
 * The HTTP part of a REQUEST or RESPONSE; headers travel in Envelope.headers.
 */
export interface HttpHead {
  /**
   * REQUEST
   */
  'method'?: (string);
  /**
   * REQUEST: origin-form target, query string included
   */
  'path'?: (string);
  /**
   * REQUEST: the Host the calling app used
   */
  'authority'?: (string);
  /**
   * RESPONSE
   */
  'status'?: (number);
  /**
   * RESPONSE: the body was too large or open-ended to inline; the caller fetches it with a
   * Stream call whose head carries this id in body_stream_id.
   */
  'bodyStreamId'?: (string);
  /**
   * REQUEST on a Stream call: the body follows as data frames (otherwise it is the inline payload).
   */
  'bodyFollows'?: (boolean);
}

/**
 * The HTTP part of a REQUEST or RESPONSE; headers travel in Envelope.headers.
 */
export interface HttpHead__Output {
  /**
   * REQUEST
   */
  'method'?: (string);
  /**
   * REQUEST: origin-form target, query string included
   */
  'path'?: (string);
  /**
   * REQUEST: the Host the calling app used
   */
  'authority'?: (string);
  /**
   * RESPONSE
   */
  'status'?: (number);
  /**
   * RESPONSE: the body was too large or open-ended to inline; the caller fetches it with a
   * Stream call whose head carries this id in body_stream_id.
   */
  'bodyStreamId'?: (string);
  /**
   * REQUEST on a Stream call: the body follows as data frames (otherwise it is the inline payload).
   */
  'bodyFollows'?: (boolean);
}
