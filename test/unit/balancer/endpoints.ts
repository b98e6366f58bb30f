import type { Endpoint } from '../../../sidecar/src/discovery/resolver.ts';

/** Endpoints named by address, weight 1 and no labels unless given. */
export function endpoint(address: string, weight = 1, labels: Record<string, string> = {}): Endpoint {
  return { address, weight, labels };
}

export function endpoints(...addresses: string[]): Endpoint[] {
  return addresses.map((a) => endpoint(a));
}
