// Which service a request from the app is for, from its Host header, absolute-form target or
// CONNECT authority. payments, payments.shop, payments.shop.svc, payments.shop.svc.cluster.local
// (any port) all name service "payments" in namespace "shop"; a bare name means our own namespace.

export interface ServiceTarget {
  service: string;
  namespace: string;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Strip the port (and IPv6 brackets) from an authority. */
export function hostOf(authority: string): string {
  if (authority.startsWith('[')) return authority.slice(1, authority.indexOf(']'));
  const colon = authority.lastIndexOf(':');
  return (colon >= 0 && authority.indexOf(':') === colon ? authority.slice(0, colon) : authority);
}

/** The mesh service an authority names, or undefined when it is not a mesh name (an IP, a FQDN…). */
export function serviceTarget(authority: string, ownNamespace: string): ServiceTarget | undefined {
  if (!/^[^:]*(:[0-9]{1,5})?$/.test(authority)) return undefined; // a port, if any, is digits only
  let host = hostOf(authority).toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.endsWith('.svc.cluster.local')) host = host.slice(0, -'.svc.cluster.local'.length);
  else if (host.endsWith('.svc')) host = host.slice(0, -'.svc'.length);
  const labels = host.split('.');
  if (labels.length > 2 || !labels.every((l) => LABEL.test(l))) return undefined;
  if (labels.length === 2 && /^[0-9]+$/.test(labels[1]!)) return undefined; // looks like part of an IP
  return { service: labels[0]!, namespace: labels[1] ?? ownNamespace };
}

/** Most authorities a TargetCache remembers before it starts over. */
const MAX_REMEMBERED = 1024;

/**
 * serviceTarget() remembered per authority, for one namespace: an app calls the same few services
 * over and over, and the parse (regular expressions, lower-casing, splitting) is then done once.
 * Bounded, since what an app sends need not stay few: past MAX_REMEMBERED entries it starts over.
 */
export class TargetCache {
  readonly #namespace: string;
  readonly #known = new Map<string, Readonly<ServiceTarget> | null>();

  constructor(namespace: string) {
    this.#namespace = namespace;
  }

  get(authority: string): Readonly<ServiceTarget> | undefined {
    let target = this.#known.get(authority);
    if (target === undefined) {
      if (this.#known.size >= MAX_REMEMBERED) this.#known.clear();
      const parsed = serviceTarget(authority, this.#namespace);
      this.#known.set(authority, target = parsed ? Object.freeze(parsed) : null);
    }
    return target ?? undefined;
  }
}

/**
 * Split a request-target into authority and origin-form path. Absolute-form targets
 * ("http://payments/charge", sent when the app uses HTTP_PROXY) carry their own authority.
 */
export function splitTarget(url: string, hostHeader: string | undefined): { authority: string | undefined; path: string } {
  if (url.startsWith('/')) return { authority: hostHeader, path: url };
  // Split by hand: WHATWG URL parsing would rewrite the path (dot segments, escapes), and a proxy
  // must pass the target on as it was sent.
  const match = ABSOLUTE_FORM.exec(url);
  if (!match) return { authority: undefined, path: url };
  const authority = match[1]!.slice(match[1]!.lastIndexOf('@') + 1).toLowerCase(); // drop any userinfo
  const hash = (match[2] ?? '').indexOf('#');
  const rest = hash >= 0 ? match[2]!.slice(0, hash) : (match[2] ?? '');
  return { authority: authority || undefined, path: rest.startsWith('/') ? rest : `/${rest}` };
}

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)(.*)$/s;
