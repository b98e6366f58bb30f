// Egress to hosts outside the mesh, for real: an external server on an address that is not loopback
// (10.203.0.1, added to the loopback device of a private network namespace — `unshare -n`, so the
// machine's own network is untouched), and a sidecar that allows it. Skipped, saying why, where a
// network namespace cannot be made.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { NODE, REPO_ROOT } from '../helpers/sidecar-process.ts';

const SCENARIO = path.join(REPO_ROOT, 'test/helpers/egress-scenario.ts');
const NETNS = 'ip link set lo up && ip addr add 10.203.0.1/32 dev lo';
const probe = spawnSync('unshare', ['-n', 'sh', '-c', NETNS], { encoding: 'utf8' });
const skip = probe.status === 0 ? false : `cannot make a private network namespace here (unshare -n: ${(probe.stderr || probe.error?.message || '').trim()})`;

describe('egress to hosts outside the mesh', { timeout: 60_000, skip }, () => {
  test('an allowed host is reached with metrics; unlisted hosts, loopback and metadata addresses are refused with a code', () => {
    const run = spawnSync('unshare', ['-n', 'sh', '-c', `${NETNS} && exec "${NODE}" "${SCENARIO}"`], { encoding: 'utf8', timeout: 45_000, cwd: REPO_ROOT });
    assert.equal(run.status, 0, `scenario failed: ${run.stderr}`);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, { status: number; code: string | null; external: string | null; body: string }> & { seen: string[]; metricsLine: string | null };
    assert.deepEqual(result.allowed && { status: result.allowed.status, external: result.allowed.external, body: result.allowed.body }, { status: 200, external: 'yes', body: 'from outside' });
    assert.match(result.seen[0]!, /^GET \/hello\?x=1 host=10\.203\.0\.1:\d+$/, 'the external host got the request as sent');
    assert.equal(result.seen.length, 1, 'only the allowed call reached it');
    assert.deepEqual([result.notListed!.status, result.notListed!.code], [403, 'EGRESS_NOT_ALLOWED']);
    assert.match(result.notListed!.body, /egress\.allow/, 'the error says how to allow it');
    assert.deepEqual([result.loopbackName!.status, result.loopbackName!.code], [403, 'EGRESS_NOT_ALLOWED'], 'listed, but loopback: never');
    assert.deepEqual([result.metadata!.status, result.metadata!.code], [403, 'EGRESS_NOT_ALLOWED'], 'listed, but the metadata address: never');
    assert.match(result.metricsLine ?? '', /service="egress:10\.203\.0\.1".*code="200"/, 'counted like any call');
  });
});
