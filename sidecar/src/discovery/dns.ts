// discovery.mode dns: a service's endpoints are the A/AAAA records of its (headless) Service name,
// `{service}.{namespace}.svc.{clusterDomain}` by default, each with the peers' inbound port.
//
//   - Services listed in `discovery.dns.services` are resolved at start-up; ready() waits for them.
//   - Any other service is looked up on first use. The Resolver interface is synchronous, so that
//     first call cannot wait: while the lookup runs the service has no endpoints (the call gets 503
//     NO_HEALTHY_ENDPOINT, retryable); once it answers, the next call is routed. UNKNOWN_SERVICE (404)
//     only after a lookup found no such name (NXDOMAIN, or no records of any type asked).
//   - Records are re-resolved when their TTL passes (the smallest TTL of the set), kept within
//     [minInterval, maxInterval].
//   - A failed lookup (timeout, SERVFAIL, refused) keeps the last known set, is logged, and is
//     retried after minInterval, doubling up to maxInterval.
import { Resolver as DnsClient } from 'node:dns/promises';
import { formatHostPort } from '../config/address.ts';
import type { DnsDiscoveryConfig } from '../config/load.ts';
import { backoffCeiling } from '../resilience/backoff.ts';
import { splitServiceName, type Endpoint } from './resolver.ts';
import { silentLogger, TableResolver, type DiscoveryLogger } from './table.ts';

export interface DnsResolverOptions extends DnsDiscoveryConfig {
  /** The sidecar's own namespace: a bare service name means this one. */
  ownNamespace: string;
  logger?: DiscoveryLogger;
}

type Outcome =
  | { kind: 'records'; endpoints: Endpoint[]; ttlS: number }
  | { kind: 'none' }
  | { kind: 'failed'; error: string };

interface Entry {
  service: string;
  namespace: string;
  name: string;
  /** pending: never answered yet; found / absent: what the last answer said. */
  state: 'pending' | 'found' | 'absent';
  failures: number;
  timer: NodeJS.Timeout | undefined;
  inFlight: boolean;
  /** Resolves after the first answer (records or "no such name"). */
  answered: Promise<void>;
  markAnswered: () => void;
}

/** Codes of a lookup that worked and found nothing of that type. */
const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA']);

export class DnsResolver extends TableResolver {
  readonly #options: DnsResolverOptions;
  readonly #logger: DiscoveryLogger;
  readonly #client: DnsClient;
  readonly #entries = new Map<string, Entry>();
  readonly #ready: Promise<void>;
  #closed = false;

  constructor(options: DnsResolverOptions) {
    super();
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#client = new DnsClient({ timeout: options.timeoutMs, tries: 2 });
    if (options.servers.length > 0) this.#client.setServers([...options.servers]);
    const listed = options.services.map((key) => this.#entry(...splitServiceName(key, options.ownNamespace)));
    this.#ready = Promise.all(listed.map((e) => e.answered)).then(() => undefined);
  }

  /** The DNS name looked up for a service. */
  nameOf(service: string, namespace: string): string {
    return this.#options.nameTemplate
      .replaceAll('{service}', service)
      .replaceAll('{namespace}', namespace)
      .replaceAll('{clusterDomain}', this.#options.clusterDomain);
  }

  override endpoints(service: string, namespace: string): readonly Endpoint[] | undefined {
    const entry = this.#entries.get(`${service}.${namespace}`) ?? this.#entry(service, namespace);
    if (entry.state === 'pending') return [];
    return super.endpoints(service, namespace);
  }

  /** Resolves once the service's first lookup answered (for callers that can wait; tests). */
  lookup(service: string, namespace: string): Promise<void> {
    return (this.#entries.get(`${service}.${namespace}`) ?? this.#entry(service, namespace)).answered;
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) clearTimeout(entry.timer);
    this.#client.cancel();
    this.table.clearListeners();
  }

  #entry(service: string, namespace: string): Entry {
    let markAnswered!: () => void;
    const answered = new Promise<void>((resolve) => { markAnswered = resolve; });
    const entry: Entry = { service, namespace, name: this.nameOf(service, namespace), state: 'pending', failures: 0, timer: undefined, inFlight: false, answered, markAnswered };
    this.#entries.set(`${service}.${namespace}`, entry);
    if (!this.#closed) void this.#refresh(entry);
    return entry;
  }

  async #refresh(entry: Entry): Promise<void> {
    if (entry.inFlight || this.#closed) return;
    entry.inFlight = true;
    const outcome = await this.#query(entry.name);
    entry.inFlight = false;
    if (this.#closed) return;
    const key = `${entry.service}.${entry.namespace}`;
    const { minIntervalMs, maxIntervalMs } = this.#options;
    let nextMs: number;
    if (outcome.kind === 'failed') {
      entry.failures++;
      nextMs = backoffCeiling({ baseMs: minIntervalMs, maxMs: maxIntervalMs }, entry.failures);
      this.#logger.warn({ code: 'DNS_LOOKUP_FAILED', service: key, name: entry.name, err: outcome.error, retryInMs: nextMs, keeping: this.table.get(key)?.length ?? 0 },
        `DNS lookup of ${entry.name} failed (${outcome.error}); keeping the last known endpoints`);
    } else {
      entry.failures = 0;
      const endpoints = outcome.kind === 'records' ? outcome.endpoints : undefined;
      nextMs = outcome.kind === 'records' ? Math.min(maxIntervalMs, Math.max(minIntervalMs, outcome.ttlS * 1000)) : maxIntervalMs;
      const wasPending = entry.state === 'pending';
      entry.state = endpoints ? 'found' : 'absent';
      const changed = this.table.set(key, endpoints, false);
      if (changed) {
        this.#logger.info({ service: key, name: entry.name, endpoints: endpoints?.map((e) => e.address) ?? [] }, endpoints ? `DNS: ${key} has ${endpoints.length} endpoint(s)` : `DNS: no records for ${entry.name}`);
      }
      entry.markAnswered();
      // A pending service answered with nothing still changed what endpoints() says ([] → undefined).
      if (changed || (wasPending && !endpoints)) this.table.notify();
    }
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => { void this.#refresh(entry); }, nextMs);
    entry.timer.unref();
  }

  async #query(name: string): Promise<Outcome> {
    const endpoints: Endpoint[] = [];
    let ttlS = Infinity;
    for (const type of this.#options.recordTypes) {
      try {
        const records = type === 'A' ? await this.#client.resolve4(name, { ttl: true }) : await this.#client.resolve6(name, { ttl: true });
        for (const record of records) {
          endpoints.push({ address: formatHostPort({ host: record.address, port: this.#options.inboundPort }), labels: {}, weight: 1 });
          ttlS = Math.min(ttlS, record.ttl);
        }
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        if (!NOT_FOUND.has(code)) return { kind: 'failed', error: code };
      }
    }
    if (endpoints.length === 0) return { kind: 'none' };
    const unique = [...new Map(endpoints.map((e) => [e.address, e])).values()];
    return { kind: 'records', endpoints: unique, ttlS: Number.isFinite(ttlS) ? ttlS : 0 };
  }
}
