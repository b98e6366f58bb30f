// The affinity key of a request, for the consistent-hash balancer (PickOptions.hashKey): taken from
// the first source of the policy's `loadBalancer.consistentHash.hashOn` that gives a non-empty value.
//
//   { header: name }   the header's value; several headers of that name are joined with ", ", as
//                      RFC 9110 §5.3 combines them, so the key does not depend on how they were split
//   { query: name }    the query parameter's value, decoded as a form (the first when repeated)
//   { cookie: name }   the cookie's value, without the double quotes a cookie value may carry
//   { source: true }   the calling service / pod identity
//
// The key is the value alone, with no mark of its source: equal values lead to the same endpoint
// whichever source gave them (a user id sent as a header by one client and as a cookie by another).
import type { Header } from '../mcp/codec.ts';
import type { HashSource } from '../policy/types.ts';

export interface HashKeyRequest {
  /** Request headers, names lower-case (as the pipeline holds them). */
  headers: readonly Header[];
  /** The request target: path and query string. */
  path: string;
  /** The calling service / pod identity, when known. */
  source?: string | undefined;
}

/** The request's key: the value of the first source that has one; undefined when none has. */
export function hashKey(hashOn: readonly HashSource[], request: HashKeyRequest): string | undefined {
  for (const from of hashOn) {
    let value: string | undefined;
    if ('header' in from) value = headerValue(request.headers, from.header);
    else if ('query' in from) value = queryParameter(request.path, from.query);
    else if ('cookie' in from) value = cookieValue(request.headers, from.cookie);
    else value = request.source;
    if (value) return value;
  }
  return undefined;
}

/** Every value of header `name` (lower-case), joined with ", "; undefined when there is none. */
export function headerValue(headers: readonly Header[], name: string): string | undefined {
  let value: string | undefined;
  for (const h of headers) if (h.name === name) value = value === undefined ? h.value : `${value}, ${h.value}`;
  return value;
}

/** The decoded value of query parameter `name` in a request target; the first when repeated. */
export function queryParameter(path: string, name: string): string | undefined {
  const query = path.indexOf('?');
  if (query < 0) return undefined;
  // URLSearchParams decodes %xx and "+" as a form would, and never throws on a malformed escape.
  return new URLSearchParams(path.slice(query + 1)).get(name) ?? undefined;
}

/** The value of cookie `name` (RFC 6265 §4.2: `a=1; b=2`, in one or several Cookie headers). */
export function cookieValue(headers: readonly Header[], name: string): string | undefined {
  for (const h of headers) {
    if (h.name !== 'cookie') continue;
    for (const pair of h.value.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
      const value = pair.slice(eq + 1).trim();
      return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
    }
  }
  return undefined;
}
