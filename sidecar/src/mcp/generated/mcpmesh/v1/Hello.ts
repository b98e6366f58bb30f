// Original file: sidecar/src/mcp/mcp.proto


export interface Hello {
  'major'?: (number);
  'minor'?: (number);
  'capabilities'?: (string)[];
  /**
   * the sender's instance name, for logs
   */
  'node'?: (string);
}

export interface Hello__Output {
  'major'?: (number);
  'minor'?: (number);
  'capabilities'?: (string)[];
  /**
   * the sender's instance name, for logs
   */
  'node'?: (string);
}
