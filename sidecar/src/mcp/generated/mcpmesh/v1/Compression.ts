// Original file: sidecar/src/mcp/mcp.proto

/**
 * Per-message payload compression, used only when the peer announced the algorithm in its HELLO
 * (capabilities "gzip", "lz4").
 */
export const Compression = {
  IDENTITY: 0,
  GZIP: 1,
  /**
   * LZ4 block format, prefixed with the uncompressed length (uint32 little-endian)
   */
  LZ4: 2,
} as const;

/**
 * Per-message payload compression, used only when the peer announced the algorithm in its HELLO
 * (capabilities "gzip", "lz4").
 */
export type Compression =
  | 'IDENTITY'
  | 0
  | 'GZIP'
  | 1
  /**
   * LZ4 block format, prefixed with the uncompressed length (uint32 little-endian)
   */
  | 'LZ4'
  | 2

/**
 * Per-message payload compression, used only when the peer announced the algorithm in its HELLO
 * (capabilities "gzip", "lz4").
 */
export type Compression__Output = typeof Compression[keyof typeof Compression]
