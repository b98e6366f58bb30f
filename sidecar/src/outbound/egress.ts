// Egress: calls from the app to hosts outside the mesh. With HTTP_PROXY set (as the injector does),
// they reach the sidecar like mesh calls. Refused unless the sidecar config allows the host
// (`egress.allow`: names, `*.domain` wildcards, `*` for any, or addresses and CIDR ranges); allowed
// ones are forwarded directly, under the default policy's deadline and connect-failure retries,
// observed like any call (metrics, traces, logs).
//
// The decision is made on the address dialled, not on the text the app sent: a literal is parsed
// whatever its spelling, a name is resolved once, every address it resolves to is classed
// (egress-address.ts), and the connection goes to the checked address (no second resolution, so a
// DNS answer cannot change between check and use). Loopback, unspecified, link-local, multicast,
// broadcast, cloud metadata and the pod's own addresses are never dialled; private and other
// special-purpose addresses only when an entry names them: an exact host name entry naming the host,
// or an address / CIDR entry holding the address (`*` and `*.domain` alone never open them).
import { lookup } from 'node:dns/promises';
import { isIPv6, connect, type Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { MeshError } from '../errors/mesh-error.ts';
import { endToEndResponseHeaders, toFlat } from '../http/headers.ts';
import type { Header } from '../mcp/codec.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import { backoffDelay, isIdempotent } from '../resilience/retry.ts';
import type { CallObserver, EgressTarget, OutboundObservation } from '../telemetry/observer.ts';
import {
  CLASS_REASONS, classifyAddress, inRange, isForbidden, literalAddress, ownAddresses, parseRange, type AddressClass, type AddressRange,
} from './egress-address.ts';
import { hostOf } from './target.ts';

/** A name's addresses, as the system resolver gives them (dns.lookup with all: true). */
export type EgressResolver = (name: string) => Promise<string[]>;

export interface EgressOptions {
  /** Host names, `*.example.com` (any subdomain), `*` (any host), addresses or CIDR ranges. */
  allow: readonly string[];
  /** The policy that gives egress calls their deadline and retries (the built-in default). */
  policy: () => EffectivePolicy;
  observer: CallObserver;
  /** Resolves names (default: the system resolver); tests map names to chosen addresses. */
  resolve?: EgressResolver;
  /** This pod's own addresses (default: read from the network interfaces at each call). */
  ownAddresses?: () => ReadonlySet<string>;
}

const systemResolver: EgressResolver = async (name) => (await lookup(name, { all: true, verbatim: true })).map((a) => a.address);

/** One egress.allow entry, parsed. */
type Rule =
  | { entry: string; kind: 'any' }
  | { entry: string; kind: 'suffix'; suffix: string }
  | { entry: string; kind: 'name'; name: string }
  | { entry: string; kind: 'range'; range: AddressRange };

/** Rules per allow list, parsed once (the config is frozen: the same array on every call). */
const parsedLists = new WeakMap<readonly string[], readonly Rule[]>();

function rulesOf(allow: readonly string[]): readonly Rule[] {
  let rules = parsedLists.get(allow);
  if (rules === undefined) {
    rules = allow.map((entry): Rule => {
      if (entry === '*') return { entry, kind: 'any' };
      const range = parseRange(entry);
      if (range) return { entry, kind: 'range', range };
      return entry.startsWith('*.') ? { entry, kind: 'suffix', suffix: entry.slice(1).toLowerCase() } : { entry, kind: 'name', name: plainName(entry) };
    });
    parsedLists.set(allow, rules);
  }
  return rules;
}

/** A host name compared without case and without its trailing dot. */
function plainName(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

/**
 * The allow-list entry that admits `host` (it labels metrics: a bounded set), or undefined. An IP
 * literal, in any spelling, is admitted by `*` or by an address / CIDR entry holding it; a name by
 * `*`, a `*.domain` entry or its exact name.
 */
export function allowedBy(host: string, allow: readonly string[]): string | undefined {
  const address = literalAddress(host);
  const name = plainName(host);
  const admits = (rule: Rule): boolean => {
    switch (rule.kind) {
      case 'any': return true;
      case 'range': return address !== undefined && inRange(address, rule.range);
      case 'suffix': return address === undefined && name.endsWith(rule.suffix);
      case 'name': return address === undefined && name === rule.name;
    }
  };
  return rulesOf(allow).find(admits)?.entry;
}

/** Whether the allow list names `address` for `name`: its exact name, or an address / CIDR entry holding it. */
function names(rules: readonly Rule[], name: string, address: string): boolean {
  return rules.some((rule) => rule.kind === 'name' ? rule.name === name : rule.kind === 'range' && inRange(address, rule.range));
}

/** Where a host was dialled (or refused), for logs and refusals. */
export interface EgressDecision extends EgressTarget {
  /** The checked address to dial; unset when refused. */
  dial?: string;
  refusal?: MeshError;
}

/**
 * Resolve `host` (a literal is parsed, not resolved), class every address, and pick the one to dial;
 * refuse when any address is forbidden, or private/reserved and not named by the allow list.
 */
export async function egressAddress(host: string, options: Pick<EgressOptions, 'allow' | 'resolve' | 'ownAddresses'>): Promise<EgressDecision> {
  const name = plainName(host);
  const literal = literalAddress(host);
  const refuse = (address: string | undefined, why: string, cls?: AddressClass): EgressDecision => ({
    host, address, refused: cls ?? 'unresolved',
    refusal: new MeshError('EGRESS_NOT_ALLOWED', why, { service: host }),
  });
  // RFC 6761: these names are loopback, whatever a resolver says.
  if (literal === undefined && (name === 'localhost' || name.endsWith('.localhost'))) {
    return refuse(undefined, `"${host}" is a loopback name, which egress never reaches`, 'loopback');
  }
  let addresses: string[];
  try {
    addresses = literal !== undefined ? [literal] : await (options.resolve ?? systemResolver)(name);
  } catch (err) {
    return refuse(undefined, `cannot resolve external host "${host}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (addresses.length === 0) return refuse(undefined, `external host "${host}" resolves to no address`);
  const rules = rulesOf(options.allow);
  const own = (options.ownAddresses ?? ownAddresses)();
  let dial: string | undefined; // the first address: all of them passed
  for (const resolved of addresses) {
    const address = literalAddress(resolved);
    if (address === undefined) return refuse(resolved, `"${host}" resolves to "${resolved}", which is not an IP address`);
    const cls = classifyAddress(address, own);
    if (isForbidden(cls)) {
      return refuse(address, `"${host}" resolves to ${address}, ${CLASS_REASONS[cls]} (${cls}), which egress never reaches`, cls);
    }
    if (cls !== 'public' && !names(rules, name, address)) {
      return refuse(address, `"${host}" resolves to ${address}, ${CLASS_REASONS[cls]} (${cls}), which egress reaches only when egress.allow names it: list the host by its exact name, or the address or a CIDR range holding it (wildcards alone never open it)`, cls);
    }
    dial ??= address;
  }
  return { host, address: dial, dial };
}

export function notAllowed(host: string): MeshError {
  return new MeshError('EGRESS_NOT_ALLOWED',
    `"${host}" is not a mesh service, and calls to hosts outside the mesh are refused; to allow it, add it to egress.allow in the sidecar config (MESH_EGRESS_ALLOW), or "*" for any host`, { service: host });
}

/** Forward one HTTP request from the app to an allowed external host. */
export async function forwardEgress(req: IncomingMessage, res: ServerResponse, call: { authority: string; path: string; entry: string; headers: Header[] }, options: EgressOptions): Promise<void> {
  const host = hostOf(call.authority);
  const port = portPart(call.authority) ?? 80;
  const policy = options.policy();
  const deadline = policy.timeouts.overallMs > 0 ? AbortSignal.timeout(policy.timeouts.overallMs) : undefined;
  const { address, observed } = await dialFor(host, { entry: call.entry, method: req.method!, path: call.path }, options);
  const gone = new AbortController();
  res.once('close', () => { if (!res.writableFinished) gone.abort(); });
  const signal = deadline ? AbortSignal.any([deadline, gone.signal]) : gone.signal;
  // The Host header keeps the name the app used; the connection goes to the checked address.
  const headers = toFlat(call.headers, [{ name: 'host', value: call.authority }]);
  // A body streams once: only bodiless, idempotent requests may be tried again after a connect failure.
  const hasBody = req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0' || req.headers['transfer-encoding'] !== undefined;
  const attempts = isIdempotent(req.method!) && !hasBody ? policy.retries.attempts : 1;
  const target = isIPv6(address) ? `[${address}]` : address;
  let tries = 0;
  try {
    for (;;) {
      tries++;
      const attempt = observed.attempt(tries, `${target}:${port}`, 'closed');
      try {
        const response = await request(`http://${target}:${port}${call.path}`, {
          method: req.method as 'GET', headers, body: hasBody ? req : null, signal, headersTimeout: 0, bodyTimeout: 0,
        });
        attempt.end({ status: response.statusCode });
        observed.end({ status: response.statusCode }, tries);
        res.writeHead(response.statusCode, toFlat(endToEndResponseHeaders(response.headers)));
        await pipeline(response.body, res);
        return;
      } catch (err) {
        const failure = egressFailure(err, host, signal, deadline);
        attempt.end({ status: failure.status, code: failure.code });
        const connectFailure = ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'].includes((err as { code?: string }).code ?? '');
        if (!connectFailure || tries >= attempts || res.headersSent) throw failure;
        await sleep(backoffDelay(policy.retries, tries), undefined, { signal });
      }
    }
  } catch (err) {
    const failure = err instanceof MeshError ? err : egressFailure(err, host, signal, deadline);
    observed.end({ status: failure.status, code: failure.code, message: failure.message }, tries);
    throw failure;
  }
}

