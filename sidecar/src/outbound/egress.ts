// Egress: calls from the app to hosts outside the mesh. With HTTP_PROXY set (as the injector does),
// they reach the sidecar like mesh calls. Refused unless the sidecar config allows the host
// (`egress.allow`: names, `*.domain` wildcards, or `*` for any); allowed ones are forwarded directly,
// under the default policy's deadline and connect-failure retries, observed like any call (metrics,
// traces, logs). Whatever the list says, loopback, link-local, unspecified and cloud metadata
// addresses are never reached: the name is resolved here, every address checked, and the connection
// made to the checked address (so a DNS answer cannot change between check and use).
import { lookup } from 'node:dns/promises';
import { isIPv4, isIPv6, connect, type Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { MeshError } from '../errors/mesh-error.ts';
import { endToEndResponseHeaders, toFlat } from '../http/headers.ts';
import type { Header } from '../mcp/codec.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import { backoffDelay, isIdempotent } from '../resilience/retry.ts';
import type { CallObserver } from '../telemetry/observer.ts';
import { hostOf } from './target.ts';

export interface EgressOptions {
  /** Host names, `*.example.com` (any subdomain), or `*` (any host). */
  allow: readonly string[];
  /** The policy that gives egress calls their deadline and retries (the built-in default). */
  policy: () => EffectivePolicy;
  observer: CallObserver;
}

/** The allow-list entry that admits `host` (it labels metrics: a bounded set), or undefined. */
export function allowedBy(host: string, allow: readonly string[]): string | undefined {
  const name = host.toLowerCase().replace(/\.$/, '');
  for (const entry of allow) {
    if (entry === '*') return entry;
    if (entry.startsWith('*.') ? name.endsWith(entry.slice(1)) : name === entry.toLowerCase()) return entry;
  }
  return undefined;
}

/** Addresses egress never reaches, whatever the allow list says. */
export function isForbiddenAddress(address: string): boolean {
  if (isIPv4(address)) {
    const [a = 0, b = 0] = address.split('.').map(Number);
    return a === 127 || a === 0 || (a === 169 && b === 254) || address === '255.255.255.255';
  }
  if (isIPv6(address)) {
    const lower = address.toLowerCase();
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
    if (mapped) return isForbiddenAddress(mapped[1]!);
    return lower === '::1' || lower === '::' || /^fe[89ab]/.test(lower) || lower === 'fd00:ec2::254';
  }
  return true;
}

/** Resolve `host` and pick an address egress may reach; refuse if any address is forbidden. */
export async function egressAddress(host: string): Promise<string> {
  const addresses = isIPv4(host) || isIPv6(host) ? [host] : (await lookup(host, { all: true }).catch((err: NodeJS.ErrnoException) => {
    throw new MeshError('EGRESS_NOT_ALLOWED', `cannot resolve external host "${host}": ${err.code ?? err.message}`);
  })).map((a) => a.address);
  const forbidden = addresses.find(isForbiddenAddress);
  if (forbidden !== undefined) {
    throw new MeshError('EGRESS_NOT_ALLOWED', `"${host}" resolves to ${forbidden}, a loopback, link-local or metadata address, which egress never reaches`);
  }
  return addresses[0]!;
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
  const observed = options.observer.outbound({ service: `egress:${call.entry}`, method: req.method!, path: call.path, headers: [], kind: 'call' });
  observed.route('egress');
  const deadline = policy.timeouts.overallMs > 0 ? AbortSignal.timeout(policy.timeouts.overallMs) : undefined;
  const gone = new AbortController();
  res.once('close', () => { if (!res.writableFinished) gone.abort(); });
  const signal = deadline ? AbortSignal.any([deadline, gone.signal]) : gone.signal;
  const headers = toFlat(call.headers, [{ name: 'host', value: call.authority }]);
  // A body streams once: only bodiless, idempotent requests may be tried again after a connect failure.
  const hasBody = req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0' || req.headers['transfer-encoding'] !== undefined;
  const attempts = isIdempotent(req.method!) && !hasBody ? policy.retries.attempts : 1;
  let tries = 0;
  try {
    const address = await egressAddress(host);
    for (;;) {
      tries++;
      const attempt = observed.attempt(tries, `${address}:${port}`, 'closed');
      try {
        const target = isIPv6(address) ? `[${address}]` : address;
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

function egressFailure(err: unknown, host: string, signal: AbortSignal, deadline: AbortSignal | undefined): MeshError {
  if (err instanceof MeshError) return err;
  if (deadline?.aborted) return new MeshError('DEADLINE_EXCEEDED', `no answer from external host ${host} within the deadline`, { service: host });
  if (signal.aborted) return new MeshError('CLIENT_CLOSED', 'the calling app went away', { service: host });
  return new MeshError('APP_UNAVAILABLE', `external host ${host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { service: host });
}

/** CONNECT to an allowed external host: a TCP tunnel to the checked address (the bytes inside are the app's, e.g. TLS). */
export async function tunnelEgress(socket: Socket, head: Buffer, authority: string): Promise<void> {
  const host = hostOf(authority);
  const port = portPart(authority) ?? 443;
  const address = await egressAddress(host);
  const upstream = connect({ host: address, port });
  upstream.on('error', () => socket.destroy());
  socket.on('error', () => upstream.destroy());
  await new Promise<void>((resolve, reject) => { upstream.once('connect', resolve); upstream.once('error', reject); });
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) upstream.write(head);
  socket.pipe(upstream);
  upstream.pipe(socket);
}

function portPart(authority: string): number | undefined {
  const match = /:(\d{1,5})$/.exec(authority.startsWith('[') ? authority.slice(authority.indexOf(']') + 1) : authority);
  return match ? Number(match[1]) : undefined;
}
