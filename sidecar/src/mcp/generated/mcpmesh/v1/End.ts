// Original file: sidecar/src/mcp/mcp.proto

import type { Header as _mcpmesh_v1_Header, Header__Output as _mcpmesh_v1_Header__Output } from '../../mcpmesh/v1/Header.ts';

export interface End {
  'trailers'?: (_mcpmesh_v1_Header)[];
}

export interface End__Output {
  'trailers'?: (_mcpmesh_v1_Header__Output)[];
}
