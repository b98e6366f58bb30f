// MCP session affinity (issue 4), measured with the official @modelcontextprotocol/sdk on real
// processes: 3 replicas of an SDK server offering both transports (Streamable HTTP and HTTP+SSE),
// each behind its own sidecar, and SDK clients reaching them through a client sidecar:
//
//   30 SDK clients ─▶ client sidecar A (and B) ══MCP══▶ sidecar mcp-i ─▶ MCP server app mcp-i
//
// The failure being fixed is the "SSE/message pod split": a session is created by one replica
// (initialize, or GET /sse), and a later request of the same session that reaches another
// replica gets "session not found". The apps count what reaches them (/stats), so "no request
// reached a replica that does not hold its session" is measured at the apps, not inferred.
//
// The negative control (round-robin with affinity off) must fail: it proves these tests can.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ERROR_CODES } from '../../sidecar/src/errors/codes.ts';
import {
  connectClient, openRawSse, rawRequest, runMcpClients, summarise, tamper, whoamiRequest,
  type McpClientOutcome, type McpTransportKind, type RawResponse,
} from '../helpers/mcp-clients.ts';
import { AFFINITY_SWITCH_SUPPORTED, TOKEN_KEY_SUPPORTED, useMcpFleet, type McpFleet } from '../helpers/mcp-fleet.ts';
import type { McpAppStats } from '../helpers/mcp-server-app.ts';
import { policy } from '../helpers/policies.ts';
import { within } from '../helpers/wait.ts';

const TRANSPORTS: McpTransportKind[] = ['streamable', 'sse'];
const CLIENTS = 30;
const CALLS = 20;
/** mcp-mesh-error codes of the affinity layer (sidecar/src/errors/codes.ts). */
const OWNER_GONE = 'SESSION_OWNER_GONE';
const TOKEN_INVALID = 'SESSION_TOKEN_INVALID';

type Totals = { sessions: number; unknownSession: number; mcp: number; sse: number; messages: number; toolCalls: number; openStreamable: number };

function totals(stats: Record<string, McpAppStats>): Totals {
  const t: Totals = { sessions: 0, unknownSession: 0, mcp: 0, sse: 0, messages: 0, toolCalls: 0, openStreamable: 0 };
  for (const s of Object.values(stats)) {
    t.sessions += s.sessions.streamable + s.sessions.sse;
    t.unknownSession += s.unknownSession;
    t.mcp += s.requests.mcp;
    t.sse += s.requests.sse;
    t.messages += s.requests.messages;
    t.toolCalls += s.toolCalls;
    t.openStreamable += s.open.streamable;
  }
  return t;
}

function delta(after: Totals, before: Totals): Totals {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof Totals]])) as Totals;
}

/** Every client succeeded and was served by exactly one replica, with an unbroken call count in one app session. */
function assertSticky(outcomes: McpClientOutcome[], calls: number, label: string): void {
  const summary = summarise(outcomes);
  assert.equal(summary.ok, outcomes.length, `${label}: ${summary.failed} of ${outcomes.length} clients failed: ${JSON.stringify(summary.byError, null, 1)}`);
  for (const o of outcomes) {
    assert.equal(o.answers.length, calls, `${label}: client ${o.client} made all its calls`);
    assert.equal(o.replicas.length, 1, `${label}: client ${o.client} saw one replica, not ${o.replicas.join(', ')}`);
    assert.deepEqual(o.answers.map((a) => a.count), Array.from({ length: calls }, (_, i) => i + 1), `${label}: client ${o.client}'s calls all counted in one session`);
    assert.equal(new Set(o.answers.map((a) => a.session)).size, 1, `${label}: client ${o.client} stayed in one app session`);
  }
}

