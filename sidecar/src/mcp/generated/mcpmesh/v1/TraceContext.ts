// Original file: sidecar/src/mcp/mcp.proto


export interface TraceContext {
  'traceparent'?: (string);
  'tracestate'?: (string);
}

export interface TraceContext__Output {
  'traceparent'?: (string);
  'tracestate'?: (string);
}
