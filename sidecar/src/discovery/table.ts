// The endpoint table every resolver keeps: "service.namespace" → endpoints, swapped service by
// service (or whole), with change listeners fired only when something changed; and TableResolver,
// the part of the Resolver interface that only reads that table.
import type { LogFields } from '../telemetry/logger.ts';
import type { Endpoint, Resolver } from './resolver.ts';

/** What the resolvers log through (a pino Logger fits). */
export interface DiscoveryLogger {
  debug(obj: LogFields, msg: string): void;
  info(obj: LogFields, msg: string): void;
  warn(obj: LogFields, msg: string): void;
  error(obj: LogFields, msg: string): void;
}

export const silentLogger: DiscoveryLogger = { debug() {}, info() {}, warn() {}, error() {} };

export class EndpointTable {
  #table = new Map<string, readonly Endpoint[]>();
  readonly #listeners: (() => void)[] = [];

  get(key: string): readonly Endpoint[] | undefined {
    return this.#table.get(key);
  }

  keys(): string[] {
    return [...this.#table.keys()];
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

  /** Set one service's endpoints (undefined: the service is unknown). True if that changed anything. */
  set(key: string, endpoints: readonly Endpoint[] | undefined, notify = true): boolean {
    const before = this.#table.get(key);
    if (same(before, endpoints)) return false;
    if (endpoints === undefined) this.#table.delete(key);
    else this.#table.set(key, freeze(endpoints));
    if (notify) this.notify();
    return true;
  }

  /** Replace the whole table. True (and listeners told) if anything changed. */
  replace(next: ReadonlyMap<string, readonly Endpoint[]>): boolean {
    let changed = next.size !== this.#table.size;
    if (!changed) for (const [key, list] of next) if (!same(this.#table.get(key), list)) { changed = true; break; }
    if (!changed) return false;
    this.#table = new Map([...next].map(([key, list]) => [key, freeze(list)]));
    this.notify();
    return true;
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  clearListeners(): void {
    this.#listeners.length = 0;
  }
}

function freeze(list: readonly Endpoint[]): readonly Endpoint[] {
  return Object.freeze([...list].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
    .map((e) => Object.freeze({
      address: e.address, labels: Object.freeze({ ...e.labels }), weight: e.weight,
      ...(e.identities ? { identities: Object.freeze([...e.identities]) } : {}),
    })));
}

function same(a: readonly Endpoint[] | undefined, b: readonly Endpoint[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  const key = (e: Endpoint) => `${e.address}|${e.weight}|${JSON.stringify(Object.entries(e.labels).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))}|${e.identities?.join(',') ?? ''}`;
  const left = a.map(key).sort();
  const right = b.map(key).sort();
  return left.every((k, i) => k === right[i]);
}

/** A resolver whose answers come from its EndpointTable; subclasses fill the table. */
export abstract class TableResolver implements Resolver {
  protected readonly table = new EndpointTable();

  endpoints(service: string, namespace: string): readonly Endpoint[] | undefined {
    return this.table.get(`${service}.${namespace}`);
  }

  allAddresses(): Set<string> {
    return this.table.allAddresses();
  }

  servicesOf(address: string): string[] {
    return this.table.servicesOf(address);
  }

  onChange(listener: () => void): void {
    this.table.onChange(listener);
  }

  abstract ready(): Promise<void>;
  abstract close(): void;
}
