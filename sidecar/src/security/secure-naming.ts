// Secure naming: which identities may serve a service. Under mutual TLS a link accepts any certificate
// of the trust domain; before a call for `payments.shop` is sent, the calling sidecar checks that the
// certificate of the sidecar at the other end names an identity allowed to serve payments.shop
// (mcp/link.ts). Allowed, for an endpoint `address` of service `name.namespace`:
//   - the identity of the same name in the same namespace (`/ns/<namespace>/sa/<name>`, the mesh's
//     convention of one service account per service, named like it);
//   - the identities config `tls.identities` lists for the service;
//   - the identities discovery gives the endpoint (Kubernetes: its pod's service account).
// Identities are mesh names, "name.namespace" (identity.ts meshSource). See docs/security.md.
import { splitServiceName, type Resolver } from '../discovery/resolver.ts';

export interface SecureNamingOptions {
  resolver: Pick<Resolver, 'endpoints' | 'onChange'>;
  /** Config `tls.identities`: service ("name" or "name.namespace") → more identities that may serve it. */
  identities: Readonly<Record<string, readonly string[]>>;
  /** This sidecar's namespace: the namespace of a service key without one. */
  namespace: string;
}

export class SecureNaming {
  readonly #resolver: SecureNamingOptions['resolver'];
  /** Config: "name.namespace" → identities, all qualified. */
  readonly #configured = new Map<string, readonly string[]>();
  /** service → address → allowed identities; emptied whenever discovery changes. */
  readonly #cache = new Map<string, Map<string, ReadonlySet<string>>>();

  constructor(options: SecureNamingOptions) {
    this.#resolver = options.resolver;
    for (const [key, identities] of Object.entries(options.identities)) {
      const service = qualify(key, options.namespace);
      // A bare identity is in the namespace of the service it is listed for.
      this.#configured.set(service, identities.map((identity) => qualify(identity, splitServiceName(service)[1])));
    }
    options.resolver.onChange(() => this.#cache.clear());
  }

  /** Whether the sidecar at `address` presenting `identity` may serve `service` ("name.namespace"). */
  mayServe(service: string, address: string, identity: string): boolean {
    return this.#allowedSet(service, address).has(identity);
  }

  /** The identities that may serve `service` at `address` (for messages). */
  allowed(service: string, address: string): readonly string[] {
    return [...this.#allowedSet(service, address)];
  }

  #allowedSet(service: string, address: string): ReadonlySet<string> {
    let byAddress = this.#cache.get(service);
    if (!byAddress) this.#cache.set(service, byAddress = new Map());
    let allowed = byAddress.get(address);
    if (!allowed) {
      const [name, namespace] = splitServiceName(service);
      const endpoint = this.#resolver.endpoints(name, namespace)?.find((e) => e.address === address);
      allowed = new Set([service, ...(this.#configured.get(service) ?? []), ...(endpoint?.identities ?? [])]);
      byAddress.set(address, allowed);
    }
    return allowed;
  }
}

function qualify(name: string, namespace: string): string {
  return name.includes('.') ? name : `${name}.${namespace}`;
}