/**
 * The checked address to dial for `host`, and the call's observation, started once the address is
 * known so that its log line names it (DNS time is not in its duration). A refusal is observed, then thrown.
 */
async function dialFor(host: string, call: { entry: string; method: string; path: string }, options: EgressOptions): Promise<{ address: string; observed: OutboundObservation }> {
  const { address, refused, dial, refusal } = await egressAddress(host, options);
  const observed = options.observer.outbound({
    service: `egress:${call.entry}`, method: call.method, path: call.path, headers: [], kind: 'call',
    egress: refused === undefined ? { host, address } : { host, address, refused },
  });
  observed.route('egress');
  if (refusal) {
    observed.end({ status: refusal.status, code: refusal.code, message: refusal.message }, 0);
    throw refusal;
  }
  return { address: dial!, observed };
}

function egressFailure(err: unknown, host: string, signal: AbortSignal, deadline: AbortSignal | undefined): MeshError {
  if (err instanceof MeshError) return err;
  if (deadline?.aborted) return new MeshError('DEADLINE_EXCEEDED', `no answer from external host ${host} within the deadline`, { service: host });
  if (signal.aborted) return new MeshError('CLIENT_CLOSED', 'the calling app went away', { service: host });
  return unreachable(err, host);
}

function unreachable(err: unknown, host: string): MeshError {
  return new MeshError('APP_UNAVAILABLE', `external host ${host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { service: host });
}

/** CONNECT to an allowed external host: a TCP tunnel to the checked address (the bytes inside are the app's, e.g. TLS). */
export async function tunnelEgress(socket: Socket, head: Buffer, call: { authority: string; entry: string }, options: EgressOptions): Promise<void> {
  const host = hostOf(call.authority);
  const port = portPart(call.authority) ?? 443;
  const { address, observed } = await dialFor(host, { entry: call.entry, method: 'CONNECT', path: call.authority }, options);
  const upstream = connect({ host: address, port });
  upstream.on('error', () => socket.destroy());
  socket.on('error', () => upstream.destroy());
  try {
    await new Promise<void>((resolve, reject) => { upstream.once('connect', resolve); upstream.once('error', reject); });
  } catch (err) {
    const failure = unreachable(err, host);
    observed.end({ status: failure.status, code: failure.code, message: failure.message }, 1);
    throw failure;
  }
  observed.end({ status: 200 }, 1);
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) upstream.write(head);
  socket.pipe(upstream);
  upstream.pipe(socket);
}

function portPart(authority: string): number | undefined {
  const match = /:(\d{1,5})$/.exec(authority.startsWith('[') ? authority.slice(authority.indexOf(']') + 1) : authority);
  return match ? Number(match[1]) : undefined;
}
