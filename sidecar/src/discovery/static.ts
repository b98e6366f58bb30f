import type { StaticEndpointConfig } from '../config/load.ts';
import type { Endpoint } from './resolver.ts';
import { TableResolver } from './table.ts';

/**
 * Endpoints listed in the sidecar config (`discovery.static`). Keys are `service` (the sidecar's own
 * namespace) or `service.namespace`. `update` swaps the whole table at once when the file changes.
 */
export class StaticResolver extends TableResolver {
  readonly #namespace: string;

  constructor(entries: Readonly<Record<string, readonly StaticEndpointConfig[]>>, ownNamespace: string) {
    super();
    this.#namespace = ownNamespace;
    this.table.replace(this.#build(entries));
  }

  /** The config file changed: swap the whole list (listeners hear of it only if something changed). */
  update(entries: Readonly<Record<string, readonly StaticEndpointConfig[]>>): void {
    this.table.replace(this.#build(entries));
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.table.clearListeners();
  }

  #build(entries: Readonly<Record<string, readonly StaticEndpointConfig[]>>): Map<string, readonly Endpoint[]> {
    const table = new Map<string, readonly Endpoint[]>();
    for (const [key, list] of Object.entries(entries)) {
      const qualified = key.includes('.') ? key : `${key}.${this.#namespace}`;
      table.set(qualified, list.map((e) => ({ address: e.address, labels: e.labels, weight: e.weight })));
    }
    return table;
  }
}
