// Original file: sidecar/src/mcp/mcp.proto


export interface Header {
  'name'?: (string);
  'value'?: (string);
}

export interface Header__Output {
  'name'?: (string);
  'value'?: (string);
}
