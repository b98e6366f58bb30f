// Resolution: layers overriding field by field, the most specific route winning (table-driven),
// the source of every value, and the load-time errors that keep the outcome independent of order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProblem } from '../../../sidecar/src/policy/load.ts';
import type { RequestHeaders } from '../../../sidecar/src/policy/resolve.ts';
import { compile, compileValid, documents, policy } from '../../helpers/policies.ts';

const route = (name: string, match: string, extra = '') => `  route:\n    name: ${name}\n    match: ${match}\n${extra}`;

describe('layers: defaults < service-wide < route, field by field', () => {
  const wide = policy('catalog', 'catalog', '  timeouts:\n    request: 3s\n  retries:\n    attempts: 2\n    retryOn: [reset, 5xx]\n');
  const search = policy('catalog-search', 'catalog', route('search', '{ path: { prefix: /search } }',
    '  timeouts:\n    request: 800ms\n  retries:\n    retryOn: [connect-failure]\n'));
  const table = compileValid([['wide.yaml', wide], ['search.yaml', search]]);
  const get = (path: string) => table.resolve('catalog', 'default', { method: 'GET', path, headers: [] });

  it('a route overrides only what it sets', () => {
    const p = get('/search/books');
    assert.equal(p.route, 'search');
    assert.equal(p.timeouts.overallMs, 800, 'from the route');
    assert.equal(p.retries.attempts, 2, 'from the service-wide policy');
    assert.equal(p.timeouts.connectMs, 1000, 'from the sidecar config');
    assert.equal(p.retries.backoffBaseMs, 25, 'built-in');
  });

  it('a list is replaced as a whole, never merged', () => {
    assert.deepEqual(get('/search').retries.retryOn, ['connect-failure']);
    assert.deepEqual(get('/other').retries.retryOn, ['reset', '5xx']);
  });

  it('a request no route matches gets the service-wide policy, named "default"', () => {
    const p = get('/other');
    assert.equal(p.route, 'default');
    assert.equal(p.timeouts.overallMs, 3000);
  });

  it('records the source of every value: file:line:col, "sidecar config" or "default"', () => {
    const dumped = table.dump().services.find((s) => s.service === 'catalog')!;
    const routeSources = dumped.routes[0]!.effective.sources;
    assert.equal(routeSources['timeouts.overallMs'], 'search.yaml:11:14');
    assert.equal(routeSources['retries.retryOn'], 'search.yaml:13:14');
    assert.equal(routeSources['retries.attempts'], 'wide.yaml:10:15');
    assert.equal(routeSources['timeouts.connectMs'], 'sidecar config');
    assert.equal(routeSources['retries.backoffBaseMs'], 'default');
    assert.equal(dumped.effective.sources['timeouts.overallMs'], 'wide.yaml:8:14');
    assert.equal(dumped.effective.sources['retries.retryOn'], 'wide.yaml:11:14');
  });

  it('precomputes: the same frozen object for every matching call', () => {
    assert.equal(get('/search/a'), get('/search/b?q=1'));
    assert.ok(Object.isFrozen(get('/search/a').retries.retryOn));
  });

  it('a service without policies gets the defaults, in any namespace', () => {
    assert.equal(table.resolve('orders', 'default', { method: 'GET', path: '/', headers: [] }), table.defaults);
    assert.equal(table.resolve('catalog', 'shop', { method: 'GET', path: '/search', headers: [] }), table.defaults);
  });
});

