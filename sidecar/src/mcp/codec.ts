// Wire types of MCP (see mcp.proto) and their binary codec. The .proto file is the source of truth;
// protobufjs builds the codec from it at start-up, so no generated code is checked in. The TypeScript
// interfaces below mirror the .proto by hand; test/unit/mcp/codec.test.ts round-trips every field.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export const PROTO_PATH = fileURLToPath(new URL('./mcp.proto', import.meta.url));

export const MessageType = {
  TYPE_UNSPECIFIED: 0, HELLO: 1, REQUEST: 2, RESPONSE: 3, ERROR: 4, CANCEL: 5, HEARTBEAT: 6, DRAIN: 7, ACK: 8, EVENT: 9,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const Priority = { MEDIUM: 0, HIGH: 1, LOW: 2 } as const;
export type Priority = (typeof Priority)[keyof typeof Priority];

export const Compression = { IDENTITY: 0, GZIP: 1, LZ4: 2 } as const;
export type Compression = (typeof Compression)[keyof typeof Compression];

export interface Header { name: string; value: string }
export interface TraceContext { traceparent?: string; tracestate?: string }
export interface HttpHead { method?: string; path?: string; authority?: string; status?: number; bodyStreamId?: string; bodyFollows?: boolean }
export interface Hello { major: number; minor: number; capabilities?: string[]; node?: string }
export interface WireError { code: string; message: string }

export interface Envelope {
  id: string;
  type: MessageType;
  timestampMs?: number;
  source?: string;
  destination?: string;
  priority?: Priority;
  compression?: Compression;
  correlationId?: string;
  deadlineMs?: number;
  trace?: TraceContext | null;
  headers?: Header[];
  payload?: Uint8Array;
  http?: HttpHead | null;
  hello?: Hello | null;
  error?: WireError | null;
  /** A durable message's id (async call or event): the receiver's key for dropping duplicates. */
  messageId?: string;
  /** Delivery attempt of `messageId`, from 1. */
  attempt?: number;
  /** The topic of a published event. */
  topic?: string;
  /** The answer's payload may be compressed so when at least `compressMinBytes` long. */
  acceptCompression?: Compression;
  compressMinBytes?: number;
}

export interface Batch { envelopes: Envelope[] }

/** One message of a Stream call: exactly one of the fields is set. */
export interface Frame {
  head?: Envelope | null;
  data?: Uint8Array | null;
  end?: { trailers?: Header[] } | null;
  error?: WireError | null;
}

const root = protobuf.loadSync(PROTO_PATH);
const BatchType = root.lookupType('mcpmesh.v1.Batch');
const FrameType = root.lookupType('mcpmesh.v1.Frame');

/**
 * A Buffer over the same memory (decoded bytes already are Buffers in Node: no copy then). An unset
 * bytes field of a decoded message reads as protobufjs's empty default array.
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (!(bytes instanceof Uint8Array)) return Buffer.from(bytes as ArrayLike<number>);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// Encoding does not verify: every envelope is built by this process from typed values.
export function encodeBatch(batch: Batch): Buffer {
  return asBuffer(BatchType.encode(batch).finish());
}

/** Throws on malformed input; callers close the offending stream (never the process). */
export function decodeBatch(bytes: Buffer): Batch {
  return BatchType.decode(bytes) as unknown as Batch;
}

export function encodeFrame(frame: Frame): Buffer {
  return asBuffer(FrameType.encode(frame).finish());
}

/** Returns a Frame with exactly the one field that was sent (decoded messages otherwise show defaults). */
export function decodeFrame(bytes: Buffer): Frame {
  const message = FrameType.decode(bytes) as unknown as Record<string, unknown> & { kind?: keyof Frame };
  const kind = message.kind;
  return kind ? { [kind]: message[kind] } : {};
}
