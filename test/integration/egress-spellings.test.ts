// The open-proxy guard against every way of spelling loopback: a sidecar with egress.allow ["*"], and
// a trap listening on 127.0.0.1 and ::1 that must never see a connection, whether the app asks in
// absolute form (HTTP_PROXY), by Host header, or with CONNECT. Only spellings that reach this host
// are tried here (a broken guard would otherwise dial out); metadata, NAT64 and 6to4 spellings are
// tried in a private network namespace (egress.test.ts).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { header, rawHttp } from '../helpers/raw-http.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

/** Reach this host whatever the guard thinks of them. */
const HTTP_SPELLINGS = [
  '127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.1', '0x7f000001', '127.1', '127.0.0.1.', '0', '0.0.0.0', 'localhost', 'localhost.',
  '[::1]', '[0:0:0:0:0:0:0:1]', '[0000::1]', '[::ffff:7f00:1]', '[::ffff:127.0.0.1]', '[0:0:0:0:0:ffff:127.0.0.1]', '[::FFFF:7F00:0001]', '[::]', '[::1%25lo]',
];
/** CONNECT takes a zone id as it is (no URL escaping). */
const CONNECT_SPELLINGS = [...HTTP_SPELLINGS, '[::1%lo]'];

describe('egress with allow ["*"] never reaches this host, however it is spelled', { timeout: 60_000 }, () => {
  let sidecar: SidecarProcess;
  const trap = { port: 0, connections: 0, servers: [] as Server[] };

  before(async () => {
    trap.port = await listenTrap(trap);
    sidecar = await SidecarProcess.start({ config: sidecarConfig({ service: 'web', appPort: 1, extra: { egress: { allow: ['*'] } } }) });
  });
  after(async () => {
    await sidecar?.stop();
    for (const server of trap.servers) server.close();
  });

  /** Send each request; the ones not answered 403 EGRESS_NOT_ALLOWED, with what they got instead. */
  const notRefused = async (requests: string[][]) => {
    const outcomes: string[] = [];
    for (const lines of requests) {
      const outcome = await rawHttp(sidecar.ports.outbound, lines).then(
        (response) => `${response.status} ${header(response, 'mcp-mesh-error')[0] ?? ''}`,
        (err: Error) => `no answer (${err.message.slice(0, 60)})`);
      if (outcome !== '403 EGRESS_NOT_ALLOWED') outcomes.push(`${lines.join(' / ')} → ${outcome}`);
    }
    return outcomes;
  };

  test('GET in absolute form (as with HTTP_PROXY) and by Host header: 403 EGRESS_NOT_ALLOWED, and no connection', async () => {
    const requests = HTTP_SPELLINGS.flatMap((host) => {
      const authority = `${host}:${trap.port}`;
      return [[`GET http://${authority}/ HTTP/1.1`, `Host: ${authority}`, 'Connection: close'], ['GET / HTTP/1.1', `Host: ${authority}`, 'Connection: close']];
    });
    assert.deepEqual(await notRefused(requests), []);
    assert.equal(trap.connections, 0, 'connections the trap saw');
  });

  test('CONNECT: 403 EGRESS_NOT_ALLOWED, and no tunnel', async () => {
    const requests = CONNECT_SPELLINGS.map((host) => [`CONNECT ${host}:${trap.port} HTTP/1.1`, `Host: ${host}:${trap.port}`]);
    assert.deepEqual(await notRefused(requests), []);
    assert.equal(trap.connections, 0, 'connections the trap saw');
  });

  test('the refusal\'s log line names the host, the address it is and why', async () => {
    const since = sidecar.mark();
    await rawHttp(sidecar.ports.outbound, [`GET http://[::ffff:7f00:1]:${trap.port}/x HTTP/1.1`, `Host: [::ffff:7f00:1]:${trap.port}`, 'Connection: close']);
    const line = await sidecar.waitForLog((l) => l.direction === 'outbound' && l.code === 'EGRESS_NOT_ALLOWED', { since });
    assert.deepEqual(line.egress, { host: '::ffff:7f00:1', address: '127.0.0.1', refused: 'loopback' });
    assert.equal(line.target, 'egress:*');
    assert.match(String(line.msg), /"::ffff:7f00:1" resolves to 127\.0\.0\.1, a loopback address \(loopback\)/);
  });
});

/** One port, listened on at 127.0.0.1 and ::1, counting every connection (and closing it). */
async function listenTrap(trap: { connections: number; servers: Server[] }): Promise<number> {
  for (let tries = 0; tries < 10; tries++) {
    const v6 = await listen(0, '::1', trap);
    const port = (v6.address() as { port: number }).port;
    try {
      await listen(port, '127.0.0.1', trap);
      return port;
    } catch {
      v6.close(); // that port is taken on 127.0.0.1: try another
      trap.servers.length = 0;
    }
  }
  throw new Error('no port free on both 127.0.0.1 and ::1');
}

function listen(port: number, host: string, trap: { connections: number; servers: Server[] }): Promise<Server> {
  const server = createServer((socket) => { trap.connections++; socket.destroy(); });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { trap.servers.push(server); resolve(server); });
  });
}
