// A small OTLP/HTTP trace receiver for tests: a node:http server on 127.0.0.1 port 0 that takes real
// export requests (POST /v1/traces) as OTLP/protobuf or OTLP/JSON, gzip or not, decodes them and
// keeps the spans. Tests wait for the spans they expect (waitFor), never for time.
//
// The protobuf is decoded with the OTLP schema (opentelemetry-proto: collector/trace/v1,
// trace/v1, common/v1, resource/v1) by protobufjs. The package with the .proto files is not
// installed, so the messages needed are written out below, field numbers as in opentelemetry-proto;
// fields left out (events, links, dropped counts) are skipped by the decoder.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';

const OTLP_TRACE_PROTO = `
syntax = "proto3";
package otlp;

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  int32 kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  Status status = 15;
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
`;

const ExportRequest = protobuf.parse(OTLP_TRACE_PROTO).root.lookupType('otlp.ExportTraceServiceRequest');

export type AttributeValue = string | number | boolean | AttributeValue[];

export const SPAN_KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const;
export type SpanKindName = (typeof SPAN_KINDS)[number];

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: SpanKindName;
  attributes: Record<string, AttributeValue>;
  /** 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  resource: Record<string, AttributeValue>;
  scope: string;
  startNs: bigint;
  endNs: bigint;
}

export interface ExportRequestSeen {
  path: string;
  contentType: string;
  contentEncoding: string | undefined;
  spans: number;
}

export interface OtlpReceiver {
  /** The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  readonly url: string;
  readonly port: number;
  readonly spans: ReceivedSpan[];
  readonly requests: ExportRequestSeen[];
  /** Resolves with `check(spans)` once it returns something other than undefined, checked on every export. */
  waitFor<T>(check: (spans: readonly ReceivedSpan[]) => T | undefined, options?: { timeoutMs?: number; what?: string }): Promise<T>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: ExportRequestSeen[] = [];
  const waiters = new Set<() => void>();
  const server: Server = createServer(async (req, res) => {
    try {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const body = await readBody(req);
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
      const json = contentType === 'application/json';
      const received = json ? fromJson(JSON.parse(body.toString('utf8'))) : fromProtobuf(body);
      requests.push({ path: req.url, contentType, contentEncoding: req.headers['content-encoding'], spans: received.length });
      spans.push(...received);
      // An empty ExportTraceServiceResponse: no bytes in protobuf, {} in JSON.
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' }).end(json ? '{}' : undefined);
      for (const waiter of [...waiters]) waiter();
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    spans,
    requests,
    waitFor(check, options = {}) {
      const timeoutMs = options.timeoutMs ?? 10_000;
      return new Promise((resolve, reject) => {
        const waiter = () => {
          let result;
          try {
            result = check(spans);
          } catch (err) {
            finish();
            reject(err);
            return;
          }
          if (result !== undefined) {
            finish();
            resolve(result);
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`OTLP receiver: ${options.what ?? 'the spans expected'} did not arrive within ${timeoutMs} ms; `
            + `received ${spans.length} spans: ${spans.map((s) => `${s.name} ${s.kind} ${s.traceId}/${s.spanId}<-${s.parentSpanId}`).join(', ')}`));
        }, timeoutMs);
        const finish = () => { clearTimeout(timer); waiters.delete(waiter); };
        waiters.add(waiter);
        waiter();
      });
    },
    close: async () => {
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  return req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
}

// ---- protobuf ----

interface PbAnyValue { stringValue?: string; boolValue?: boolean; intValue?: string; doubleValue?: number; arrayValue?: { values?: PbAnyValue[] }; bytesValue?: Uint8Array }
interface PbKeyValue { key: string; value?: PbAnyValue }
interface PbSpan {
  traceId: Uint8Array; spanId: Uint8Array; parentSpanId?: Uint8Array; traceState?: string; name: string; kind?: number;
  startTimeUnixNano: string; endTimeUnixNano: string; attributes?: PbKeyValue[]; status?: { code?: number; message?: string };
}
interface PbRequest { resourceSpans?: { resource?: { attributes?: PbKeyValue[] }; scopeSpans?: { scope?: { name?: string }; spans?: PbSpan[] }[] }[] }

function fromProtobuf(body: Buffer): ReceivedSpan[] {
  const request = ExportRequest.toObject(ExportRequest.decode(body), { longs: String, defaults: false, oneofs: false }) as PbRequest;
  const hex = (bytes: Uint8Array | undefined) => (bytes ? Buffer.from(bytes).toString('hex') : '');
  const value = (v: PbAnyValue | undefined): AttributeValue => {
    if (!v) return '';
    if (v.stringValue !== undefined) return v.stringValue;
    if (v.boolValue !== undefined) return v.boolValue;
    if (v.intValue !== undefined) return Number(v.intValue);
    if (v.doubleValue !== undefined) return v.doubleValue;
    if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(value);
    if (v.bytesValue !== undefined) return hex(v.bytesValue);
    return '';
  };
  const attributes = (list: PbKeyValue[] | undefined) => Object.fromEntries((list ?? []).map((kv) => [kv.key, value(kv.value)]));
  return (request.resourceSpans ?? []).flatMap((rs) => {
    const resource = attributes(rs.resource?.attributes);
    return (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s): ReceivedSpan => ({
      traceId: hex(s.traceId),
      spanId: hex(s.spanId),
      parentSpanId: hex(s.parentSpanId),
      traceState: s.traceState ?? '',
      name: s.name,
      kind: SPAN_KINDS[s.kind ?? 0] ?? 'UNSPECIFIED',
      attributes: attributes(s.attributes),
      status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
      resource,
      scope: ss.scope?.name ?? '',
      startNs: BigInt(s.startTimeUnixNano),
      endNs: BigInt(s.endTimeUnixNano),
    })));
  });
}

