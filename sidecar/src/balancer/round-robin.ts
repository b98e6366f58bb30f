import type { Endpoint } from '../discovery/resolver.ts';

/** Picks one of the usable endpoints. Implementations keep their own per-service state. */
export interface Balancer {
  pick(service: string, endpoints: readonly Endpoint[], usable: (endpoint: Endpoint) => boolean): Endpoint | undefined;
}

/** Round robin over the usable endpoints, one cursor per service. */
export class RoundRobinBalancer implements Balancer {
  readonly #cursors = new Map<string, number>();

  pick(service: string, endpoints: readonly Endpoint[], usable: (endpoint: Endpoint) => boolean): Endpoint | undefined {
    const start = this.#cursors.get(service) ?? 0;
    for (let i = 0; i < endpoints.length; i++) {
      const index = (start + i) % endpoints.length;
      const endpoint = endpoints[index]!;
      if (usable(endpoint)) {
        this.#cursors.set(service, index + 1);
        return endpoint;
      }
    }
    return undefined;
  }
}
