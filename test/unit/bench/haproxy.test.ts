import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { haproxyConfig, locateHaproxy, parseVersion, startHaproxy, startHaproxyChain } from '../../../bench/haproxy.ts';

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

const installed = locateHaproxy();

test('the chain carries a request through two HAProxies to the app, each its own process, and stops', { skip: installed ? false : 'haproxy is not installed' }, async () => {
  const seen: { host?: string; body: string }[] = [];
  const app = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => {
      seen.push({ host: req.headers.host, body });
      res.end(`echo ${body}`);
    });
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const chain = await startHaproxyChain(installed!, (app.address() as AddressInfo).port);
  try {
    assert.notEqual(chain.first.pid, chain.second.pid);
    assert.notEqual(chain.first.port, chain.second.port);
    assert.match(chain.first.config, new RegExp(`server s1 127\\.0\\.0\\.1:${chain.second.port}\\b`));
    const res = await request(`http://127.0.0.1:${chain.port}/x`, { method: 'POST', headers: { host: 'target' }, body: 'hello' });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'echo hello');
    assert.deepEqual(seen, [{ host: 'target', body: 'hello' }]);
  } finally {
    await chain.stop();
    app.close();
  }
  for (const pid of [chain.first.pid, chain.second.pid]) assert.throws(() => process.kill(pid, 0), /ESRCH/);
});

test('a config HAProxy rejects is reported with its own words', { skip: installed ? false : 'haproxy is not installed' }, async () => {
  await assert.rejects(startHaproxy(installed!, (bind) => `${haproxyConfig({ bind, servers: ['127.0.0.1:1'] })}\nbackend broken\n  nonsense-keyword 1\n`, 'broken'), /broken: HAProxy rejected its configuration[\s\S]*nonsense-keyword/);
});
