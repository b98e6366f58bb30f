import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { EndpointsView } from '../../../sidecar/src/admin/endpoints-view.ts';
import { createLiveStats } from '../../../sidecar/src/admin/live-stats.ts';
import { setLogLevel } from '../../../sidecar/src/admin/logging.ts';
import { createAdmin, type AdminState } from '../../../sidecar/src/admin/server.ts';
import type { Readiness, StatusDocument } from '../../../sidecar/src/admin/status-view.ts';
import { memoryLogger } from '../../helpers/memory-logger.ts';

const EMPTY: EndpointsView = { links: [], services: {}, breakers: [] };

function admin(overrides: Partial<AdminState> = {}, level = 'info') {
  const { logger, lines } = memoryLogger(level);
  let readiness: Readiness = 'starting';
  const stats = createLiveStats();
  const app = createAdmin({
    readiness: () => readiness,
    endpoints: () => EMPTY,
    sessions: () => ({}),
    metrics: (_request, response) => { response.end('# nothing\n'); },
    configDump: () => ({ config: { service: 'orders', namespace: 'shop', instance: 'orders-1' } }),
    status: () => stats.snapshot(),
    ...overrides,
  }, logger);
  return { app, logger, lines, stats, setReadiness: (value: Readiness) => { readiness = value; } };
}

