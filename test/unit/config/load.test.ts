import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../../../sidecar/src/config/load.ts';

// The example from issue 2, verbatim.
const ISSUE_EXAMPLE = `service: orders                 # this sidecar's service name
namespace: default
app: { port: 8080 }             # the local app, on 127.0.0.1
listen: { outbound: 127.0.0.1:15001, inbound: 0.0.0.0:15002, admin: 127.0.0.1:15000 }
discovery:
  static:                       # service -> peer sidecars' inbound addresses (entries may also be
    payments: [127.0.0.1:25002, 127.0.0.1:26002]   #  objects with address and labels)
policies: [./policies]          # files or folders (used from the policies issue on)
`;

const MINIMAL = 'service: orders\napp: { port: 8080 }\n';

let dir: string;
before(() => { dir = mkdtempSync(path.join(tmpdir(), 'mesh-config-')); });
after(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Runs fn, asserts it throws a ConfigError, and returns its message. */
function configError(fn: () => unknown): string {
  let caught: unknown;
  try { fn(); } catch (err) { caught = err; }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  return caught.message;
}

describe('loadConfigFile: the issue example', () => {
  it('loads with every default filled and everything resolved', () => {
    const file = writeConfig('mesh.yaml', ISSUE_EXAMPLE);
    const config = loadConfigFile(file, {});
    assert.equal(config.service, 'orders');
    assert.equal(config.namespace, 'default');
    assert.equal(config.instance, `orders-${process.pid}`);
    assert.deepEqual(config.app, { host: '127.0.0.1', port: 8080, connections: 128 });
    assert.deepEqual(config.listen, {
      outbound: { host: '127.0.0.1', port: 15001 },
      inbound: { host: '0.0.0.0', port: 15002 },
      admin: { host: '127.0.0.1', port: 15000 },
    });
    assert.deepEqual(config.discovery.static, {
      payments: [
        { address: '127.0.0.1:25002', labels: {}, weight: 1 },
        { address: '127.0.0.1:26002', labels: {}, weight: 1 },
      ],
    });
    assert.deepEqual(config.policies, [path.join(dir, 'policies')], 'relative to the config file, not the cwd');
    assert.deepEqual(config.timeouts, { connectMs: 1000, requestMs: 15000, streamIdleMs: 300000 });
    assert.deepEqual(config.limits, { maxBodyBytes: 1073741824, inlineBodyBytes: 65536, maxHeaderBytes: 32768, headerTimeoutMs: 10000, maxStreamsPerPeer: 1000, maxSessions: 10000, sessionIdleTimeoutMs: 1800000,
      maxInboundConnections: 1024, maxConnectionsPerPeer: 16, inboundHandshakeTimeoutMs: 10000, inboundIdleTimeoutMs: 300000 });
    assert.deepEqual(config.link, {
      batchMaxCount: 128, batchMaxBytes: 1048576, lingerMs: 0,
      heartbeatIntervalMs: 1000, unhealthyAfterMs: 3000, reconnectBaseMs: 100, reconnectMaxMs: 5000,
    });
    assert.deepEqual(config.shutdown, { graceMs: 5000, waitForApp: true });
    assert.deepEqual(config.log, { level: 'info' });
    assert.equal(config.file, file);
  });

  it('fills the defaults for a minimal config (namespace, listeners, empty discovery)', () => {
    const config = parseConfig(MINIMAL, undefined);
    assert.equal(config.namespace, 'default');
    assert.deepEqual(config.listen.outbound, { host: '127.0.0.1', port: 15001 });
    assert.deepEqual(config.listen.inbound, { host: '0.0.0.0', port: 15002 });
    assert.deepEqual(config.listen.admin, { host: '127.0.0.1', port: 15000 });
    assert.deepEqual(config.discovery.static, {});
    assert.deepEqual(config.policies, []);
    assert.equal(config.file, undefined);
  });

  it('accepts IPv6 and port-0 listen addresses', () => {
    const config = parseConfig(`${MINIMAL}listen: { outbound: "[::1]:0", inbound: "localhost:0" }\n`, undefined);
    assert.deepEqual(config.listen.outbound, { host: '::1', port: 0 });
    assert.deepEqual(config.listen.inbound, { host: 'localhost', port: 0 });
  });

  it('converts durations in every accepted form', () => {
    const config = parseConfig(`${MINIMAL}timeouts: { connect: 250ms, request: 1.5s, streamIdle: 2m }\nlink: { linger: 2, heartbeatInterval: 500ms, unhealthyAfter: 1h }\n`, undefined);
    assert.deepEqual(config.timeouts, { connectMs: 250, requestMs: 1500, streamIdleMs: 120000 });
    assert.equal(config.link.lingerMs, 2);
    assert.equal(config.link.heartbeatIntervalMs, 500);
    assert.equal(config.link.unhealthyAfterMs, 3_600_000);
  });

  it('returns a deeply frozen config', () => {
    const config = parseConfig(`${MINIMAL}discovery: { static: { payments: [{ address: 10.0.0.1:15002, labels: { zone: a } }] } }\npolicies: [p]\n`, undefined);
    const frozen = [config, config.app, config.listen, config.listen.inbound, config.discovery, config.discovery.static,
      config.discovery.static.payments, config.discovery.static.payments![0], config.discovery.static.payments![0]!.labels,
      config.policies, config.timeouts, config.limits, config.link, config.shutdown, config.log];
    for (const value of frozen) assert.ok(Object.isFrozen(value), `${JSON.stringify(value)} is frozen`);
    assert.throws(() => { (config.app as { port: number }).port = 1; }, TypeError);
    assert.throws(() => { (config.discovery.static.payments![0]!.labels as Record<string, string>).zone = 'b'; }, TypeError);
    assert.throws(() => { (config.policies as string[]).push('x'); }, TypeError);
  });

  it('accepts static endpoints as strings and as {address, labels, weight} objects', () => {
    const config = parseConfig(`${MINIMAL}discovery:
  static:
    payments:
      - 127.0.0.1:25002
      - { address: 127.0.0.1:26002, labels: { zone: eu-1, canary: "true" }, weight: 5 }
      - { address: "[::1]:27002" }
    billing.finance: [billing-0.billing:15002]
`, undefined);
    assert.deepEqual(config.discovery.static, {
      payments: [
        { address: '127.0.0.1:25002', labels: {}, weight: 1 },
        { address: '127.0.0.1:26002', labels: { zone: 'eu-1', canary: 'true' }, weight: 5 },
        { address: '[::1]:27002', labels: {}, weight: 1 },
      ],
      'billing.finance': [{ address: 'billing-0.billing:15002', labels: {}, weight: 1 }],
    });
  });
});

describe('loadConfigFile: invalid configs name the key (and file:line:col)', () => {
  const cases: { name: string; text: string; key: string; at: string; problem: RegExp }[] = [
    { name: 'unknown top-level key', text: `${MINIMAL}timeout: 5s\n`, key: 'timeout', at: '3:1', problem: /unknown key/ },
    { name: 'unknown nested key', text: 'service: orders\napp: { port: 8080, prot: 1 }\n', key: 'app.prot', at: '2:20', problem: /unknown key/ },
    { name: 'wrong type', text: 'service: orders\napp: { port: "eighty" }\n', key: 'app.port', at: '2:14', problem: /integer/ },
    { name: 'missing app.port', text: 'service: orders\napp: { host: 127.0.0.1 }\n', key: 'app.port', at: '2:6', problem: /required/ },
    { name: 'invalid duration', text: `${MINIMAL}timeouts: { request: 5 seconds }\n`, key: 'timeouts.request', at: '3:22', problem: /duration/ },
    { name: 'bad service name', text: 'service: Orders_1\napp: { port: 8080 }\n', key: 'service', at: '1:10', problem: /DNS label/ },
    { name: 'port out of range', text: 'service: orders\napp: { port: 70000 }\n', key: 'app.port', at: '2:14', problem: /<= 65535/ },
    { name: 'bad address', text: `${MINIMAL}listen: { inbound: "no port here" }\n`, key: 'listen.inbound', at: '3:20', problem: /host:port/ },
    { name: 'bad static service key', text: `${MINIMAL}discovery: { static: { Payments: [a:1] } }\n`, key: 'discovery.static.Payments', at: '3:24', problem: /unknown key/ },
  ];
  for (const { name, text, key, at, problem } of cases) {
    it(name, () => {
      const file = writeConfig(`${name.replace(/\W+/g, '-')}.yaml`, text);
      const message = configError(() => loadConfigFile(file, {}));
      assert.ok(message.includes(`key "${key}"`), `names key ${key}: ${message}`);
      assert.ok(message.includes(`${file}:${at}`), `points at ${file}:${at}: ${message}`);
      assert.match(message, problem);
    });
  }

  it('missing app section: names app.port and the file', () => {
    const file = writeConfig('no-app.yaml', 'service: orders\n');
    const message = configError(() => loadConfigFile(file, {}));
    assert.match(message, /key "app\.port" is required/);
    assert.ok(message.includes(file));
  });

  it('reports every problem at once, one per line', () => {
    const message = configError(() => parseConfig('service: Bad\napp: { port: x }\nfoo: 1\n', 'm.yaml'));
    assert.match(message, /m\.yaml:1:10: key "service"/);
    assert.match(message, /m\.yaml:2:14: key "app\.port"/);
    assert.match(message, /m\.yaml:3:1: key "foo" unknown key/);
    assert.equal(message.split('\n').length, 3);
  });

  it('invalid YAML: file:line:col', () => {
    const file = writeConfig('broken.yaml', `${MINIMAL}policies: [a, b\n`);
    const message = configError(() => loadConfigFile(file, {}));
    assert.match(message, /invalid YAML/);
    assert.ok(message.includes(`${file}:4:1`), message);
  });

  it('duplicate keys are an error, not last-one-wins', () => {
    const message = configError(() => parseConfig(`${MINIMAL}service: payments\n`, 'dup.yaml'));
    assert.match(message, /dup\.yaml:3:1: invalid YAML: .*unique/);
  });

  it('a top level that is not a mapping', () => {
    assert.match(configError(() => parseConfig('# a list\n- a\n- b\n', 'list.yaml')), /list\.yaml:2:1: the top level must be a mapping/);
  });

  it('an empty file names the required keys', () => {
    const message = configError(() => parseConfig('', 'empty.yaml'));
    assert.match(message, /key "service" is required/);
    assert.match(message, /key "app\.port" is required/);
  });

  it('a file that cannot be read', () => {
    const missing = path.join(dir, 'nope.yaml');
    assert.match(configError(() => loadConfigFile(missing, {})), new RegExp(`cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`));
  });

  it('link.unhealthyAfter must exceed link.heartbeatInterval', () => {
    assert.match(configError(() => parseConfig(`${MINIMAL}link: { heartbeatInterval: 2s, unhealthyAfter: 2s }\n`, 'm.yaml')), /key "link\.unhealthyAfter"/);
    assert.match(configError(() => parseConfig(`${MINIMAL}link: { heartbeatInterval: 2s, unhealthyAfter: 1s }\n`, 'm.yaml')), /longer than link\.heartbeatInterval/);
    assert.match(configError(() => parseConfig(`${MINIMAL}link: { heartbeatInterval: 0 }\n`, 'm.yaml')), /key "link\.heartbeatInterval"/);
    assert.equal(parseConfig(`${MINIMAL}link: { heartbeatInterval: 2s, unhealthyAfter: 2001ms }\n`, undefined).link.unhealthyAfterMs, 2001);
  });

  it('link.unhealthyAfter error points at the file position', () => {
    const message = configError(() => parseConfig(`${MINIMAL}link: { heartbeatInterval: 2s, unhealthyAfter: 1s }\n`, 'm.yaml'));
    assert.match(message, /m\.yaml:3:\d+/);
  });

  it('a listen port above 65535 is a ConfigError naming the key', () => {
    const message = configError(() => parseConfig(`${MINIMAL}listen: { outbound: 127.0.0.1:99999 }\n`, 'm.yaml'));
    assert.match(message, /key "listen\.outbound"/);
  });

  it('a static endpoint port above 65535 is refused', () => {
    const message = configError(() => parseConfig(`${MINIMAL}discovery: { static: { payments: [127.0.0.1:99999] } }\n`, 'm.yaml'));
    assert.match(message, /key "discovery\.static\.payments\.0"/);
  });

  it('an invalid static endpoint says what is wrong with it', () => {
    const badAddress = configError(() => parseConfig(`${MINIMAL}discovery: { static: { payments: [nope] } }\n`, 'm.yaml'));
    assert.doesNotMatch(badAddress, /must be must|anyOf/);
    assert.match(badAddress, /host:port/);
    const typo = configError(() => parseConfig(`${MINIMAL}discovery: { static: { payments: [{ address: a:1, wieght: 2 }] } }\n`, 'm.yaml'));
    assert.match(typo, /wieght/);
    const level = configError(() => parseConfig(`${MINIMAL}log: { level: loud }\n`, 'm.yaml'));
    assert.doesNotMatch(level, /must be must|anyOf/);
    assert.match(level, /info/);
  });

  it('an invalid static endpoint is still refused and located, whatever the wording', () => {
    const message = configError(() => parseConfig(`${MINIMAL}discovery: { static: { payments: [nope] } }\n`, 'm.yaml'));
    assert.match(message, /m\.yaml:3:35: key "discovery\.static\.payments\.0"/);
    const weight = configError(() => parseConfig(`${MINIMAL}discovery: { static: { payments: [{ address: a:1, weight: 0 }] } }\n`, 'm.yaml'));
    assert.match(weight, /key "discovery\.static\.payments\.0\.weight" must be >= 1/);
  });
});
