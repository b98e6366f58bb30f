import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { forwardedHeaders, startNodePair } from '../../../bench/node-pair.ts';

test('the plain proxy drops hop-by-hop headers and keeps the rest', () => {
  const headers = forwardedHeaders({ host: 'target', connection: 'keep-alive', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'content-type': 'text/plain', 'x-a': ['1', '2'] });
  assert.deepEqual(headers, { host: 'target', 'content-type': 'text/plain', 'x-a': ['1', '2'] });
});

test('a request goes through both plain Node proxies to the app and back, body and status intact', async (t) => {
  const seen: { headers: IncomingHttpHeaders; body: string }[] = [];
  const app = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => { body += chunk; });
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      res.writeHead(201, { 'content-type': 'text/plain' }).end(`echo:${body}`);
    });
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { app.closeAllConnections(); app.close(resolve); }));
  const pair = await startNodePair((app.address() as AddressInfo).port);
  t.after(() => pair.stop());
  assert.notEqual(pair.first.pid, pair.second.pid);

  const res = await request(`http://127.0.0.1:${pair.port}/x?y=1`, { method: 'POST', headers: { host: 'target', 'content-type': 'text/plain' }, body: 'a'.repeat(1024) });
  assert.equal(res.statusCode, 201);
  assert.equal(res.headers['content-type'], 'text/plain');
  assert.equal(await res.body.text(), `echo:${'a'.repeat(1024)}`);
  assert.equal(seen.length, 1, 'the app got the request once');
  assert.equal(seen[0]!.headers.host, 'target');
  assert.equal(seen[0]!.body.length, 1024);

  // The app gone: the proxy answers 502 rather than hanging or crashing.
  await new Promise((resolve) => { app.closeAllConnections(); app.close(resolve); });
  const gone = await request(`http://127.0.0.1:${pair.port}/x`, { method: 'GET' });
  assert.equal(gone.statusCode, 502);
  await gone.body.dump();
});