describe('admin server', () => {
  const apps: { close(): Promise<unknown> }[] = [];
  after(async () => { for (const app of apps) await app.close(); });

  it('callers from other hosts reach only the probes and metrics; local callers reach everything', async () => {
    const { app } = admin();
    apps.push(app);
    const from = (remoteAddress: string, url: string, method: 'GET' | 'PUT' = 'GET') => app.inject({ method, url, remoteAddress });
    for (const url of ['/healthz', '/readyz', '/metrics']) {
      assert.notEqual((await from('10.1.2.3', url)).statusCode, 403, url);
    }
    for (const [url, method] of [['/config_dump', 'GET'], ['/', 'GET'], ['/status.json', 'GET'], ['/endpoints', 'GET'], ['/logging?level=debug', 'PUT']] as const) {
      const remote = await from('10.1.2.3', url, method);
      assert.equal(remote.statusCode, 403, url);
      assert.equal(remote.json().error.code, 'ACCESS_DENIED');
      // A refusal is a mesh error like any other: coded in the header too.
      assert.equal(remote.headers['mcp-mesh-error'], 'ACCESS_DENIED', url);
      assert.equal(remote.headers['content-type'], 'application/json; charset=utf-8', url);
      assert.notEqual((await from('127.0.0.1', url, method)).statusCode, 403, `${url} from loopback`);
    }
    assert.notEqual((await from('::1', '/config_dump')).statusCode, 403);
    assert.notEqual((await from('::ffff:127.0.0.1', '/config_dump')).statusCode, 403);
  });

  it('a fault in a route: 500 INTERNAL, coded, and the log has the details', async () => {
    const { app, lines } = admin({ endpoints: () => { throw new Error('view broke'); } });
    apps.push(app);
    const response = await app.inject('/endpoints');
    assert.equal(response.statusCode, 500);
    assert.equal(response.headers['mcp-mesh-error'], 'INTERNAL');
    assert.deepEqual(response.json(), { error: { code: 'INTERNAL', message: 'view broke' } });
    assert.ok(lines.some((line) => line.code === 'INTERNAL' && /view broke/.test(String(line.msg))), 'logged with its code');
  });

  it('/readyz: 503 starting, 200 ready, 503 draining, as the sidecar says', async () => {
    const { app, setReadiness } = admin();
    apps.push(app);
    let response = await app.inject('/readyz');
    assert.deepEqual([response.statusCode, response.json()], [503, { status: 'starting' }]);
    setReadiness('ready');
    response = await app.inject('/readyz');
    assert.deepEqual([response.statusCode, response.json()], [200, { status: 'ready' }]);
    setReadiness('draining');
    response = await app.inject('/readyz');
    assert.deepEqual([response.statusCode, response.json()], [503, { status: 'draining' }]);
    assert.equal((await app.inject('/status.json')).json().sidecar.readiness, 'draining', 'the status page says the same');
  });

  it('/logging: GET, PUT and POST with ?level= or a JSON body, 400 on a bad or missing level', async () => {
    const { app, logger, lines } = admin();
    apps.push(app);
    assert.deepEqual((await app.inject('/logging')).json(), { level: 'info', levels: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] });
    let response = await app.inject({ method: 'PUT', url: '/logging?level=debug' });
    assert.deepEqual([response.statusCode, response.json()], [200, { level: 'debug', previous: 'info' }]);
    assert.equal(logger.level, 'debug');
    assert.ok(logger.isLevelEnabled('debug'));
    response = await app.inject({ method: 'POST', url: '/logging', payload: { level: 'error' } });
    assert.deepEqual([response.statusCode, response.json()], [200, { level: 'error', previous: 'debug' }]);
    for (const url of ['/logging?level=verbose', '/logging?level=INFO', '/logging?level=info&level=debug', '/logging']) {
      response = await app.inject({ method: 'PUT', url });
      assert.equal(response.statusCode, 400, url);
      assert.match((response.json() as { error: { message: string } }).error.message, /trace, debug, info, warn, error, fatal, silent/);
    }
    assert.equal(logger.level, 'error', 'refused changes change nothing');
    assert.deepEqual(lines.filter((l) => l.msg?.toString().startsWith('log level set')).map((l) => [l.level, l.from, l.to, l.by]), [
      [30, 'info', 'debug', 'PUT /logging'],
      [30, 'debug', 'error', 'POST /logging'],
    ]);
  });

  it('the change is logged at info whichever side of info the levels are; not when both are above it', () => {
    const { logger, lines } = memoryLogger('warn');
    setLogLevel(logger, 'debug', 'test');   // from warn: written after the change
    setLogLevel(logger, 'error', 'test');   // from debug: written before the change
    setLogLevel(logger, 'fatal', 'test');   // error → fatal: neither lets info through
    assert.deepEqual(lines.map((l) => [l.from, l.to]), [['warn', 'debug'], ['debug', 'error']]);
    assert.equal(logger.level, 'fatal');
  });

  it('GET / is the self-contained status page, with headers that keep it to itself', async () => {
    const { app } = admin();
    apps.push(app);
    const response = await app.inject('/');
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.match(String(response.headers['content-security-policy']), /default-src 'none'; script-src 'unsafe-inline'.*connect-src 'self'/);
    assert.equal(response.headers['x-frame-options'], 'DENY');
    assert.match(response.body, /<script>/);
    assert.doesNotMatch(response.body, /\binnerHTML\b|\bouterHTML\b|insertAdjacentHTML|document\.write/, 'values are put in as text only');
  });

  it('/status.json joins live numbers and endpoint state', async () => {
    const view: EndpointsView = {
      links: [{ address: '10.0.0.1:15002', state: 'ready', inFlight: 0, batches: 1, envelopes: 1 }],
      services: {
        'payments.default': {
          balancers: ['p2c-ewma'], breaker: 'closed', outlier: [], concurrency: [], retryBudgets: [],
          endpoints: [{ address: '10.0.0.1:15002', link: 'ready', healthy: true, inFlight: 0, ewmaMs: 4.5, breaker: 'closed', ejection: null, consecutiveFailures: 0 }],
        },
      },
      breakers: [],
    };
    const { app, stats, setReadiness } = admin({ endpoints: () => view });
    apps.push(app);
    setReadiness('ready');
    const observed = stats.observer.outbound({ service: 'payments.default', method: 'GET', path: '/', headers: [], kind: 'call' });
    observed.attempt(1, '10.0.0.1:15002', 'closed').end({ status: 200 });
    observed.end({ status: 200 }, 1);
    const doc = (await app.inject('/status.json')).json() as StatusDocument;
    assert.deepEqual({ ...doc.sidecar, uptimeSeconds: 0, pid: 0 }, { service: 'orders', namespace: 'shop', instance: 'orders-1', readiness: 'ready', uptimeSeconds: 0, pid: 0 });
    const [payments] = doc.outbound;
    assert.equal(payments!.service, 'payments.default');
    assert.equal(payments!.healthyEndpoints, 1);
    assert.equal(payments!.live!.total.requests, 1);
    assert.equal(payments!.endpoints[0]!.ewmaMs, 4.5);
    assert.equal(payments!.endpoints[0]!.live!.requestsPerSecond, 1);
    assert.deepEqual(doc.summary, {
      outboundRequestsPerSecond: 1, outboundErrorsPerSecond: 0, inboundRequestsPerSecond: 0, inboundErrorsPerSecond: 0,
      endpoints: 1, healthyEndpoints: 1, ejectedEndpoints: 0, openBreakers: 0, links: 1, readyLinks: 1,
    });
  });
});
