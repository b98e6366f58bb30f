// Limits on the connections peers open to a sidecar's inbound port, set in its config (limits.*):
// a connection that never starts a call is closed, one address gets at most so many connections
// (another loopback address has its own allowance), refusals are counted in
// mcp_limit_rejections_total and logged once for a burst — and the caller's live link goes on.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { untilMetric } from '../helpers/async.ts';
import { startMesh, type Mesh } from '../helpers/mesh.ts';
import { rawConnection, type RawConnection } from '../helpers/raw-tcp.ts';
import { within } from '../helpers/wait.ts';

const WAIT_MS = 10_000;

describe('limits on the inbound port', { timeout: 60_000 }, () => {
  let mesh: Mesh;
  const opened: RawConnection[] = [];
  before(async () => {
    // The caller's link is one connection from 127.0.0.1: two more are allowed, the next is refused.
    mesh = await startMesh({ calleeExtra: { limits: { maxConnectionsPerPeer: 3, inboundHandshakeTimeout: '1s', inboundIdleTimeout: '1s' } } });
  });
  after(async () => {
    for (const connection of opened) connection.socket.destroy();
    await mesh?.close();
  });

  const open = (localAddress?: string) => {
    const connection = rawConnection(mesh.callee.ports.inbound, localAddress);
    opened.push(connection);
    return connection;
  };

  const callThroughMesh = async (path: string) => {
    const response = await request(`${mesh.caller.outboundUrl}${path}`, { headers: { host: 'payments' } });
    assert.equal(response.statusCode, 200);
    await response.body.dump();
  };

  test('connections beyond limits.maxConnectionsPerPeer are refused; silent ones close after limits.inboundHandshakeTimeout; the link stays', async () => {
    const kept = [open(), open()];
    await within(Promise.all(kept.map((c) => c.spoke)), WAIT_MS, 'two more connections from 127.0.0.1 to be served');
    const burst = [open(), open(), open()];
    await within(Promise.all(burst.map((c) => c.closed)), WAIT_MS, 'the connections over the limit to be closed');
    assert.ok(burst.every((c) => c.received.length === 0), 'refused before HTTP/2 said anything');
    await untilMetric(mesh.callee, 'mcp_limit_rejections_total', { limit: 'connections_per_peer' }, (n) => n === 3);
    const warnings = mesh.callee.logs.filter((line) => line.code === 'INBOUND_CONNECTION_REFUSED' && line.limit === 'connections_per_peer');
    assert.equal(warnings.length, 1, 'one log line for the burst');

    const otherPeer = open('127.0.0.2');
    await within(otherPeer.spoke, WAIT_MS, 'a connection from 127.0.0.2 to be served');

    // None of them starts a call: each is closed by the handshake timeout.
    await within(Promise.all([...kept, otherPeer].map((c) => c.closed)), WAIT_MS, 'the silent connections to be closed');
    await untilMetric(mesh.callee, 'mcp_limit_rejections_total', { limit: 'handshake_timeout' }, (n) => n === 3);

    // The caller's link, older than all of them, has its Link stream open: neither timeout touched it.
    await callThroughMesh('/after-limits');
    assert.equal(mesh.caller.logs.filter((line) => line.msg === 'link ready').length, 1, 'the caller\'s link never reconnected');
  });
});
