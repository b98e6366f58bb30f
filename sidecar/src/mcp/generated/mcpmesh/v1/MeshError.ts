// Original file: sidecar/src/mcp/mcp.proto


export interface MeshError {
  /**
   * a code from sidecar/src/errors/codes.ts, e.g. APP_UNAVAILABLE
   */
  'code'?: (string);
  'message'?: (string);
}

export interface MeshError__Output {
  /**
   * a code from sidecar/src/errors/codes.ts, e.g. APP_UNAVAILABLE
   */
  'code'?: (string);
  'message'?: (string);
}