/** A mesh-made "session" refusal: 404 (or 400) with a JSON-RPC error body, and the mesh's error code. */
function assertSessionRefusal(response: RawResponse, code: string, label: string): void {
  assert.ok(response.status === 404 || (code === TOKEN_INVALID && response.status === 400), `${label}: expected 404 ${code}, got ${response.status} ${response.body}`);
  assert.equal(response.headers['mcp-mesh-error'], code, `${label}: mcp-mesh-error`);
  const body = JSON.parse(response.body) as { jsonrpc?: string; error?: { code?: unknown; message?: unknown }; id?: unknown };
  assert.equal(body.jsonrpc, '2.0', `${label}: a JSON-RPC body: ${response.body}`);
  assert.equal(typeof body.error?.code, 'number', `${label}: a JSON-RPC error code: ${response.body}`);
  assert.equal(typeof body.error?.message, 'string', `${label}: a JSON-RPC error message: ${response.body}`);
  assert.ok('id' in body, `${label}: a JSON-RPC id (null): ${response.body}`);
}

/** The headers an SDK client sends on a Streamable HTTP POST after initialize. */
function streamableHeaders(sessionId: string): Record<string, string> {
  return { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' };
}

function log(label: string, outcomes: McpClientOutcome[], elapsedMs?: number): void {
  const s = summarise(outcomes);
  console.log(`${label}: ${s.ok}/${outcomes.length} clients ok${elapsedMs === undefined ? '' : ` in ${Math.round(elapsedMs)} ms`}; sessions per replica ${JSON.stringify(s.perReplica)}`
    + (s.failed ? `; failures ${JSON.stringify(s.byError)}` : ''));
}

describe('MCP session affinity with the official SDK (3 replicas, both transports)', { timeout: 120_000 }, () => {
  const started = useMcpFleet({ replicas: 3, callers: 2 });

  for (const transport of TRANSPORTS) {
    test(`${transport}: ${CLIENTS} concurrent SDK clients × ${CALLS} tool calls: 100% success, each session on one replica`, async () => {
      const fleet = started();
      const before = totals(await fleet.stats());
      const t0 = performance.now();
      const { outcomes } = await runMcpClients({ transport, clients: CLIENTS, calls: CALLS, dispatchers: fleet.dispatchers, via: fleet.callers[0]! });
      log(`affinity ${transport}`, outcomes, performance.now() - t0);
      assertSticky(outcomes, CALLS, transport);
      const perReplica = summarise(outcomes).perReplica;
      assert.equal(Object.keys(perReplica).length, fleet.replicas.length, `sessions spread over every replica: ${JSON.stringify(perReplica)}`);
      const seen = delta(totals(await fleet.stats()), before);
      assert.equal(seen.unknownSession, 0, 'no request reached a replica that does not hold its session (and every id reached the app as the app issued it)');
      assert.equal(seen.sessions, CLIENTS, 'one app session per client');
      assert.equal(seen.toolCalls, CLIENTS * CALLS);
      if (transport === 'streamable') assert.equal(seen.openStreamable, 0, 'each DELETE reached the session\'s owner and ended it');
    });
  }

  test('a session begun through client sidecar A continues through client sidecar B', async () => {
    const fleet = started();
    const [a, b] = fleet.callers as [typeof fleet.callers[0], typeof fleet.callers[0]];
    if (!TOKEN_KEY_SUPPORTED) console.log('note: the sidecar config has no mcp.tokenKey yet, so A and B share no token key');
    const before = totals(await fleet.stats());
    // Streamable HTTP: the client's requests alternate between the two sidecars (initialize via A).
    const streamable = await runMcpClients({
      transport: 'streamable', clients: 10, calls: 10, dispatchers: fleet.dispatchers,
      via: ({ n }) => (n % 2 === 0 ? a : b),
    });
    // HTTP+SSE: the stream (GET /sse) through A, every POST /messages through B.
    const sse = await runMcpClients({
      transport: 'sse', clients: 10, calls: 10, dispatchers: fleet.dispatchers,
      via: ({ method }) => (method === 'GET' ? a : b),
    });
    log('two client sidecars, streamable', streamable.outcomes);
    log('two client sidecars, sse', sse.outcomes);
    assertSticky(streamable.outcomes, 10, 'streamable via A and B');
    assertSticky(sse.outcomes, 10, 'sse via A and B');
    for (const o of [...streamable.outcomes, ...sse.outcomes]) {
      assert.deepEqual(new Set(o.trace.map((t) => t.via)), new Set([a.name, b.name]), `client ${o.client} used both sidecars`);
    }
    assert.equal(delta(totals(await fleet.stats()), before).unknownSession, 0);
  });

  test('a tampered owner token is refused and reaches no app', async () => {
    const fleet = started();
    const a = fleet.callers[0]!;
    // A genuine session, and the token the client holds for it.
    const genuine = await connectClient({ transport: 'streamable', dispatchers: fleet.dispatchers, via: a });
    try {
      const first = await genuine.call();
      const token = genuine.outcome.sessionId!;
      assert.ok(token, 'the client got a session id');
      const forgeries = [...new Set([Math.floor(token.length / 3), Math.floor(token.length / 2), Math.floor((2 * token.length) / 3), -1])].map((p) => tamper(token, p));
      const before = totals(await fleet.stats());
      for (const forged of forgeries) {
        const response = await rawRequest(fleet.dispatchers, a, 'http://mcp/mcp', { method: 'POST', headers: streamableHeaders(forged), body: whoamiRequest() });
        assertSessionRefusal(response, TOKEN_INVALID, `Streamable HTTP, token ${forged}`);
      }
      // The same through the SDK: a client holding a tampered session id (it does not re-initialize).
      const forgedClient = await connectClient({ transport: 'streamable', dispatchers: fleet.dispatchers, via: a, index: 1, sessionId: forgeries[0] });
      try {
        await assert.rejects(forgedClient.call(), 'the SDK client with a tampered session id is refused');
        assert.ok(forgedClient.outcome.status === 404 || forgedClient.outcome.status === 400, `refused with 404 (or 400): ${forgedClient.outcome.status} ${forgedClient.outcome.error}`);
      } finally {
        await forgedClient.client.close();
      }
      // HTTP+SSE: the endpoint event names /messages?sessionId=<token>; POSTs to a tampered one are refused.
      const stream = await openRawSse(fleet.dispatchers, a);
      try {
        const sessionParam = stream.endpoint.searchParams.get('sessionId') ?? stream.endpoint.searchParams.get('session_id');
        assert.ok(sessionParam, `the endpoint event names a session: ${stream.endpoint.href}`);
        const name = stream.endpoint.searchParams.has('sessionId') ? 'sessionId' : 'session_id';
        const beforeSse = totals(await fleet.stats());
        for (const p of [Math.floor(sessionParam.length / 2), -1]) {
          const forgedUrl = new URL(stream.endpoint);
          forgedUrl.searchParams.set(name, tamper(sessionParam, p));
          const response = await rawRequest(fleet.dispatchers, a, forgedUrl.href, { method: 'POST', headers: { 'content-type': 'application/json' }, body: whoamiRequest() });
          assertSessionRefusal(response, TOKEN_INVALID, `HTTP+SSE, ${forgedUrl.search}`);
        }
        assert.equal(delta(totals(await fleet.stats()), beforeSse).messages, 0, 'no tampered POST /messages reached any app');
        // The genuine endpoint still works, so the refusals above were about the token.
        const ok = await rawRequest(fleet.dispatchers, a, stream.endpoint.href, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) });
        assert.equal(ok.status, 202, `the untampered endpoint accepts a message: ${ok.status} ${ok.body}`);
      } finally {
        stream.close();
      }
      const seen = delta(totals(await fleet.stats()), before);
      assert.equal(seen.mcp, 0, 'no tampered Streamable HTTP request reached any app');
      assert.equal(seen.unknownSession, 0);
      // The genuine session is unharmed.
      const second = await genuine.call();
      assert.deepEqual([second.replica, second.count], [first.replica, 2]);
    } finally {
      await genuine.client.close();
    }
  });

  test('negative control: round-robin with affinity off fails for most clients on both transports', async () => {
    const fleet = started();
    if (!AFFINITY_SWITCH_SUPPORTED) console.log('note: policies have no mcp.affinity switch yet; the control runs with round-robin alone');
    const spec = `  loadBalancer: { policy: round-robin }\n${AFFINITY_SWITCH_SUPPORTED ? '  mcp: { affinity: false }\n' : ''}`;
    await fleet.writePolicy('mcp.yaml', policy('mcp-no-affinity', 'mcp', spec));
    try {
      for (const transport of TRANSPORTS) {
        const before = totals(await fleet.stats());
        const t0 = performance.now();
        const { outcomes } = await runMcpClients({ transport, clients: CLIENTS, calls: CALLS, dispatchers: fleet.dispatchers, via: fleet.callers[0]!, requestTimeoutMs: 5000 });
        log(`negative control (round-robin, affinity off) ${transport}`, outcomes, performance.now() - t0);
        const failed = outcomes.filter((o) => !o.ok);
        assert.ok(failed.length >= (2 * CLIENTS) / 3, `${transport}: round-robin without affinity must break most sessions; ${failed.length} of ${CLIENTS} failed`);
        const notFound = failed.filter((o) => o.status === 404).length;
        assert.ok(notFound >= failed.length / 2, `${transport}: the failures are "session not found" (404): ${JSON.stringify(summarise(outcomes).byError)}`);
        assert.ok(delta(totals(await fleet.stats()), before).unknownSession >= failed.length, `${transport}: the apps answered "session not found" to requests of sessions they do not hold`);
      }
    } finally {
      await fleet.removePolicy('mcp.yaml');
    }
  });

  test('a 4th replica added during a run: no existing session fails; new sessions reach it', async () => {
    const fleet = started();
    let release!: () => void;
    const resume = new Promise<void>((resolve) => { release = resolve; });
    const waiting = TRANSPORTS.map(() => { let reached!: () => void; const promise = new Promise<void>((r) => { reached = r; }); return { promise, reached }; });
    // Half the calls, then every client waits while the replica is added, then the other half.
    const runs = TRANSPORTS.map((transport, i) => runMcpClients({
      transport, clients: CLIENTS / 2, calls: CALLS, dispatchers: fleet.dispatchers, via: fleet.callers[0]!,
      pause: { beforeCall: CALLS / 2, until: resume, reached: waiting[i]!.reached },
    }));
    let added: McpFleet['replicas'][number];
    try {
      await within(Promise.all(waiting.map((w) => w.promise)), 30_000, 'the clients did not reach the middle of the run');
      added = await fleet.addReplica();
    } finally {
      release();
    }
    const [streamable, sse] = await Promise.all(runs);
    assertSticky(streamable!.outcomes, CALLS, 'streamable across the scale-up');
    assertSticky(sse!.outcomes, CALLS, 'sse across the scale-up');
    for (const o of [...streamable!.outcomes, ...sse!.outcomes]) assert.notEqual(o.replicas[0], added.name, 'a session begun before the scale-up stays where it began');

    const fresh = await Promise.all(TRANSPORTS.map((transport) => runMcpClients({ transport, clients: CLIENTS, calls: 2, dispatchers: fleet.dispatchers, via: fleet.callers[0]! })));
    fresh.forEach((run, i) => {
      log(`after scale-up, new ${TRANSPORTS[i]} sessions`, run.outcomes);
      assertSticky(run.outcomes, 2, `new ${TRANSPORTS[i]} sessions`);
    });
    const onNew = fresh.flatMap((r) => r.outcomes).filter((o) => o.replicas[0] === added.name).length;
    assert.ok(onNew >= 1, `new sessions reach the new replica (${onNew} of ${2 * CLIENTS})`);
  });

  test('owner replica killed: its clients get 404 with a JSON-RPC error; a fresh client succeeds on another replica', async () => {
    const fleet = started();
    const a = fleet.callers[0]!;
    // Sessions on every replica, both transports, each with one call made; kept open.
    const runs = await Promise.all(TRANSPORTS.map((transport) => runMcpClients({
      transport, clients: 12, calls: 1, dispatchers: fleet.dispatchers, via: a, keepOpen: true, terminate: false,
    })));
    try {
      runs.forEach((run, i) => assertSticky(run.outcomes, 1, `${TRANSPORTS[i]} before the kill`));
      const owned = (name: string, i: number) => runs[i]!.live.filter((c) => c.outcome.replicas[0] === name).length;
      // The victim: a live replica owning sessions of both transports (the most of them).
      const victim = fleet.replicas.filter((r) => !r.killed)
        .map((r) => ({ r, score: Math.min(owned(r.name, 0), owned(r.name, 1)) }))
        .sort((x, y) => y.score - x.score)[0]!;
      assert.ok(victim.score >= 1, 'some replica owns sessions of both transports');
      await fleet.kill(victim.r);

      for (const [i, run] of runs.entries()) {
        const results = await Promise.all(run.live.map(async (c) => {
          try {
            const answer = await c.call();
            return { owner: c.outcome.replicas[0], ok: true as const, answer };
          } catch {
            return { owner: c.outcome.replicas[0], ok: false as const, status: c.outcome.status, error: c.outcome.error };
          }
        }));
        for (const r of results) {
          if (r.owner === victim.r.name) {
            assert.equal(r.ok, false, `${TRANSPORTS[i]}: a session of the killed replica must not move silently to another`);
            assert.equal(r.ok ? 0 : r.status, 404, `${TRANSPORTS[i]}: the killed owner's client gets 404: ${r.ok ? '' : r.error}`);
          } else {
            assert.ok(r.ok, `${TRANSPORTS[i]}: a session on a surviving replica goes on: ${r.ok ? '' : r.error}`);
            assert.deepEqual([r.answer.replica, r.answer.count], [r.owner, 2]);
          }
        }
      }
      // What exactly the client got: 404, a JSON-RPC error body, and the mesh's code.
      const orphan = runs[0]!.live.find((c) => c.outcome.replicas[0] === victim.r.name)!;
      const response = await rawRequest(fleet.dispatchers, a, 'http://mcp/mcp', { method: 'POST', headers: streamableHeaders(orphan.outcome.sessionId!), body: whoamiRequest() });
      assertSessionRefusal(response, OWNER_GONE, 'Streamable HTTP, owner gone');
      const orphanSse = runs[1]!.live.find((c) => c.outcome.replicas[0] === victim.r.name)!;
      const endpoint = orphanSse.outcome.trace.find((t) => t.method === 'POST')!.url;
      const sseResponse = await rawRequest(fleet.dispatchers, a, endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: whoamiRequest() });
      assertSessionRefusal(sseResponse, OWNER_GONE, 'HTTP+SSE, owner gone');

      // A fresh client (what an SDK user does after a 404: a new Client) succeeds on a survivor.
      for (const transport of TRANSPORTS) {
        const { outcomes } = await runMcpClients({ transport, clients: 3, calls: 3, dispatchers: fleet.dispatchers, via: a });
        assertSticky(outcomes, 3, `fresh ${transport} clients after the kill`);
        for (const o of outcomes) assert.notEqual(o.replicas[0], victim.r.name);
      }
    } finally {
      await Promise.all(runs.map((r) => r.close()));
    }
  });
});

test('the affinity error codes used here are in the error table', { skip: !(OWNER_GONE in ERROR_CODES) && 'the affinity codes are not in sidecar/src/errors/codes.ts yet' }, () => {
  for (const code of [OWNER_GONE, TOKEN_INVALID]) {
    assert.ok(code in ERROR_CODES, `${code} is a mesh error code`);
    assert.equal((ERROR_CODES as Record<string, { status: number }>)[code]!.status, 404);
  }
});