// ---- JSON (OTLP/JSON: lowerCamelCase fields, ids in hex, 64-bit integers as strings or numbers) ----

interface JsonAnyValue { stringValue?: string; boolValue?: boolean; intValue?: string | number; doubleValue?: number; arrayValue?: { values?: JsonAnyValue[] }; bytesValue?: string }
interface JsonKeyValue { key: string; value?: JsonAnyValue }
interface JsonSpan {
  traceId: string; spanId: string; parentSpanId?: string; traceState?: string; name: string; kind?: number;
  startTimeUnixNano: string | number; endTimeUnixNano: string | number; attributes?: JsonKeyValue[]; status?: { code?: number; message?: string };
}
interface JsonRequest { resourceSpans?: { resource?: { attributes?: JsonKeyValue[] }; scopeSpans?: { scope?: { name?: string }; spans?: JsonSpan[] }[] }[] }

function fromJson(request: JsonRequest): ReceivedSpan[] {
  const value = (v: JsonAnyValue | undefined): AttributeValue => {
    if (!v) return '';
    if (v.stringValue !== undefined) return v.stringValue;
    if (v.boolValue !== undefined) return v.boolValue;
    if (v.intValue !== undefined) return Number(v.intValue);
    if (v.doubleValue !== undefined) return v.doubleValue;
    if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(value);
    if (v.bytesValue !== undefined) return Buffer.from(v.bytesValue, 'base64').toString('hex');
    return '';
  };
  const attributes = (list: JsonKeyValue[] | undefined) => Object.fromEntries((list ?? []).map((kv) => [kv.key, value(kv.value)]));
  return (request.resourceSpans ?? []).flatMap((rs) => {
    const resource = attributes(rs.resource?.attributes);
    return (rs.scopeSpans ?? []).flatMap((ss) => (ss.spans ?? []).map((s): ReceivedSpan => ({
      traceId: s.traceId.toLowerCase(),
      spanId: s.spanId.toLowerCase(),
      parentSpanId: (s.parentSpanId ?? '').toLowerCase(),
      traceState: s.traceState ?? '',
      name: s.name,
      kind: SPAN_KINDS[s.kind ?? 0] ?? 'UNSPECIFIED',
      attributes: attributes(s.attributes),
      status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
      resource,
      scope: ss.scope?.name ?? '',
      startNs: BigInt(s.startTimeUnixNano),
      endNs: BigInt(s.endTimeUnixNano),
    })));
  });
}