describe('the most specific route wins', () => {
  const files: [string, string][] = [
    ['wide.yaml', policy('catalog', 'catalog', '  timeouts: { request: 3s }\n')],
    ['routes.yaml', documents(
      policy('r-item', 'catalog', route('item', '{ path: { exact: /search/item } }')),
      policy('r-search-get', 'catalog', route('search-get', '{ path: { prefix: /search }, methods: [GET] }')),
      policy('r-search-all', 'catalog', route('search-all', '{ path: { prefix: /search } }')),
      policy('r-search-deep', 'catalog', route('search-deep', '{ path: { prefix: /search/books/ } }')),
      policy('r-tenant', 'catalog', route('tenant', '{ path: { prefix: /search }, headers: { X-Tenant: acme } }')),
      policy('r-get-head', 'catalog', route('get-head', '{ path: { prefix: /search }, methods: [GET, HEAD] }')),
      policy('r-tenant-get', 'catalog', route('tenant-get', '{ path: { prefix: /search }, methods: [GET], headers: { x-tenant: acme } }')),
      policy('r-api', 'catalog', route('api', '{ path: { prefix: /api } }')),
      policy('r-deletes', 'catalog', route('deletes', '{ methods: [DELETE] }')),
    )],
  ];
  const table = compileValid(files);
  const acme = [{ name: 'x-tenant', value: 'acme' }];
  const cases: [method: string, path: string, headers: RequestHeaders, expected: string, why: string][] = [
    ['GET', '/search/item', [], 'item', 'an exact path beats every prefix'],
    ['POST', '/search/item?page=2', acme, 'item', 'the query string is not part of the path'],
    ['GET', '/search/books/1', [], 'search-deep', 'the longer prefix wins over a methods condition'],
    ['GET', '/search/books', [], 'search-deep', 'a trailing / in a prefix makes no difference'],
    ['GET', '/search/bookshelf', [], 'search-get', 'prefixes match whole segments'],
    ['GET', '/search/x', acme, 'tenant-get', 'methods and a header beat methods alone'],
    ['GET', '/search/x', [], 'search-get', 'fewer methods listed beats more'],
    ['HEAD', '/search/x', [], 'get-head', 'only get-head lists HEAD'],
    ['GET', '/search/x', { 'x-tenant': 'acme' }, 'tenant-get', 'headers as Node parses them'],
    ['GET', '/search/x', { 'x-tenant': ['other', 'acme'] }, 'tenant-get', 'a repeated header: any of its values'],
    ['GET', '/search/x', [{ name: 'x-tenant', value: 'other' }, { name: 'x-tenant', value: 'acme' }], 'tenant-get', 'the same, as a header list'],
    ['POST', '/search/x', acme, 'tenant', 'a header condition beats no condition'],
    ['POST', '/search/x', [{ name: 'x-tenant', value: 'Acme' }], 'search-all', 'header values are compared exactly'],
    ['POST', '/search', [], 'search-all', 'the prefix itself matches'],
    ['DELETE', '/api/x', [], 'api', 'a path condition beats a methods condition'],
    ['DELETE', '/other', [], 'deletes', 'a route without a path condition'],
    ['GET', '/searches', [], 'default', 'no route: the service-wide policy'],
  ];
  for (const [method, path, headers, expected, why] of cases) {
    it(`${method} ${path} ${JSON.stringify(headers)} → ${expected}: ${why}`, () => {
      assert.equal(table.resolve('catalog', 'default', { method, path, headers }).route, expected);
    });
  }

  it('lists the routes in the dump in the order they are tried', () => {
    const names = table.dump().services[0]!.routes.map((r) => r.name);
    assert.deepEqual(names, ['item', 'search-deep', 'tenant-get', 'search-get', 'get-head', 'tenant', 'search-all', 'api', 'deletes']);
  });

  it('gives the result regardless of file order', () => {
    const reversed = compileValid([files[1]!, files[0]!]);
    for (const [method, path, headers, expected] of cases) assert.equal(reversed.resolve('catalog', 'default', { method, path, headers }).route, expected);
  });
});

describe('ties and duplicates are load-time errors naming both files', () => {
  const charge = (name: string, match: string) => policy(name, 'payments', route(name, match));

  it('two routes equal on every rule that can match one request', () => {
    const { problems } = compile([
      ['a.yaml', charge('charge-a', '{ path: { prefix: /charge }, methods: [POST, PUT] }')],
      ['b.yaml', charge('charge-b', '{ path: { prefix: /charge/ }, methods: [PUT, PATCH] }')],
    ]);
    assert.deepEqual(problems.map(formatProblem), [
      'b.yaml:9:5: spec.route.match: matches the same requests as route charge-a in a.yaml:9:12, and neither is more specific; '
        + 'make one more specific (see docs/policies.md#matching)',
    ]);
  });

  const distinct: [string, string, string][] = [
    ['methods with nothing in common', '{ path: { prefix: /charge }, methods: [POST] }', '{ path: { prefix: /charge }, methods: [GET] }'],
    ['a header with different values', '{ path: { prefix: /charge }, headers: { x-v: "1" } }', '{ path: { prefix: /charge }, headers: { x-v: "2" } }'],
    ['different paths of one length', '{ path: { exact: /charge } }', '{ path: { exact: /refund } }'],
    ['one more header', '{ path: { prefix: /charge }, headers: { x-v: "1" } }', '{ path: { prefix: /charge }, headers: { x-v: "1", x-w: "2" } }'],
  ];
  for (const [why, a, b] of distinct) {
    it(`no tie: ${why}`, () => {
      assert.deepEqual(compile([['a.yaml', charge('charge-a', a)], ['b.yaml', charge('charge-b', b)]]).problems, []);
    });
  }

  it('two service-wide policies, two routes of one name, two policies of one name', () => {
    const { problems } = compile([
      ['a.yaml', documents(policy('p1', 'payments'), policy('p-route', 'payments', route('charge', '{ path: { prefix: /c } }')))],
      ['b.yaml', documents(policy('p2', 'payments'), policy('p-route2', 'payments', route('charge', '{ path: { prefix: /d } }')), policy('p1', 'orders'))],
    ]);
    const lines = problems.map(formatProblem);
    assert.ok(lines.includes('b.yaml:6:12: spec.service: service payments (namespace default) already has a service-wide policy in a.yaml:6:12; merge them, or narrow one with spec.route'), lines.join('\n'));
    assert.ok(lines.includes('b.yaml:15:11: spec.route.name: service payments already has a route charge in a.yaml:15:11'), lines.join('\n'));
    assert.ok(lines.includes('b.yaml:21:9: metadata.name: policy p1 is already defined in a.yaml:4:9'), lines.join('\n'));
    assert.equal(lines.length, 3);
  });

  it('the same service in two namespaces is two services', () => {
    const { table, problems } = compile([
      ['a.yaml', policy('pay-default', 'payments', '  retries: { attempts: 1 }\n')],
      ['b.yaml', policy('pay-shop', 'payments', '  namespace: shop\n  retries: { attempts: 5 }\n')],
    ]);
    assert.deepEqual(problems, []);
    assert.equal(table.resolve('payments', 'default', { method: 'GET', path: '/', headers: [] }).retries.attempts, 1, 'no namespace: the sidecar\'s own');
    assert.equal(table.resolve('payments', 'shop', { method: 'GET', path: '/', headers: [] }).retries.attempts, 5);
  });
});

