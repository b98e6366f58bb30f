// Original file: sidecar/src/mcp/mcp.proto

import type { MethodDefinition } from '@grpc/proto-loader'
import type { Batch as _mcpmesh_v1_Batch, Batch__Output as _mcpmesh_v1_Batch__Output } from '../../mcpmesh/v1/Batch.ts';
import type { Frame as _mcpmesh_v1_Frame, Frame__Output as _mcpmesh_v1_Frame__Output } from '../../mcpmesh/v1/Frame.ts';

export interface MeshDefinition {
  Link: MethodDefinition<_mcpmesh_v1_Batch, _mcpmesh_v1_Batch, _mcpmesh_v1_Batch__Output, _mcpmesh_v1_Batch__Output>
  Stream: MethodDefinition<_mcpmesh_v1_Frame, _mcpmesh_v1_Frame, _mcpmesh_v1_Frame__Output, _mcpmesh_v1_Frame__Output>
}
