import type { LinkOptions } from './link.ts';
import { PeerLink } from './link.ts';

/** One PeerLink per peer address, kept in step with discovery: links open early, close when gone. */
export class LinkPool {
  readonly #links = new Map<string, PeerLink>();
  readonly #options: LinkOptions;

  constructor(options: LinkOptions) {
    this.#options = options;
  }

  /**
   * The link to an address discovery lists, or undefined. Calls never create links: one holding an
   * old endpoint list (a retry after a rolling deploy) must not bring back a link to a pod that left.
   */
  find(address: string): PeerLink | undefined {
    return this.#links.get(address);
  }

  #open(address: string): PeerLink {
    let link = this.#links.get(address);
    if (!link) {
      link = new PeerLink(address, this.#options);
      link.on('batch', (size: number) => this.onBatch?.(address, size));
      link.on('state', (state: string) => { if (state === 'ready') this.onReady?.(address); });
      this.#links.set(address, link);
    }
    return link;
  }

  /** Hook for metrics: called with each batch sent. */
  onBatch: ((address: string, size: number) => void) | undefined;

  /** Called each time a link to `address` becomes ready (first connect and every reconnect). */
  onReady: ((address: string) => void) | undefined;

  /** Open links to new addresses, close links to addresses discovery no longer lists. */
  sync(addresses: Set<string>): void {
    for (const address of addresses) this.#open(address);
    for (const [address, link] of this.#links) {
      if (!addresses.has(address)) {
        link.close();
        this.#links.delete(address);
      }
    }
  }

  all(): IterableIterator<PeerLink> {
    return this.#links.values();
  }

  close(): void {
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
  }
}
