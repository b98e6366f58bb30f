// Header handling shared by both directions: which headers are end-to-end, and conversions between
// Node's raw header lists, undici's header objects and MCP Header lists.
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

/** Names listed in `Connection` are hop-by-hop for this message too. */
function connectionListed(rawHeaders: readonly string[]): Set<string> {
  const listed = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'connection') continue;
    for (const token of rawHeaders[i + 1]!.split(',')) listed.add(token.trim().toLowerCase());
  }
  return listed;
}

/**
 * The end-to-end headers of a request from the app, in order, names lower-cased; `host` is left
 * out (it travels as the authority) and so are mesh control headers.
 */
export function endToEndRequestHeaders(rawHeaders: readonly string[]): Header[] {
  const listed = connectionListed(rawHeaders);
  const out: Header[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || listed.has(name) || MESH_CONTROL.has(name) || name === 'host') continue;
    out.push({ name, value: rawHeaders[i + 1]! });
  }
  return out;
}

/**
 * A peer's request headers as the flat list undici takes, plus `extra` (host, source). Filtered again
 * in one pass, names compared lower-cased: whatever a peer sends, the app gets no hop-by-hop header,
 * no second Host and no mesh control header but the ones this sidecar sets.
 */
export function peerHeadersForApp(headers: readonly Header[] | undefined, extra: readonly Header[]): string[] {
  const flat: string[] = [];
  for (const { name, value } of headers ?? []) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || MESH_CONTROL.has(lower) || lower === 'host') continue;
    flat.push(lower, value);
  }
  for (const h of extra) flat.push(h.name, h.value);
  return flat;
}

/** End-to-end headers of an app's response as undici reports them (arrays for repeated names). */
export function endToEndResponseHeaders(headers: Record<string, string | string[] | undefined>): Header[] {
  const listed = new Set<string>();
  const connection = headers.connection;
  if (connection) for (const token of [connection].flat().join(',').split(',')) listed.add(token.trim().toLowerCase());
  const out: Header[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name) || MESH_CONTROL.has(name)) continue;
    if (Array.isArray(value)) for (const v of value) out.push({ name, value: v });
    else out.push({ name, value });
  }
  return out;
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
