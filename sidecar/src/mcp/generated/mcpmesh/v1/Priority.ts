// Original file: sidecar/src/mcp/mcp.proto

export const Priority = {
  MEDIUM: 0,
  HIGH: 1,
  LOW: 2,
} as const;

export type Priority =
  | 'MEDIUM'
  | 0
  | 'HIGH'
  | 1
  | 'LOW'
  | 2

export type Priority__Output = typeof Priority[keyof typeof Priority]
