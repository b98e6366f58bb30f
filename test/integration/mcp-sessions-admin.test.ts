// MCP session affinity seen from the admin API and the metrics, with a minimal MCP-like app (raw
// HTTP): a bound session, a request routed to its owner, an owner that is gone.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { OwnerTokens } from '../../sidecar/src/affinity/token.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

const KEY = 'admin-test-key-0123456789abcdef0123';

describe('MCP sessions in /sessions and /metrics', { timeout: 30_000 }, () => {
  let app: Server;
  const seenSessionIds: (string | undefined)[] = [];
  let replica: SidecarProcess;
  let caller: SidecarProcess;

  before(async () => {
    // Answers `initialize` (no session yet) with a new session id, and records the id of later calls.
    app = createServer((req, res) => {
      req.resume();
      const id = req.headers['mcp-session-id'] as string | undefined;
      seenSessionIds.push(id);
      res.writeHead(200, { 'content-type': 'application/json', ...(id ? {} : { 'mcp-session-id': 'session-1' }) });
      res.end('{"jsonrpc":"2.0","result":{},"id":1}');
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const extra = { mcp: { tokenKey: KEY } };
    replica = await SidecarProcess.start({ config: sidecarConfig({ service: 'tools', appPort: (app.address() as AddressInfo).port, extra }) });
    caller = await SidecarProcess.start({ config: sidecarConfig({ service: 'agent', appPort: 1, peers: { tools: [replica.inboundAddress] }, extra }) });
    await caller.waitForLog((l) => l.msg === 'link ready');
  });
  after(async () => {
    await Promise.all([caller?.stop(), replica?.stop()]);
    app?.close();
  });

  const post = (headers: Record<string, string> = {}) =>
    request(`${caller.outboundUrl}/mcp`, { method: 'POST', headers: { host: 'tools', 'content-type': 'application/json', ...headers }, body: '{"jsonrpc":"2.0","method":"initialize","id":1}' });
  const admin = async (path: string) => (await request(`http://127.0.0.1:${caller.ports.admin}${path}`)).body.text();

  test('bound, routed and owner-gone are counted per service', async () => {
    const first = await post();
    await first.body.dump();
    const token = first.headers['mcp-session-id'] as string;
    assert.deepEqual(new OwnerTokens(KEY).unwrap(token), { address: replica.inboundAddress, sessionId: 'session-1' });

    const second = await post({ 'mcp-session-id': token });
    await second.body.dump();
    assert.equal(second.statusCode, 200);
    assert.equal(seenSessionIds.at(-1), 'session-1', 'the app got its own session id back');

    const orphan = new OwnerTokens(KEY).wrap({ address: '127.0.0.1:1', sessionId: 'session-9' });
    const gone = await post({ 'mcp-session-id': orphan });
    assert.equal(gone.statusCode, 404);
    assert.equal(gone.headers['mcp-mesh-error'], 'SESSION_OWNER_GONE');
    assert.equal((await gone.body.json() as { error: { code: number } }).error.code, -32001);

    assert.deepEqual(JSON.parse(await admin('/sessions')), { 'tools.default': { bound: 1, routed: 2, ownerGone: 1 } });
    const metrics = await admin('/metrics');
    assert.match(metrics, /^mcp_sessions_bound_total\{service="tools\.default"\} 1$/m);
    assert.match(metrics, /^mcp_session_requests_routed_total\{service="tools\.default"\} 2$/m);
    assert.match(metrics, /^mcp_session_owner_gone_total\{service="tools\.default"\} 1$/m);
  });
});
