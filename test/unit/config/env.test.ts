import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, parseConfig } from '../../../sidecar/src/config/load.ts';
import { applyEnvOverrides, ENV_OVERRIDES } from '../../../sidecar/src/config/env.ts';

const FILE = `service: orders
namespace: shop
app: { port: 8080 }
discovery: { static: { payments: [127.0.0.1:25002] } }
policies: [/etc/mesh/policies]
timeouts: { request: 15s }
link: { batchMaxCount: 64 }
`;

function configError(fn: () => unknown): string {
  let caught: unknown;
  try { fn(); } catch (err) { caught = err; }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  return caught.message;
}

describe('environment overrides', () => {
  it('take precedence over the file', () => {
    const config = parseConfig(FILE, 'mesh.yaml', {
      MESH_SERVICE: 'billing',
      MESH_APP_PORT: '9090',
      MESH_LINK_BATCH_MAX_COUNT: '16',
      MESH_POLICIES: '/a, /b ,,/c',
      MESH_DISCOVERY_STATIC: 'svc=a:1,b:2;other=c:3',
      MESH_TIMEOUTS_REQUEST: '250ms',
      MESH_SHUTDOWN_WAIT_FOR_APP: 'false',
    });
    assert.equal(config.shutdown.waitForApp, false);
    assert.equal(config.service, 'billing');
    assert.equal(config.namespace, 'shop', 'keys without a variable keep the file value');
    assert.equal(config.app.port, 9090);
    assert.equal(config.link.batchMaxCount, 16);
    assert.deepEqual(config.policies, ['/a', '/b', '/c']);
    assert.deepEqual(config.discovery.static, {
      svc: [{ address: 'a:1', labels: {}, weight: 1 }, { address: 'b:2', labels: {}, weight: 1 }],
      other: [{ address: 'c:3', labels: {}, weight: 1 }],
    }, 'the variable replaces the whole static map (payments from the file is gone)');
    assert.equal(config.timeouts.requestMs, 250);
  });

  it('the file wins over the default, the environment over both', () => {
    assert.equal(parseConfig(FILE, undefined, {}).link.batchMaxCount, 64);
    assert.equal(parseConfig('service: a\napp: { port: 1 }\n', undefined, {}).link.batchMaxCount, 128);
    assert.equal(parseConfig('service: a\napp: { port: 1 }\n', undefined, { MESH_LINK_BATCH_MAX_COUNT: '7' }).link.batchMaxCount, 7);
  });

  it('can supply keys the file does not have at all (even a required one)', () => {
    const config = parseConfig('service: orders\n', undefined, { MESH_APP_PORT: '8081', MESH_LINK_LINGER: '2ms', MESH_SHUTDOWN_GRACE: '1500' });
    assert.equal(config.app.port, 8081);
    assert.equal(config.link.lingerMs, 2);
    assert.equal(config.shutdown.graceMs, 1500, 'a plain number is milliseconds');
  });

  it('durations accept a plain number of milliseconds', () => {
    assert.equal(parseConfig(FILE, undefined, { MESH_TIMEOUTS_REQUEST: '250' }).timeouts.requestMs, 250);
  });

  it('trim integer values', () => {
    assert.equal(parseConfig(FILE, undefined, { MESH_APP_PORT: ' 9090 ' }).app.port, 9090);
  });

  const bad: [string, string, RegExp][] = [
    ['MESH_APP_PORT', 'abc', /key "app\.port" must be integer/],
    ['MESH_APP_PORT', '8080.5', /key "app\.port"/],
    ['MESH_APP_PORT', '70000', /key "app\.port" must be <= 65535/],
    ['MESH_LINK_BATCH_MAX_COUNT', '0', /key "link\.batchMaxCount" must be >= 1/],
    ['MESH_TIMEOUTS_REQUEST', 'soon', /key "timeouts\.request" must be a duration/],
    ['MESH_SERVICE', 'Not_A_Label', /key "service" must be a DNS label/],
    ['MESH_LISTEN_INBOUND', 'nowhere', /key "listen\.inbound"/],
  ];
  for (const [variable, value, problem] of bad) {
    it(`a bad ${variable}=${JSON.stringify(value)} names the variable`, () => {
      const message = configError(() => parseConfig(FILE, 'mesh.yaml', { [variable]: value }));
      assert.ok(message.includes(`environment variable ${variable}`), message);
      assert.match(message, problem);
      assert.ok(!message.includes('mesh.yaml:'), `does not blame the file: ${message}`);
    });
  }

  it('a bad MESH_DISCOVERY_STATIC names the variable, not a position in the file', () => {
    for (const value of ['svc=not-an-address', 'Bad_Name=a:1']) {
      const message = configError(() => parseConfig(FILE, 'mesh.yaml', { MESH_DISCOVERY_STATIC: value }));
      assert.ok(message.includes('environment variable MESH_DISCOVERY_STATIC'), message);
    }
  });

  it('a bad MESH_DISCOVERY_STATIC is refused whatever the message says', () => {
    configError(() => parseConfig(FILE, 'mesh.yaml', { MESH_DISCOVERY_STATIC: 'svc=not-an-address' }));
    configError(() => parseConfig(FILE, 'mesh.yaml', { MESH_DISCOVERY_STATIC: 'Bad_Name=a:1' }));
  });

  it('ignores variables that are not overrides and does not read process.env when given an env', () => {
    const config = parseConfig(FILE, undefined, { MESH_NOT_A_KEY: 'x', MESH_APP: '1', PATH: '/bin' });
    assert.equal(config.app.port, 8080);
  });
});

