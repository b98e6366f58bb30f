// The DNS resolver against a real DNS server on loopback (test/helpers/dns-server.ts): records, TTLs,
// changes and failures as node's own DNS client sees them.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Resolver as DnsClient } from 'node:dns/promises';
import type { DnsDiscoveryConfig } from '../../../sidecar/src/config/load.ts';
import { DnsResolver } from '../../../sidecar/src/discovery/dns.ts';
import type { DiscoveryLogger } from '../../../sidecar/src/discovery/table.ts';
import { TestDnsServer } from '../../helpers/dns-server.ts';
import { within } from '../../helpers/wait.ts';

const NAME = 'payments.default.svc.cluster.local';

/** A logger that lets a test wait for a line with a given code. */
function recordingLogger() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  let waiters: { code: string; count: number; resolve: () => void }[] = [];
  const count = (code: string) => lines.filter((l) => l.obj.code === code).length;
  const push = (level: string) => (obj: object, msg: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
    const done = waiters.filter((w) => count(w.code) >= w.count);
    waiters = waiters.filter((w) => !done.includes(w));
    for (const w of done) w.resolve();
  };
  const logger: DiscoveryLogger = { debug: push('debug'), info: push('info'), warn: push('warn'), error: push('error') };
  return {
    logger, lines, count,
    until: (code: string, n: number) => count(code) >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ code, count: n, resolve })),
  };
}

function nextChange(resolver: DnsResolver): Promise<void> {
  return new Promise((resolve) => {
    let fired = false;
    resolver.onChange(() => { if (!fired) { fired = true; resolve(); } });
  });
}

const addresses = (resolver: DnsResolver, service = 'payments', namespace = 'default') => resolver.endpoints(service, namespace)?.map((e) => e.address);

