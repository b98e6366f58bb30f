// limits.maxSessions on real processes: 2 replicas of an official-SDK MCP server, each behind a
// sidecar that lets its app hold 1 session, and SDK clients through a client sidecar.
//
//   SDK clients ─▶ client sidecar ══MCP══▶ sidecar mcp-i (maxSessions: 1) ─▶ MCP server app mcp-i
//
// The replicas' apps count the sessions they hold (/stats), so "a refused session does not stay
// open at the app" is measured at the apps.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { metric } from '../helpers/async.ts';
import { connectClient, openRawSse, rawRequest, type LiveClient } from '../helpers/mcp-clients.ts';
import { useMcpFleet, type McpFleet } from '../helpers/mcp-fleet.ts';
import { until } from '../helpers/wait.ts';

async function openSessions(fleet: McpFleet): Promise<{ streamable: number; sse: number }> {
  const stats = await fleet.stats();
  return Object.values(stats).reduce((sum, s) => ({ streamable: sum.streamable + s.open.streamable, sse: sum.sse + s.open.sse }), { streamable: 0, sse: 0 });
}

describe('limits.maxSessions: MCP sessions a replica may hold', { timeout: 120_000 }, () => {
  const started = useMcpFleet({ replicas: 2, extra: { limits: { maxSessions: 1 } } });

  test('Streamable HTTP: sessions fill both replicas, the next is refused with 503 SESSION_LIMIT and closed at the app; a DELETE makes room', async () => {
    const fleet = started();
    const via = fleet.callers[0]!;
    const clients: LiveClient[] = [];
    try {
      // Whichever replica the balancer picks first, a full one refuses and the call is retried on the other.
      for (let i = 0; i < 2; i++) {
        const client = await connectClient({ transport: 'streamable', dispatchers: fleet.dispatchers, via, index: i });
        clients.push(client);
        await client.call();
      }
      assert.deepEqual(new Set(clients.map((c) => c.outcome.replicas[0])), new Set(fleet.replicas.map((r) => r.name)), 'one session on each replica');
      await assert.rejects(connectClient({ transport: 'streamable', dispatchers: fleet.dispatchers, via, index: 2 }), (err: { outcome?: { status?: number; error?: string } }) => {
        assert.equal(err.outcome?.status, 503, `refused with 503: ${err.outcome?.error}`);
        return true;
      });
      // The same refusal as the app sees it, raw: the code, and the reason.
      const raw = await rawRequest(fleet.dispatchers, via, 'http://mcp/mcp', {
        method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
      });
      assert.equal(raw.status, 503);
      assert.equal(raw.headers['mcp-mesh-error'], 'SESSION_LIMIT');
      assert.match(raw.body, /limits\.maxSessions/);
      assert.equal((await openSessions(fleet)).streamable, 2, 'every refused session was deleted at its app again');
      for (const replica of fleet.replicas) {
        assert.equal(await metric(replica.sidecar, 'mcp_sessions_held'), 1, `${replica.name} holds one session`);
      }
      const refusedTotal = (await Promise.all(fleet.replicas.map((r) => metric(r.sidecar, 'mcp_limit_rejections_total', { limit: 'sessions' })))).reduce((a, b) => a + b, 0);
      assert.ok(refusedTotal >= 4, `each refusal counted at the replica that refused (2 new sessions × 2 replicas): ${refusedTotal}`);
      // Held sessions still work.
      for (const client of clients) assert.equal((await client.call()).count, 2);

      // The client ends its session (DELETE): its replica has room again.
      const ended = clients.shift()!;
      await (ended.transport as StreamableHTTPClientTransport).terminateSession();
      await ended.client.close();
      const next = await connectClient({ transport: 'streamable', dispatchers: fleet.dispatchers, via, index: 3 });
      clients.push(next);
      assert.equal((await next.call()).replica, ended.outcome.replicas[0], 'the freed replica took the new session');
    } finally {
      for (const client of clients) {
        await (client.transport as StreamableHTTPClientTransport).terminateSession().catch(() => {});
        await client.client.close().catch(() => {});
      }
    }
    assert.equal((await openSessions(fleet)).streamable, 0);
  });

  test('HTTP+SSE: an open stream is a session; over the limit the stream is refused and cut; closing one makes room', async () => {
    const fleet = started();
    const via = fleet.callers[0]!;
    const streams = [await openRawSse(fleet.dispatchers, via), await openRawSse(fleet.dispatchers, via)];
    try {
      assert.equal((await openSessions(fleet)).sse, 2);
      await assert.rejects(openRawSse(fleet.dispatchers, via), /GET \/sse: 503 .*SESSION_LIMIT/);
      // The cut reaches the app a moment after the refusal reached the client.
      await until(async () => (await openSessions(fleet)).sse === 2, { message: 'the refused stream was cut, so its app dropped the session' });
      streams.shift()!.close();
      // The cut travels client → client sidecar → link → replica sidecar, which then stops counting it.
      const held = async () => (await Promise.all(fleet.replicas.map((r) => metric(r.sidecar, 'mcp_sessions_held')))).reduce((a, b) => a + b, 0);
      await until(async () => (await held()) === 1, { message: 'the closed stream stopped counting' });
      const reopened = await openRawSse(fleet.dispatchers, via);
      streams.push(reopened);
    } finally {
      for (const s of streams) s.close();
    }
  });
});
