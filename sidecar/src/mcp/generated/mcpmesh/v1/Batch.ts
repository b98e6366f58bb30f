// Original file: sidecar/src/mcp/mcp.proto

import type { Envelope as _mcpmesh_v1_Envelope, Envelope__Output as _mcpmesh_v1_Envelope__Output } from '../../mcpmesh/v1/Envelope.ts';

export interface Batch {
  'envelopes'?: (_mcpmesh_v1_Envelope)[];
}

export interface Batch__Output {
  'envelopes'?: (_mcpmesh_v1_Envelope__Output)[];
}
