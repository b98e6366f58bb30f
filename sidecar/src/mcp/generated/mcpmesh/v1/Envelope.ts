// Original file: sidecar/src/mcp/mcp.proto

import type { MessageType as _mcpmesh_v1_MessageType, MessageType__Output as _mcpmesh_v1_MessageType__Output } from '../../mcpmesh/v1/MessageType.ts';
import type { Priority as _mcpmesh_v1_Priority, Priority__Output as _mcpmesh_v1_Priority__Output } from '../../mcpmesh/v1/Priority.ts';
import type { Compression as _mcpmesh_v1_Compression, Compression__Output as _mcpmesh_v1_Compression__Output } from '../../mcpmesh/v1/Compression.ts';
import type { TraceContext as _mcpmesh_v1_TraceContext, TraceContext__Output as _mcpmesh_v1_TraceContext__Output } from '../../mcpmesh/v1/TraceContext.ts';
import type { Header as _mcpmesh_v1_Header, Header__Output as _mcpmesh_v1_Header__Output } from '../../mcpmesh/v1/Header.ts';
import type { HttpHead as _mcpmesh_v1_HttpHead, HttpHead__Output as _mcpmesh_v1_HttpHead__Output } from '../../mcpmesh/v1/HttpHead.ts';
import type { Hello as _mcpmesh_v1_Hello, Hello__Output as _mcpmesh_v1_Hello__Output } from '../../mcpmesh/v1/Hello.ts';
import type { MeshError as _mcpmesh_v1_MeshError, MeshError__Output as _mcpmesh_v1_MeshError__Output } from '../../mcpmesh/v1/MeshError.ts';

export interface Envelope {
  /**
   * unique, sortable by creation time (ULID)
   */
  'id'?: (string);
  'type'?: (_mcpmesh_v1_MessageType);
  /**
   * Unix time in milliseconds when created
   */
  'timestampMs'?: (number | string);
  /**
   * calling service, "name.namespace"
   */
  'source'?: (string);
  /**
   * called service, "name.namespace"
   */
  'destination'?: (string);
  'priority'?: (_mcpmesh_v1_Priority);
  /**
   * applies to payload
   */
  'compression'?: (_mcpmesh_v1_Compression);
  /**
   * the REQUEST this envelope answers or cancels
   */
  'correlationId'?: (string);
  /**
   * time left for the call when sent; 0 means none
   */
  'deadlineMs'?: (number);
  'trace'?: (_mcpmesh_v1_TraceContext | null);
  'headers'?: (_mcpmesh_v1_Header)[];
  /**
   * the HTTP body (inline), compressed as `compression` says
   */
  'payload'?: (Buffer | Uint8Array | string);
  'http'?: (_mcpmesh_v1_HttpHead | null);
  'hello'?: (_mcpmesh_v1_Hello | null);
  'error'?: (_mcpmesh_v1_MeshError | null);
  /**
   * REQUEST delivering a durable message (an async call or a published event): the message's id,
   * which the receiving sidecar uses to drop duplicates, and which delivery attempt this is.
   */
  'messageId'?: (string);
  'attempt'?: (number);
  /**
   * REQUEST delivering a published event: its topic
   */
  'topic'?: (string);
  /**
   * REQUEST: the answer's payload may be compressed with this algorithm when it is at least
   * compress_min_bytes long (the caller's compression policy).
   */
  'acceptCompression'?: (_mcpmesh_v1_Compression);
  'compressMinBytes'?: (number);
}

export interface Envelope__Output {
  /**
   * unique, sortable by creation time (ULID)
   */
  'id'?: (string);
  'type'?: (_mcpmesh_v1_MessageType__Output);
  /**
   * Unix time in milliseconds when created
   */
  'timestampMs'?: (number);
  /**
   * calling service, "name.namespace"
   */
  'source'?: (string);
  /**
   * called service, "name.namespace"
   */
  'destination'?: (string);
  'priority'?: (_mcpmesh_v1_Priority__Output);
  /**
   * applies to payload
   */
  'compression'?: (_mcpmesh_v1_Compression__Output);
  /**
   * the REQUEST this envelope answers or cancels
   */
  'correlationId'?: (string);
  /**
   * time left for the call when sent; 0 means none
   */
  'deadlineMs'?: (number);
  'trace'?: (_mcpmesh_v1_TraceContext__Output);
  'headers'?: (_mcpmesh_v1_Header__Output)[];
  /**
   * the HTTP body (inline), compressed as `compression` says
   */
  'payload'?: (Buffer);
  'http'?: (_mcpmesh_v1_HttpHead__Output);
  'hello'?: (_mcpmesh_v1_Hello__Output);
  'error'?: (_mcpmesh_v1_MeshError__Output);
  /**
   * REQUEST delivering a durable message (an async call or a published event): the message's id,
   * which the receiving sidecar uses to drop duplicates, and which delivery attempt this is.
   */
  'messageId'?: (string);
  'attempt'?: (number);
  /**
   * REQUEST delivering a published event: its topic
   */
  'topic'?: (string);
  /**
   * REQUEST: the answer's payload may be compressed with this algorithm when it is at least
   * compress_min_bytes long (the caller's compression policy).
   */
  'acceptCompression'?: (_mcpmesh_v1_Compression__Output);
  'compressMinBytes'?: (number);
}
