/** One replica of a service: the address of its sidecar's inbound listener. */
export interface Endpoint {
  address: string;
  labels: Readonly<Record<string, string>>;
  weight: number;
  /**
   * Identities ("name.namespace") this endpoint's sidecar may present besides the service's own, as
   * discovery knows them (Kubernetes: the pod's service account); secure naming allows them.
   */
  identities?: readonly string[];
}

/** Where a service's endpoints come from (static config, DNS, Kubernetes). */
export interface Resolver {
  /** The service's endpoints, or undefined when the service is unknown. */
  endpoints(service: string, namespace: string): readonly Endpoint[] | undefined;
  /** Every endpoint address known now (the link pool keeps links to exactly these). */
  allAddresses(): Set<string>;
  /** The services ("name.namespace") that list this endpoint address. */
  servicesOf(address: string): string[];
  /** Called after the set of endpoints changed. */
  onChange(listener: () => void): void;
  /**
   * Resolves once the first full picture is in (static: at once; DNS: the listed services were looked
   * up once; Kubernetes: the first list of EndpointSlices (and pods) arrived). Never rejects: a source
   * that cannot be reached keeps it pending, and the sidecar not ready.
   */
  ready(): Promise<void>;
  close(): void;
}

/**
 * "name.namespace" → [name, namespace]; a bare name gets `ownNamespace`. Split at the last dot: a
 * namespace (a DNS label) never has one.
 */
export function splitServiceName(key: string, ownNamespace = ''): [name: string, namespace: string] {
  const dot = key.lastIndexOf('.');
  return dot === -1 ? [key, ownNamespace] : [key.slice(0, dot), key.slice(dot + 1)];
}
