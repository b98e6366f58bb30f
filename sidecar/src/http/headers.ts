// Header handling shared by both directions: which headers are end-to-end, and conversions between
// Node's raw header lists, undici's header objects and MCP Header lists.
import { util } from 'undici';
import type { Header } from '../mcp/codec.ts';

/** Hop-by-hop headers (RFC 9110 §7.6.1), plus proxy-only ones; never forwarded. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'http2-settings',
]);

/** Headers only the mesh may set; whatever the app sends under these names is dropped. */
export const SOURCE_HEADER = 'mcp-mesh-source';
// priority and ordering key are read by the outbound listener; message id and topic are set by the receiving sidecar.
const MESH_CONTROL = new Set([SOURCE_HEADER, 'mcp-mesh-timeout', 'mcp-mesh-error', 'mcp-mesh-priority', 'mcp-mesh-ordering-key', 'mcp-mesh-message-id', 'mcp-mesh-topic']);

/**
 * The end-to-end headers of a request from the app, in order, names lower-cased; `host` is left
 * out (it travels as the authority) and so are mesh control headers, and `also` if given.
 */
export function endToEndRequestHeaders(rawHeaders: readonly string[], also?: string): Header[] {
  const out: Header[] = [];
  let listed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'connection') listed = addConnectionTokens(listed, rawHeaders[i + 1]!);
    if (HOP_BY_HOP.has(name) || MESH_CONTROL.has(name) || name === 'host' || name === also) continue;
    out.push({ name, value: rawHeaders[i + 1]! });
  }
  return listed ? out.filter((h) => !listed.has(h.name)) : out;
}

/** The W3C trace context headers, which a traced hop replaces with its own span's. */
export function isTraceHeader(name: string): boolean {
  return name === 'traceparent' || name === 'tracestate';
}

/**
 * A peer's request headers as the flat list undici takes, plus `extra` (host, source). Filtered again
 * in one pass, names compared lower-cased: whatever a peer sends, the app gets no hop-by-hop header,
 * no second Host and no mesh control header but the ones this sidecar sets; with `dropTrace`, no
 * trace context either (`extra` carries this sidecar's).
 */
export function peerHeadersForApp(headers: readonly Header[] | undefined, extra: readonly Header[], dropTrace = false): string[] {
  const flat: string[] = [];
  for (const { name, value } of headers ?? []) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || MESH_CONTROL.has(lower) || lower === 'host' || (dropTrace && isTraceHeader(lower))) continue;
    flat.push(lower, value);
  }
  for (const h of extra) flat.push(h.name, h.value);
  return flat;
}

/** End-to-end headers of an app's response as undici reports them (arrays for repeated names). */
export function endToEndResponseHeaders(headers: Record<string, string | string[] | undefined>): Header[] {
  const connection = headers.connection;
  const listed = connection ? addConnectionTokens(undefined, [connection].flat().join(',')) : undefined;
  const out: Header[] = [];
  // for…in, not Object.entries: this runs for every answer, and undici's header objects are plain.
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed?.has(name) || MESH_CONTROL.has(name)) continue;
    if (typeof value === 'string') out.push({ name, value });
    else for (const v of value) out.push({ name, value: v });
  }
  return out;
}

/**
 * The same from the raw head undici parsed ([name, value, …] as Buffers, in wire order): names
 * lower-cased, values read as latin1, as undici's own header objects have them.
 */
export function endToEndRawResponseHeaders(raw: readonly Buffer[]): Header[] {
  const out: Header[] = [];
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = util.headerNameToString(raw[i]!); // well-known names come back as shared strings: no allocation
    const value = raw[i + 1]!.toString('latin1');
    if (name === 'connection') listed = addConnectionTokens(listed, value);
    if (HOP_BY_HOP.has(name) || MESH_CONTROL.has(name)) continue;
    out.push({ name, value });
  }
  return listed ? out.filter((h) => !listed.has(h.name)) : out;
}

/** Names listed in a `Connection` value are hop-by-hop for this message too: added to `listed` (made on first use). */
function addConnectionTokens(listed: Set<string> | undefined, value: string): Set<string> {
  listed ??= new Set();
  for (const token of value.split(',')) listed.add(token.trim().toLowerCase());
  return listed;
}

/** Header list → flat [name, value, name, value…], the form Node's writeHead and undici accept. */
export function toFlat(headers: readonly Header[] | undefined, extra?: readonly Header[]): string[] {
  const flat: string[] = [];
  for (const h of headers ?? []) flat.push(h.name, h.value);
  for (const h of extra ?? []) flat.push(h.name, h.value);
  return flat;
}

export function headerValue(headers: readonly Header[] | undefined, name: string): string | undefined {
  return headers?.find((h) => h.name === name)?.value;
}