describe('ENV_OVERRIDES', () => {
  it('has one variable per leaf key, named MESH_ + the path in upper snake case', () => {
    const byVariable = new Map(ENV_OVERRIDES.map((o) => [o.variable, o]));
    assert.equal(byVariable.size, ENV_OVERRIDES.length, 'no two keys share a variable');
    const expected: Record<string, [string, string]> = {
      MESH_SERVICE: ['service', 'string'],
      MESH_NAMESPACE: ['namespace', 'string'],
      MESH_APP_PORT: ['app.port', 'integer'],
      MESH_LISTEN_OUTBOUND: ['listen.outbound', 'string'],
      MESH_DISCOVERY_STATIC: ['discovery.static', 'static-endpoints'],
      MESH_POLICIES: ['policies', 'list'],
      MESH_TIMEOUTS_REQUEST: ['timeouts.request', 'duration'],
      MESH_TIMEOUTS_STREAM_IDLE: ['timeouts.streamIdle', 'duration'],
      MESH_LINK_BATCH_MAX_COUNT: ['link.batchMaxCount', 'integer'],
      MESH_LINK_UNHEALTHY_AFTER: ['link.unhealthyAfter', 'duration'],
      MESH_LIMITS_MAX_BODY_BYTES: ['limits.maxBodyBytes', 'integer'],
      MESH_LOG_LEVEL: ['log.level', 'string'],
      MESH_SHUTDOWN_WAIT_FOR_APP: ['shutdown.waitForApp', 'boolean'],
      MESH_DATA_DIR: ['storage.dir', 'string'],
    };
    for (const [variable, [keyPath, kind]] of Object.entries(expected)) {
      const override = byVariable.get(variable);
      assert.ok(override, `${variable} exists`);
      assert.equal(override.path.join('.'), keyPath);
      assert.equal(override.kind, kind);
    }
    for (const override of ENV_OVERRIDES) assert.match(override.variable, /^MESH_[A-Z0-9_]+$/);
  });

  it('every override round-trips through applyEnvOverrides into its own path', () => {
    for (const override of ENV_OVERRIDES) {
      const target: Record<string, unknown> = {};
      const applied = applyEnvOverrides(target, { [override.variable]: override.kind === 'static-endpoints' ? 's=a:1' : '5' });
      assert.deepEqual(applied, [override.variable]);
      let node: unknown = target;
      for (const key of override.path) node = (node as Record<string, unknown>)[key];
      assert.notEqual(node, undefined, `${override.variable} wrote ${override.path.join('.')}`);
    }
  });

  const docs = new URL('../../../docs/configuration.md', import.meta.url);
  it('every variable is documented in docs/configuration.md', () => {
    const text = readFileSync(docs, 'utf8');
    const missing = ENV_OVERRIDES.map((o) => o.variable).filter((v) => !text.includes(v));
    assert.deepEqual(missing, []);
  });
});