describe('DnsResolver', () => {
  let server: TestDnsServer;
  const resolvers: DnsResolver[] = [];
  before(async () => { server = await TestDnsServer.start(); });
  after(async () => {
    for (const r of resolvers) r.close();
    await server.close();
  });

  function make(overrides: Partial<DnsDiscoveryConfig> & { logger?: DiscoveryLogger } = {}): DnsResolver {
    const resolver = new DnsResolver({
      services: [], nameTemplate: '{service}.{namespace}.svc.{clusterDomain}', clusterDomain: 'cluster.local',
      inboundPort: 15002, servers: [server.address], recordTypes: ['A'], minIntervalMs: 50, maxIntervalMs: 30_000, timeoutMs: 500,
      ownNamespace: 'default', ...overrides,
    });
    resolvers.push(resolver);
    return resolver;
  }

  test('resolves the listed services before ready(), with the inbound port and no labels', async () => {
    server.setA(NAME, [{ address: '127.0.0.2', ttl: 30 }, { address: '127.0.0.3', ttl: 30 }]);
    server.setA('ledger.finance.svc.cluster.local', [{ address: '127.0.0.4', ttl: 30 }]);
    const resolver = make({ services: ['payments', 'ledger.finance'], inboundPort: 25002 });
    await within(resolver.ready(), 5000, 'ready() after the listed services resolved');
    assert.deepEqual(addresses(resolver), ['127.0.0.2:25002', '127.0.0.3:25002']);
    assert.deepEqual(addresses(resolver, 'ledger', 'finance'), ['127.0.0.4:25002']);
    assert.deepEqual(resolver.endpoints('payments', 'default')![0]!.labels, {});
    assert.deepEqual([...resolver.allAddresses()].sort(), ['127.0.0.2:25002', '127.0.0.3:25002', '127.0.0.4:25002']);
    assert.deepEqual(resolver.servicesOf('127.0.0.4:25002'), ['ledger.finance']);
  });

  // The wait for the TTL on node:test's mock timers (exact, no second of real time); the lookups stay
  // real. Until the timers are real again, awaits are bounded by the test's timeout (within()'s own
  // timer is mocked too).
  test('re-resolves when the TTL has passed, and a changed record set is applied (onChange)', { timeout: 10_000 }, async (t) => {
    const name = 'ttl.default.svc.cluster.local';
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const lookups = t.mock.method(DnsClient.prototype, 'resolve4');
    const lookupsOf = () => lookups.mock.calls.filter((c) => c.arguments[0] === name).length;
    server.setA(name, [{ address: '127.0.0.5', ttl: 1 }]);
    const resolver = make({ services: ['ttl'] });
    await resolver.ready();
    assert.deepEqual(addresses(resolver, 'ttl'), ['127.0.0.5:15002']);
    assert.equal(lookupsOf(), 1);
    server.setA(name, [{ address: '127.0.0.5', ttl: 1 }, { address: '127.0.0.6', ttl: 1 }]);
    t.mock.timers.tick(999);
    assert.equal(lookupsOf(), 1, 'not re-resolved before the 1 s TTL passed');
    const changed = nextChange(resolver);
    t.mock.timers.tick(1);
    assert.equal(lookupsOf(), 2, 're-resolved when the 1 s TTL passed');
    t.mock.timers.reset();
    await within(changed, 5000, 'onChange after the record set changed');
    assert.deepEqual(addresses(resolver, 'ttl'), ['127.0.0.5:15002', '127.0.0.6:15002'], 'the changed set applied');
  });

  test('the TTL is kept within [minInterval, maxInterval]', async () => {
    const name = 'capped.default.svc.cluster.local';
    server.setA(name, [{ address: '127.0.0.7', ttl: 3600 }]);
    const resolver = make({ services: ['capped'], minIntervalMs: 50, maxIntervalMs: 200 });
    await within(resolver.ready(), 5000, 'ready');
    const first = server.queries(name);
    await within(server.untilQueries(name, first + 2), 5000, 'a TTL of an hour is re-resolved after maxInterval');
  });

  test('a failing server keeps the last known set (and logs); the set is updated once it answers again', async () => {
    const name = 'flaky.default.svc.cluster.local';
    server.setA(name, [{ address: '127.0.0.8', ttl: 1 }]);
    const log = recordingLogger();
    const resolver = make({ services: ['flaky'], minIntervalMs: 50, maxIntervalMs: 200, logger: log.logger });
    await within(resolver.ready(), 5000, 'ready');
    let changes = 0;
    resolver.onChange(() => { changes++; });
    server.failure = 'servfail';
    try {
      await within(log.until('DNS_LOOKUP_FAILED', 2), 10_000, 'two failed lookups logged');
      assert.deepEqual(addresses(resolver, 'flaky'), ['127.0.0.8:15002'], 'the last known set stays');
      assert.equal(changes, 0, 'no change while failing');
      const failure = log.lines.find((l) => l.obj.code === 'DNS_LOOKUP_FAILED')!;
      assert.equal(failure.level, 'warn');
      assert.equal(failure.obj.service, 'flaky.default');
    } finally {
      server.failure = 'none';
    }
    server.setA(name, [{ address: '127.0.0.9', ttl: 1 }]);
    await within(nextChange(resolver), 5000, 'the new set after recovery');
    assert.deepEqual(addresses(resolver, 'flaky'), ['127.0.0.9:15002']);
  });

  test('a server that does not answer at all (timeout) also keeps the last set', async () => {
    const name = 'silent.default.svc.cluster.local';
    server.setA(name, [{ address: '127.0.0.10', ttl: 1 }]);
    const log = recordingLogger();
    const resolver = make({ services: ['silent'], minIntervalMs: 50, maxIntervalMs: 100, timeoutMs: 100, logger: log.logger });
    await within(resolver.ready(), 5000, 'ready');
    server.failure = 'silent';
    try {
      await within(log.until('DNS_LOOKUP_FAILED', 1), 10_000, 'a timed-out lookup logged');
      assert.match(String(log.lines.find((l) => l.obj.code === 'DNS_LOOKUP_FAILED')!.obj.err), /ETIMEOUT/);
      assert.deepEqual(addresses(resolver, 'silent'), ['127.0.0.10:15002']);
    } finally {
      server.failure = 'none';
    }
  });

  test('a service not listed is looked up on first use: [] (pending) first, then its endpoints', async () => {
    server.setA('orders.shop.svc.cluster.local', [{ address: '127.0.0.11', ttl: 30 }]);
    const resolver = make();
    await within(resolver.ready(), 1000, 'nothing listed: ready at once');
    assert.deepEqual(resolver.endpoints('orders', 'shop'), [], 'pending: known, no endpoints yet (NO_HEALTHY_ENDPOINT, not UNKNOWN_SERVICE)');
    const changed = nextChange(resolver);
    await within(resolver.lookup('orders', 'shop'), 5000, 'the lookup answered');
    await within(changed, 1000, 'onChange when it arrived');
    assert.deepEqual(addresses(resolver, 'orders', 'shop'), ['127.0.0.11:15002']);
  });

  test('a name that does not exist is unknown only after the lookup said so (NXDOMAIN)', async () => {
    const resolver = make();
    assert.deepEqual(resolver.endpoints('nobody', 'default'), [], 'not unknown before the lookup answered');
    await within(resolver.lookup('nobody', 'default'), 5000, 'the lookup answered');
    assert.equal(resolver.endpoints('nobody', 'default'), undefined, 'UNKNOWN_SERVICE now');
    assert.ok(server.queries('nobody.default.svc.cluster.local') >= 1);
  });

  test('a service whose records go away becomes unknown; ready() is not held by a missing name', async () => {
    const name = 'leaving.default.svc.cluster.local';
    server.setA(name, [{ address: '127.0.0.12', ttl: 1 }]);
    const resolver = make({ services: ['leaving', 'never'], minIntervalMs: 50, maxIntervalMs: 1000 });
    await within(resolver.ready(), 5000, 'ready even though "never" has no records');
    assert.equal(resolver.endpoints('never', 'default'), undefined);
    server.setA(name, []);
    await within(nextChange(resolver), 5000, 'onChange when the name went');
    assert.equal(resolver.endpoints('leaving', 'default'), undefined);
  });

  test('AAAA records, a name template and a cluster domain', async () => {
    server.setA('search.default.example.test', [{ address: '127.0.0.13', ttl: 30 }]);
    server.setAAAA('search.default.example.test', [{ address: '::1', ttl: 30 }]);
    const resolver = make({ services: ['search'], recordTypes: ['A', 'AAAA'], nameTemplate: '{service}.{namespace}.{clusterDomain}', clusterDomain: 'example.test' });
    assert.equal(resolver.nameOf('search', 'default'), 'search.default.example.test');
    await within(resolver.ready(), 5000, 'ready');
    assert.deepEqual(addresses(resolver, 'search'), ['127.0.0.13:15002', '[::1]:15002']);
  });
});
