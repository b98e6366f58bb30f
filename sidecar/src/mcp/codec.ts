// Wire types of MCP (see mcp.proto) and their binary codec. The .proto file is the source of truth:
// protobufjs builds the codec from it at start-up, and the TypeScript types are generated from it
// into generated/ (checked in; test/unit/mcp/proto-types.test.ts fails when they are out of date).
// test/unit/mcp/codec.test.ts round-trips every field.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { Batch__Output } from './generated/mcpmesh/v1/Batch.ts';
import { Compression as GeneratedCompression, type Compression__Output } from './generated/mcpmesh/v1/Compression.ts';
import type { End__Output } from './generated/mcpmesh/v1/End.ts';
import type { Envelope__Output } from './generated/mcpmesh/v1/Envelope.ts';
import type { Frame__Output } from './generated/mcpmesh/v1/Frame.ts';
import type { Header__Output } from './generated/mcpmesh/v1/Header.ts';
import type { Hello__Output } from './generated/mcpmesh/v1/Hello.ts';
import type { HttpHead__Output } from './generated/mcpmesh/v1/HttpHead.ts';
import type { MeshError__Output } from './generated/mcpmesh/v1/MeshError.ts';
import { MessageType as GeneratedMessageType, type MessageType__Output } from './generated/mcpmesh/v1/MessageType.ts';
import { Priority as GeneratedPriority, type Priority__Output } from './generated/mcpmesh/v1/Priority.ts';
import type { TraceContext__Output } from './generated/mcpmesh/v1/TraceContext.ts';

export const PROTO_PATH = fileURLToPath(new URL('./mcp.proto', import.meta.url));

// The message types come from generated/ (npm run proto:types): the generator's "output" shapes,
// i.e. what protobufjs decodes, with enums as numbers. The few fields below are stated more exactly
// than the generated types can: fields every envelope has (id, type, a header's name and value),
// unset sub-messages that may be null, bytes as any Uint8Array. `Override` checks the names exist.
export const MessageType = GeneratedMessageType;
export type MessageType = MessageType__Output;
export const Priority = GeneratedPriority;
export type Priority = Priority__Output;
export const Compression = GeneratedCompression;
export type Compression = Compression__Output;

type Override<T, K extends keyof T, U extends { [P in K]?: unknown }> = Omit<T, K> & U;

export type Header = Required<Header__Output>;
export type TraceContext = TraceContext__Output;
export type HttpHead = HttpHead__Output;
export type Hello = Override<Hello__Output, 'major' | 'minor', { major: number; minor: number }>;
export type WireError = Required<MeshError__Output>;

export type Envelope = Override<Envelope__Output, 'id' | 'type' | 'trace' | 'headers' | 'payload' | 'http' | 'hello' | 'error', {
  id: string;
  type: MessageType;
  trace?: TraceContext | null;
  headers?: Header[];
  payload?: Uint8Array;
  http?: HttpHead | null;
  hello?: Hello | null;
  error?: WireError | null;
}>;

export type Batch = Override<Batch__Output, 'envelopes', { envelopes: Envelope[] }>;

/** One message of a Stream call: exactly one of the fields is set. */
export type Frame = Override<Frame__Output, 'head' | 'data' | 'end' | 'error', {
  head?: Envelope | null;
  data?: Uint8Array | null;
  end?: Override<End__Output, 'trailers', { trailers?: Header[] }> | null;
  error?: WireError | null;
}>;

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
