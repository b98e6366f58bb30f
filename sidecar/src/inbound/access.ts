// Access rules, enforced by the called sidecar before anything reaches its app: the policy of this
// sidecar's own service (and the route the request matches) says which calling services may call.
// The caller is the envelope's `source`, which the inbound server sets from the peer's verified
// certificate under mutual TLS (a claimed one is replaced), and which is the peer's claim otherwise.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { MeshError } from '../errors/mesh-error.ts';
import type { Envelope } from '../mcp/codec.ts';
import type { CallOrigin, InboundHandler, InboundResponse } from '../mcp/server.ts';
import type { EffectivePolicy } from '../policy/types.ts';
import { restrictsCallers } from '../policy/resolve.ts';
import { splitServiceName } from '../discovery/resolver.ts';

export interface AccessOptions {
  /** This sidecar's service and namespace (the called one). */
  service: string;
  namespace: string;
  /** The effective policy of a request to this service. */
  policy: (request: { method: string; path: string; headers: NonNullable<Envelope['headers']> }) => EffectivePolicy;
  /** Whether any policy of this service restricts access; when none does, calls pass without a policy lookup. */
  restricted: () => boolean;
  logger: Logger;
  /** A call was refused (metrics). */
  onDenied: (route: string, source: string) => void;
}

/** Does `source` ("name.namespace") match an allow entry? A bare name means the called service's namespace. */
export function sourceAllowed(source: string, allow: readonly string[], ownNamespace: string): string | undefined {
  const [name, namespace] = splitServiceName(source);
  for (const entry of allow) {
    if (entry === '*') return entry;
    if (entry.startsWith('*.') ? namespace === entry.slice(2) : entry.includes('.') ? source === entry : (name === entry && namespace === ownNamespace)) return entry;
  }
  return undefined;
}

export class AccessCheckingHandler implements InboundHandler {
  readonly #next: InboundHandler;
  readonly #options: AccessOptions;
  /** This sidecar's service as callers name it, "name.namespace". */
  readonly #target: string;

  constructor(next: InboundHandler, options: AccessOptions) {
    this.#next = next;
    this.#options = options;
    this.#target = `${options.service}.${options.namespace}`;
  }

  unary(request: Envelope, signal: AbortSignal, origin?: CallOrigin): Promise<Envelope> {
    const refused = this.#check(request);
    return refused ? Promise.reject(refused) : this.#next.unary(request, signal, origin);
  }

  stream(head: Envelope, body: Readable | Buffer | null, signal: AbortSignal): Promise<InboundResponse> {
    const refused = this.#check(head);
    return refused ? Promise.reject(refused) : this.#next.stream(head, body, signal);
  }

  pull(bodyStreamId: string, origin?: CallOrigin): AsyncIterable<Uint8Array> | undefined {
    return this.#next.pull(bodyStreamId, origin); // the answer of a call that was already let in (to this origin only)
  }

  /** The error to answer with, or undefined when the call may go on. */
  #check(request: Envelope): MeshError | undefined {
    if (!this.#options.restricted()) return undefined; // the common case: no rules
    const policy = this.#options.policy({ method: request.http?.method ?? '', path: request.http?.path ?? '/', headers: request.headers ?? [] });
    if (!restrictsCallers(policy.access)) return undefined;
    const source = request.source ?? '';
    const rule = sourceAllowed(source, policy.access.allow, this.#options.namespace);
    const target = this.#target;
    const { logger } = this.#options;
    if (rule !== undefined) {
      if (logger.isLevelEnabled('debug')) logger.debug({ source, target, route: policy.route, rule }, 'access allowed');
      return undefined;
    }
    this.#options.onDenied(policy.route, source);
    logger.debug({ source, target, route: policy.route, allow: policy.access.allow, defaultDeny: policy.access.defaultDeny }, 'access denied: no allow rule matches the caller');
    return new MeshError('ACCESS_DENIED', `${source || 'an unnamed caller'} may not call ${target} (route ${policy.route}): the access rules allow ${policy.access.allow.length > 0 ? policy.access.allow.join(', ') : 'no one'}`, { service: target });
  }
}