describe('values as the call pipeline needs them', () => {
  it('status classes expand to codes; durations become milliseconds', () => {
    const table = compileValid([['a.yaml', policy('p', 'payments',
      '  circuitBreaker: { failureStatuses: [503, 4xx], rollingWindow: 1.5s }\n  retries: { retryOn: [retriable-status-codes], statusCodes: [409, 503] }\n')]]);
    const p = table.resolve('payments', 'default', { method: 'GET', path: '/', headers: [] });
    assert.deepEqual(p.circuitBreaker.failureStatuses, [...Array.from({ length: 100 }, (_, i) => 400 + i), 503]);
    assert.equal(p.circuitBreaker.rollingWindowMs, 1500);
    assert.deepEqual(p.retries.statusCodes, [409, 503]);
  });

  it('subsets and header routes: header names lower-cased; a route may use the service-wide subsets', () => {
    const table = compileValid([['a.yaml', documents(
      policy('checkout', 'checkout', '  subsets:\n    - { name: v1, labels: { version: v1 }, weight: 90 }\n    - { name: v2, labels: { version: v2 }, weight: 10 }\n'),
      policy('checkout-pay', 'checkout', `${route('pay', '{ path: { prefix: /pay } }')}  headerRoutes:\n    - { headers: { X-Canary: "true" }, subset: v2 }\n`),
    )]]);
    const p = table.resolve('checkout', 'default', { method: 'POST', path: '/pay', headers: [] });
    assert.deepEqual(p.subsets, [{ name: 'v1', labels: { version: 'v1' }, weight: 90 }, { name: 'v2', labels: { version: 'v2' }, weight: 10 }]);
    assert.deepEqual(p.headerRoutes, [{ headers: { 'x-canary': 'true' }, subset: 'v2' }]);
  });

  it('consistent-hash key sources: header names lower-cased, others as written, in order', () => {
    const table = compileValid([['a.yaml', policy('p', 'sessions',
      '  loadBalancer:\n    policy: consistent-hash\n    consistentHash:\n      hashOn: [{ header: X-User-Id }, { cookie: Session }, { query: tenantId }, { source: true }]\n')]]);
    const p = table.resolve('sessions', 'default', { method: 'GET', path: '/', headers: [] });
    assert.equal(p.loadBalancer.policy, 'consistent-hash');
    assert.deepEqual(p.loadBalancer.consistentHash, {
      hashOn: [{ header: 'x-user-id' }, { cookie: 'Session' }, { query: 'tenantId' }, { source: true }], virtualNodes: 2048, boundedLoadFactor: 1.25,
    });
  });

  it('the dump is plain JSON', () => {
    const dump = compileValid([['a.yaml', policy('p', 'payments', route('r', '{ methods: [GET] }'))]]).dump();
    assert.deepEqual(JSON.parse(JSON.stringify(dump)), dump);
    assert.deepEqual(dump.services[0]!.routes[0]!.match, { methods: ['GET'] });
    assert.deepEqual(dump.services[0]!.serviceWide, null);
  });
});
