// Original file: sidecar/src/mcp/mcp.proto

import type { Envelope as _mcpmesh_v1_Envelope, Envelope__Output as _mcpmesh_v1_Envelope__Output } from '../../mcpmesh/v1/Envelope.ts';
import type { End as _mcpmesh_v1_End, End__Output as _mcpmesh_v1_End__Output } from '../../mcpmesh/v1/End.ts';
import type { MeshError as _mcpmesh_v1_MeshError, MeshError__Output as _mcpmesh_v1_MeshError__Output } from '../../mcpmesh/v1/MeshError.ts';

/**
 * One message of a Stream call. Each side sends exactly one `head` first, then any number of
 * `data` frames, then `end` (or `error` at any point, which ends the exchange).
 */
export interface Frame {
  'head'?: (_mcpmesh_v1_Envelope | null);
  'data'?: (Buffer | Uint8Array | string);
  'end'?: (_mcpmesh_v1_End | null);
  'error'?: (_mcpmesh_v1_MeshError | null);
  'kind'?: "head"|"data"|"end"|"error";
}

/**
 * One message of a Stream call. Each side sends exactly one `head` first, then any number of
 * `data` frames, then `end` (or `error` at any point, which ends the exchange).
 */
export interface Frame__Output {
  'head'?: (_mcpmesh_v1_Envelope__Output);
  'data'?: (Buffer);
  'end'?: (_mcpmesh_v1_End__Output);
  'error'?: (_mcpmesh_v1_MeshError__Output);
}
