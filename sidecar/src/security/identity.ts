// SPIFFE identities of sidecars. A sidecar's certificate carries exactly one URI SAN (an X.509-SVID
// may carry only one): spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. The mesh names a
// caller "<service>.<namespace>" (mcp-mesh-source, access rules); with mTLS that name is taken from the
// verified certificate, the service account standing for the service (one ServiceAccount per service,
// named like it; docs/security.md). `/ns/<ns>/svc/<service>` is accepted too, for CAs that issue so.

export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  /** The service account (or service) name. */
  name: string;
  uri: string;
}

const SPIFFE = /^spiffe:\/\/([a-z0-9._-]+)\/ns\/([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)\/(sa|svc)\/([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?)$/;

export function parseSpiffeId(uri: string): SpiffeId | undefined {
  const match = SPIFFE.exec(uri);
  if (!match) return undefined;
  return { trustDomain: match[1]!, namespace: match[2]!, name: match[5]!, uri };
}

export function spiffeUri(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** The mesh's name of a peer: "<service>.<namespace>". */
export function meshSource(id: SpiffeId): string {
  return `${id.name}.${id.namespace}`;
}

/** URI entries of Node's `subjectaltname` string ("URI:spiffe://…, DNS:localhost, IP Address:127.0.0.1"). */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName.split(/,\s*/).filter((s) => s.startsWith('URI:')).map((s) => s.slice(4).replace(/^"|"$/g, ''));
}

/**
 * The identity of a certificate in `trustDomain`, or an explanation of why it has none: exactly one
 * spiffe:// URI SAN, well-formed, in the trust domain.
 */
export function identityOf(subjectAltName: string | undefined, trustDomain: string): SpiffeId | string {
  const spiffe = uriSans(subjectAltName).filter((u) => u.startsWith('spiffe://'));
  if (spiffe.length === 0) return 'the certificate has no spiffe:// URI SAN';
  if (spiffe.length > 1) return 'the certificate has more than one spiffe:// URI SAN';
  const id = parseSpiffeId(spiffe[0]!);
  if (!id) return `malformed SPIFFE ID ${spiffe[0]} (want spiffe://<trust-domain>/ns/<namespace>/sa/<name>)`;
  if (id.trustDomain !== trustDomain) return `SPIFFE ID ${id.uri} is not in trust domain ${trustDomain}`;
  return id;
}
