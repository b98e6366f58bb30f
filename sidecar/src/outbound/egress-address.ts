// What an address egress would dial is (loopback, metadata, private…), whatever way it was spelled.
//
// Spellings are parsed by ipaddr.js: IPv4 dotted, decimal (2130706433), octal (0177.0.0.1), hex
// (0x7f.1) and short (127.1); IPv6 in any form, zone ids included. An IPv6 address that carries an
// IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-translated, IPv4-compatible ::a.b.c.d, NAT64
// 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16) is classed by the IPv4 address too, the stricter
// class winning: a translator or the kernel may well deliver it there.
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';

type IP = ipaddr.IPv4 | ipaddr.IPv6;

/** A network and its prefix length, from an egress.allow entry. */
export type AddressRange = [IP, number];

/** Never dialled, whatever egress.allow says. */
export const FORBIDDEN_CLASSES = ['loopback', 'unspecified', 'link-local', 'multicast', 'broadcast', 'metadata', 'own'] as const;
/** Dialled only when an egress.allow entry names the host or the address (see egress.ts). */
export const NAMED_ONLY_CLASSES = ['private', 'reserved'] as const;

export type ForbiddenClass = typeof FORBIDDEN_CLASSES[number];
export type AddressClass = ForbiddenClass | typeof NAMED_ONLY_CLASSES[number] | 'public';

/** Why each class is refused, for the refusal's message. */
export const CLASS_REASONS: Record<Exclude<AddressClass, 'public'>, string> = {
  loopback: 'a loopback address',
  unspecified: 'the unspecified address (it reaches this host)',
  'link-local': 'a link-local address',
  multicast: 'a multicast address',
  broadcast: 'the broadcast address',
  metadata: 'a cloud metadata address',
  own: 'an address of this pod itself',
  private: 'a private address',
  reserved: 'a special-purpose (reserved) address',
};

/**
 * The cloud metadata and platform endpoints. Some are link-local (refused anyway), the others sit in
 * ranges a CIDR entry may open (CGNAT, ULA, 192.0.0.0/24) or look public (Azure), hence the list:
 *   169.254.169.254   instance metadata of AWS, Google Cloud, Azure, Oracle Cloud, OpenStack, DigitalOcean…
 *   fd00:ec2::254     AWS instance metadata over IPv6
 *   169.254.170.2     AWS ECS task metadata and credentials
 *   169.254.170.23, fd00:ec2::23   AWS EKS Pod Identity agent (credentials)
 *   100.100.100.200   Alibaba Cloud instance metadata
 *   168.63.129.16     Azure WireServer (host platform endpoint)
 *   192.0.0.192       Oracle Cloud's legacy metadata endpoint
 *   fe80::a9fe:a9fe   OpenStack metadata over IPv6
 */
const METADATA = new Set(['169.254.169.254', 'fd00:ec2::254', '169.254.170.2', '169.254.170.23', 'fd00:ec2::23',
  '100.100.100.200', '168.63.129.16', '192.0.0.192', 'fe80::a9fe:a9fe'].map((a) => ipaddr.parse(a).toString()));

/** ipaddr.js range names → our classes; any range not listed is special-purpose ("reserved"). */
const RANGE_CLASSES: Record<string, AddressClass> = {
  unicast: 'public',
  loopback: 'loopback',
  unspecified: 'unspecified',
  linkLocal: 'link-local',
  multicast: 'multicast',
  broadcast: 'broadcast',
  private: 'private',
  carrierGradeNat: 'private',
  uniqueLocal: 'private',
  // Embedding an IPv4 address: the outer range says nothing more (embeddedIPv4 decides).
  ipv4Mapped: 'public',
  rfc6145: 'public',
  rfc6052: 'public',
  '6to4': 'public',
};

/**
 * The address a host names when it is an IP literal, in any spelling (brackets, zone ids and one
 * trailing dot allowed), or undefined for a name. IPv4-mapped IPv6 comes back as IPv4, and a zone id
 * is dropped: the result is what to dial and to compare, in the canonical text of its family.
 */
export function literalAddress(host: string): string | undefined {
  const ip = parseLiteral(host);
  return ip === undefined ? undefined : ip.toString();
}

