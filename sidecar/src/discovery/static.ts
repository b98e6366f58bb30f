import type { StaticEndpointConfig } from '../config/load.ts';
import type { Endpoint, Resolver } from './resolver.ts';

/**
 * Endpoints listed in the sidecar config (`discovery.static`). Keys are `service` (the sidecar's own
 * namespace) or `service.namespace`. `update` swaps the whole table at once when the file changes.
 */
export class StaticResolver implements Resolver {
  readonly #namespace: string;
  #table = new Map<string, readonly Endpoint[]>();
  readonly #listeners: (() => void)[] = [];

  constructor(entries: Readonly<Record<string, readonly StaticEndpointConfig[]>>, ownNamespace: string) {
    this.#namespace = ownNamespace;
    this.#table = this.#build(entries);
  }

  endpoints(service: string, namespace: string): readonly Endpoint[] | undefined {
    return this.#table.get(`${service}.${namespace}`);
  }

  allAddresses(): Set<string> {
    const out = new Set<string>();
    for (const list of this.#table.values()) for (const e of list) out.add(e.address);
    return out;
  }

  servicesOf(address: string): string[] {
    const out: string[] = [];
    for (const [service, list] of this.#table) if (list.some((e) => e.address === address)) out.push(service);
    return out;
  }

  update(entries: Readonly<Record<string, readonly StaticEndpointConfig[]>>): void {
    this.#table = this.#build(entries);
    for (const listener of this.#listeners) listener();
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.#listeners.length = 0;
  }

  #build(entries: Readonly<Record<string, readonly StaticEndpointConfig[]>>): Map<string, readonly Endpoint[]> {
    const table = new Map<string, readonly Endpoint[]>();
    for (const [key, list] of Object.entries(entries)) {
      const qualified = key.includes('.') ? key : `${key}.${this.#namespace}`;
      table.set(qualified, Object.freeze(list.map((e) => Object.freeze({ address: e.address, labels: e.labels, weight: e.weight }))));
    }
    return table;
  }
}
