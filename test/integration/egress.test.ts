// Egress to hosts outside the mesh, for real: a host outside on an address that is not loopback
// (10.203.0.1, in a network namespace of its own joined by a veth pair to the sidecars' — `unshare
// -n`, so the machine's own network is untouched), cloud metadata addresses on the sidecars' loopback
// with a trap counting connections, and sidecars with different egress.allow lists. Skipped, saying
// why, where a network namespace cannot be made.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { NODE, REPO_ROOT } from '../helpers/sidecar-process.ts';

const SCENARIO = path.join(REPO_ROOT, 'test/helpers/egress-scenario.ts');
const NETNS = 'ip link set lo up && ip addr add 169.254.169.254/32 dev lo && ip addr add 169.254.170.2/32 dev lo';
const probe = spawnSync('unshare', ['-n', 'sh', '-c', `${NETNS} && ip link add probe-a type veth peer name probe-b`], { encoding: 'utf8' });
const skip = probe.status === 0 ? false : `cannot make private network namespaces joined by veth here (unshare -n: ${(probe.stderr || probe.error?.message || '').trim()})`;

interface Answer { status: number; code: string | null; external: string | null; body: string }
interface Result {
  allowed: Answer; notListed: Answer; loopbackName: Answer; metadata: Answer; ranged: Answer;
  anyNotRefused: string[]; privateNotNamed: string[]; rangedTunnel: string; trapped: number;
  allowedLog: unknown; rangedTunnelLog: unknown; seen: string[]; metricsLine: string | null;
}

describe('egress to hosts outside the mesh', { timeout: 90_000, skip }, () => {
  const run = skip ? undefined : spawnSync('unshare', ['-n', 'sh', '-c', `${NETNS} && exec "${NODE}" "${SCENARIO}"`], { encoding: 'utf8', timeout: 75_000, cwd: REPO_ROOT });
  const result = (): Result => {
    assert.equal(run!.status, 0, `scenario failed: ${run!.stderr}`);
    return JSON.parse(run!.stdout.trim().split('\n').at(-1)!) as Result;
  };

  test('an allowed host is reached with metrics and a log line naming the address dialled; unlisted hosts, loopback and metadata addresses are refused with a code', () => {
    const r = result();
    assert.deepEqual({ status: r.allowed.status, external: r.allowed.external, body: r.allowed.body }, { status: 200, external: 'yes', body: 'from outside' });
    assert.match(r.seen[0]!, /^GET \/hello\?x=1 host=10\.203\.0\.1:\d+$/, 'the external host got the request as sent');
    assert.deepEqual([r.notListed.status, r.notListed.code], [403, 'EGRESS_NOT_ALLOWED']);
    assert.match(r.notListed.body, /egress\.allow/, 'the error says how to allow it');
    assert.deepEqual([r.loopbackName.status, r.loopbackName.code], [403, 'EGRESS_NOT_ALLOWED'], 'listed, but loopback: never');
    assert.deepEqual([r.metadata.status, r.metadata.code], [403, 'EGRESS_NOT_ALLOWED'], 'listed, but the metadata address: never');
    assert.match(r.metadata.body, /169\.254\.169\.254, a cloud metadata address \(metadata\)/);
    assert.match(r.metricsLine ?? '', /service="egress:10\.203\.0\.1".*code="200"/, 'counted like any call');
    assert.deepEqual(r.allowedLog, { host: '10.203.0.1', address: '10.203.0.1' });
  });

  test('with "*": metadata, NAT64 / 6to4 / IPv4-compatible loopback and the pod\'s own address are refused in every spelling, by GET and CONNECT, and the trap sees nothing', () => {
    const r = result();
    assert.deepEqual(r.anyNotRefused, []);
    assert.equal(r.trapped, 0, 'connections that reached the trap');
  });

  test('a private address: refused under "*" alone, reached when a CIDR entry names it (GET and CONNECT, any spelling)', () => {
    const r = result();
    assert.deepEqual(r.privateNotNamed, []);
    assert.deepEqual([r.ranged.status, r.ranged.body], [200, 'from outside']);
    assert.match(r.rangedTunnel, /^HTTP\/1\.1 200 OK\r\n[\s\S]*from outside$/, 'the tunnel carried a request to the outside host');
    assert.deepEqual(r.rangedTunnelLog, { host: '0xa.0xcb.0.1', address: '10.203.0.1' });
    assert.deepEqual(r.seen.slice(1), [`GET /ranged host=[::ffff:acb:1]:${r.seen[0]!.split(':').at(-1)}`, `GET /tunnel host=10.203.0.1:${r.seen[0]!.split(':').at(-1)}`], 'only the named calls reached it');
  });
});
