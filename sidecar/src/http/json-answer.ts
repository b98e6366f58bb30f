// An HTTP answer shown inside a JSON document (batch results, async message status): headers as a
// record, and the body as text when it is textual, else as base64.
import type { Header } from '../mcp/codec.ts';

export interface JsonAnswer {
  status: number;
  headers: Record<string, string | string[]>;
  body?: string;
  bodyBase64?: string;
}

export function headersRecord(headers: readonly Header[]): Record<string, string | string[]> {
  const record: Record<string, string | string[]> = {};
  for (const { name, value } of headers) {
    const existing = record[name];
    record[name] = existing === undefined ? value : [...[existing].flat(), value];
  }
  return record;
}

export function jsonAnswer(status: number, headers: readonly Header[], body: Buffer): JsonAnswer {
  const record = headersRecord(headers);
  const type = String(record['content-type'] ?? '');
  const textual = body.byteLength === 0 || /^text\/|json|xml|javascript|x-www-form-urlencoded/.test(type);
  return textual ? { status, headers: record, body: body.toString('utf8') } : { status, headers: record, bodyBase64: body.toString('base64') };
}
