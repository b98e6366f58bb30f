import { test } from 'node:test';
import assert from 'node:assert/strict';
import { haproxyConfig, parseVersion } from '../../../bench/haproxy.ts';

test('the chain config: one frontend on the given bind, one backend to the next hop, keep-alive and reuse, one thread, no log', () => {
  const text = haproxyConfig({ bind: 'fd@3', servers: ['127.0.0.1:8080'] });
  const lines = text.split('\n').map((l) => l.trim());
  assert.ok(lines.includes('bind fd@3'));
  assert.ok(lines.includes('server s1 127.0.0.1:8080'));
  assert.ok(lines.includes('nbthread 1'));
  assert.ok(lines.includes('mode http'));
  assert.ok(lines.includes('http-reuse always'));
  assert.ok(lines.includes('option http-keep-alive'));
  assert.ok(!lines.some((l) => /^log\b/.test(l)), 'nothing is logged');
  assert.ok(!lines.some((l) => /^balance\b/.test(l)), 'no balance line unless asked');
  // Sections in order, the server lines inside the backend.
  assert.ok(lines.indexOf('global') < lines.indexOf('defaults'));
  assert.ok(lines.indexOf('frontend in') < lines.indexOf('backend next'));
  assert.ok(lines.indexOf('backend next') < lines.indexOf('server s1 127.0.0.1:8080'));
});

test('several servers, a balance and extra lines land in their sections', () => {
  const text = haproxyConfig({
    bind: '127.0.0.1:9000', servers: ['127.0.0.1:1', '127.0.0.1:2'], balance: 'source',
    backendLines: ['stick-table type string len 64 size 10k'], frontendLines: ['option forwardfor'], maxconn: 100,
  });
  const lines = text.split('\n').map((l) => l.trim());
  const backend = lines.indexOf('backend next');
  const frontend = lines.indexOf('frontend in');
  assert.ok(lines.includes('maxconn 100'));
  assert.ok(lines.indexOf('balance source') > backend);
  assert.ok(lines.indexOf('stick-table type string len 64 size 10k') > backend);
  assert.ok(lines.indexOf('option forwardfor') > frontend && lines.indexOf('option forwardfor') < backend);
  assert.deepEqual(lines.filter((l) => l.startsWith('server ')), ['server s1 127.0.0.1:1', 'server s2 127.0.0.1:2']);
  assert.ok(lines.includes('bind 127.0.0.1:9000'));
});

test('the version is read from haproxy -v', () => {
  assert.equal(parseVersion('HAProxy version 2.6.12-1+deb12u3 2025/10/03 - https://haproxy.org/\nStatus: …'), '2.6.12-1+deb12u3');
  assert.equal(parseVersion('HA-Proxy version 1.8.19 2019/02/11'), '1.8.19');
  assert.equal(parseVersion('something else'), undefined);
});