function parseLiteral(host: string): IP | undefined {
  let text = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (text.endsWith('.')) text = text.slice(0, -1);
  if (!ipaddr.isValid(text)) return undefined;
  const ip = ipaddr.parse(text);
  if (ip.kind() === 'ipv4') return ip;
  const v6 = ip as ipaddr.IPv6;
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : new ipaddr.IPv6(v6.parts);
}

/**
 * Parse an allow-list address entry (`10.0.0.0/8`, `fd00::/8`, or one address), or undefined if it
 * is not one. IPv4 entries are dotted decimal only: `2130706433` in a config is a name, not an address.
 */
export function parseRange(entry: string): AddressRange | undefined {
  if (ipaddr.IPv4.isValidCIDRFourPartDecimal(entry)) return ipaddr.IPv4.parseCIDR(entry);
  if (ipaddr.IPv4.isValidFourPartDecimal(entry)) return [ipaddr.IPv4.parse(entry), 32];
  if (ipaddr.IPv6.isValidCIDR(entry)) return ipaddr.IPv6.parseCIDR(entry);
  return ipaddr.IPv6.isValid(entry) ? [ipaddr.IPv6.parse(entry), 128] : undefined;
}

/** Whether `address` (canonical text, from literalAddress or a resolver) lies in `range`. */
export function inRange(address: string, [network, bits]: AddressRange): boolean {
  const ip = ipaddr.process(address);
  return ip.kind() === network.kind() && ip.match(network, bits);
}

/** This host's own addresses (the pod's, in Kubernetes), in canonical text. */
export function ownAddresses(): Set<string> {
  const own = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) own.add(ipaddr.process(a.address.replace(/%.*$/, '')).toString());
  }
  return own;
}

/** How long recentOwnAddresses() keeps a reading of the interfaces. */
const OWN_ADDRESSES_TTL_MS = 1000;

/**
 * This host's own addresses, read at most once per `ttlMs`: a reading costs about 0.1 ms (a system
 * call and a parse per address), too much for every egress call. A pod's addresses are set before its
 * containers start and kept for its life, so a reading a second old is the current one; an address
 * the host dropped meanwhile stays refused until the next reading (the safe side).
 */
export function recentOwnAddresses(options: { read?: () => ReadonlySet<string>; now?: () => number; ttlMs?: number } = {}): () => ReadonlySet<string> {
  const read = options.read ?? ownAddresses;
  const now = options.now ?? (() => performance.now());
  const ttlMs = options.ttlMs ?? OWN_ADDRESSES_TTL_MS;
  let addresses: ReadonlySet<string> | undefined;
  let readAt = 0;
  return () => {
    const at = now();
    if (addresses === undefined || at - readAt >= ttlMs) {
      addresses = read();
      readAt = at;
    }
    return addresses;
  };
}

/** The class of an address (any spelling); `own` holds this host's addresses (ownAddresses()). */
export function classifyAddress(address: string, own: ReadonlySet<string> = new Set()): AddressClass {
  const ip = parseLiteral(address);
  if (ip === undefined) throw new TypeError(`not an IP address: ${address}`);
  const outer = classOf(ip, own);
  if (isForbidden(outer) || ip.kind() === 'ipv4') return outer;
  const embedded = embeddedIPv4(ip as ipaddr.IPv6);
  if (embedded === undefined) return outer;
  const inner = classOf(embedded, own);
  if (isForbidden(inner)) return inner;
  return outer === 'public' ? inner : outer;
}

export function isForbidden(cls: AddressClass): cls is ForbiddenClass {
  return (FORBIDDEN_CLASSES as readonly string[]).includes(cls);
}

function classOf(ip: IP, own: ReadonlySet<string>): AddressClass {
  const text = ip.toString();
  if (METADATA.has(text)) return 'metadata';
  const byRange = RANGE_CLASSES[ip.range()] ?? 'reserved';
  if (isForbidden(byRange)) return byRange;
  return own.has(text) ? 'own' : byRange;
}

/** The IPv4 address an IPv6 address carries (see the header), or undefined. */
function embeddedIPv4(ip: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const p = ip.parts;
  const low32 = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  switch (ip.range()) {
    case 'rfc6145':
    case 'rfc6052':
      return low32(p[6]!, p[7]!);
    case '6to4':
      return low32(p[1]!, p[2]!);
  }
  // IPv4-compatible (::a.b.c.d, deprecated, but a stack may still route it as IPv4).
  return p.slice(0, 6).every((part) => part === 0) ? low32(p[6]!, p[7]!) : undefined;
}
