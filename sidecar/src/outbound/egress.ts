// Egress: calls from the app to hosts outside the mesh. With HTTP_PROXY set (as the injector does),
// they reach the sidecar like mesh calls. Refused unless the sidecar config allows the host
// (`egress.allow`: names, `*.domain` wildcards, `*` for any, or addresses and CIDR ranges); allowed
// ones are forwarded directly, through the egress stack (call/stack.ts): the default policy's deadline
// and connect-failure retries, observed like any call (metrics, traces, logs).
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
import type { Readable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { request as undiciRequest } from 'undici';
import { MeshError } from '../errors/mesh-error.ts';
import { endToEndResponseHeaders, toFlat } from '../http/headers.ts';
import type { Header } from '../mcp/codec.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import { isIdempotent } from '../resilience/retry.ts';
import type { CallObserver, EgressTarget, OutboundObservation } from '../telemetry/observer.ts';
import type { Handler, Layer } from '../call/call.ts';
import type { CallPipeline } from '../call/pipeline.ts';
import type { RetryRule } from '../call/retry.ts';
import { observeToEnd } from '../call/route.ts';
import { egressStack } from '../call/stack.ts';
import {
  CLASS_REASONS, classifyAddress, inRange, isForbidden, literalAddress, parseRange, recentOwnAddresses, type AddressClass, type AddressRange,
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
  /** This pod's own addresses (default: the network interfaces', read at most once a second). */
  ownAddresses?: () => ReadonlySet<string>;
  /** Where the retry layer writes its debug lines (none if unset). */
  logger?: Logger;
}

const hostAddresses = recentOwnAddresses();

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
  const own = (options.ownAddresses ?? hostAddresses)();
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

/**
 * Forward one HTTP request from the app to an allowed external host, through the egress stack
 * (call/stack.ts egressStack): the address guard and telemetry here (egressRoute), the mesh's deadline
 * and retry layers, and an HTTP transport to the checked address (egressTransport). Egress reuses the
 * mesh's layers rather than a loop of its own; it has no breakers, balancer or limiter to go through
 * (one external host, one checked address), and retries connect failures only.
 */
export async function forwardEgress(req: IncomingMessage, res: ServerResponse, call: { authority: string; path: string; entry: string; headers: Header[] }, options: EgressOptions): Promise<void> {
  const host = hostOf(call.authority);
  // The call's one AbortController, made here where the app's request arrives.
  const cancel = new AbortController();
  res.once('close', () => { if (!res.writableFinished) cancel.abort(new MeshError('CLIENT_CLOSED', 'the calling app went away', { service: host })); });
  const hasBody = req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0' || req.headers['transfer-encoding'] !== undefined;
  const result = await stackOf(options)({
    target: { service: host, namespace: '' }, method: req.method!, path: call.path, authority: call.authority, headers: call.headers,
    body: hasBody ? { kind: 'stream', stream: req } : { kind: 'none' }, expectStream: false, deadlineMs: undefined, cancel,
  });
  res.writeHead(result.status, toFlat(result.headers));
  await pipeline(result.body as Readable, res).catch((err: unknown) => {
    // Headers are out: the answer is cut (the caller going away, or the host breaking off).
    throw cancel.signal.aborted ? cancel.signal.reason : unreachable(err, host);
  });
}

/** The egress stack of each options object (the config is frozen: built once). */
const stacks = new WeakMap<EgressOptions, CallPipeline>();
function stackOf(options: EgressOptions): CallPipeline {
  let stack = stacks.get(options);
  if (!stack) {
    stack = egressStack({ route: egressRoute(options), transport: egressTransport, rule: connectFailuresOnly, logger: options.logger ?? SILENT });
    stacks.set(options, stack);
  }
  return stack;
}

const SILENT = pino({ level: 'silent' });

/**
 * Egress route: the checked address for the host (refused ones are observed, then thrown), the call's
 * telemetry from then on, and its settings — the default policy, with more than one try only for
 * bodiless idempotent requests (a body streams once).
 */
function egressRoute(options: EgressOptions): Layer {
  return (next) => async (call) => {
    const { request } = call;
    const host = call.service = hostOf(request.authority);
    const entry = allowedBy(host, options.allow);
    if (entry === undefined) throw notAllowed(host);
    const { address, observed } = await dialFor(host, { entry, method: request.method, path: request.path }, options);
    call.observed = observed;
    call.dialled = `${isIPv6(address) ? `[${address}]` : address}:${portPart(request.authority) ?? 80}`;
    call.policy = egressSettings(options.policy(), isIdempotent(request.method) && request.body.kind === 'none');
    return observeToEnd(call, next);
  };
}

const singleTry = new WeakMap<EffectivePolicy, EffectivePolicy>();
function egressSettings(policy: EffectivePolicy, replayable: boolean): EffectivePolicy {
  if (replayable) return policy;
  let settings = singleTry.get(policy);
  if (!settings) singleTry.set(policy, settings = { ...policy, retries: { ...policy.retries, attempts: 1 } });
  return settings;
}

/** A try that could not connect: nothing reached the host, so another try is safe. */
class ConnectFailure extends MeshError {}
const CONNECT_FAILURES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** Egress retries connect failures only, up to the policy's tries (an external host's 5xx is its answer). */
const connectFailuresOnly: RetryRule = (call, outcome, attempt) => attempt < call.policy.retries.attempts && 'error' in outcome && outcome.error instanceof ConnectFailure
  ? { retry: true, conditions: ['connect-failure'] }
  : { retry: false, reason: 'egress retries connect failures only' };

/** Egress transport: one try, HTTP to the checked address; the Host header keeps the name the app used. */
const egressTransport: Handler = async (call) => {
  const target = call.dialled!;
  const observed = call.observed.attempt(call.attempt, target, 'closed');
  const { request } = call;
  try {
    const response = await undiciRequest(`http://${target}${request.path}`, {
      method: request.method as 'GET', headers: toFlat(request.headers, [{ name: 'host', value: request.authority }]),
      body: request.body.kind === 'stream' ? request.body.stream : null, signal: call.signal, headersTimeout: 0, bodyTimeout: 0,
    });
    observed.end({ status: response.statusCode });
    return { status: response.statusCode, headers: endToEndResponseHeaders(response.headers), body: response.body, endpoint: target };
  } catch (err) {
    const failure = call.signal.aborted ? call.signal.reason as MeshError
      : unreachable(err, call.service, CONNECT_FAILURES.has((err as { code?: string }).code ?? '') ? ConnectFailure : MeshError);
    observed.end({ status: failure.status, code: failure.code });
    throw failure;
  }
};

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

function unreachable(err: unknown, host: string, kind: typeof MeshError = MeshError): MeshError {
  return new kind('APP_UNAVAILABLE', `external host ${host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { service: host });
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
