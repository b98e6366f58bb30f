// The open-proxy guard against names that resolve to forbidden addresses: a test hosts file,
// bind-mounted over /etc/hosts in private network and mount namespaces (`unshare -n -m`: the
// machine's own files and network are untouched), makes the system resolver the sidecar uses answer
// loopback, metadata and private addresses for ordinary-looking names. With egress.allow ["*"], every name is
// refused with 403 EGRESS_NOT_ALLOWED, naming the address it resolved to, and a trap on each of those
// addresses sees no connection. Skipped, saying why, where such namespaces cannot be made.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import type { NamesResult } from '../helpers/egress-names-scenario.ts';
import { NODE, REPO_ROOT } from '../helpers/sidecar-process.ts';

const SCENARIO = path.join(REPO_ROOT, 'test/helpers/egress-names-scenario.ts');
/** What the test resolver answers: each name stands for an address egress must never dial. */
const NAMES: Readonly<Record<string, string>> = {
  'loop.test': '127.0.0.1',
  'other-loop.test': '127.0.0.2',
  'loop6.test': '::1',
  'metadata.test': '169.254.169.254',
  'ecs-credentials.test': '169.254.170.2',
  'unspecified.test': '0.0.0.0',
  'alibaba-metadata.test': '100.100.100.200',
  'private.test': '10.203.0.5',
};
const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-egress-names-'));
const hosts = path.join(dir, 'hosts');
writeFileSync(hosts, Object.entries(NAMES).map(([name, address]) => `${address} ${name}\n`).join(''));
const NAMESPACE = `ip link set lo up && ip addr add 169.254.169.254/32 dev lo && ip addr add 169.254.170.2/32 dev lo && ip addr add 100.100.100.200/32 dev lo && ip addr add 10.203.0.5/32 dev lo && mount --bind "${hosts}" /etc/hosts`;
const probe = spawnSync('unshare', ['-n', '-m', 'sh', '-c', `${NAMESPACE} && getent hosts metadata.test`], { encoding: 'utf8' });
const skip = probe.status === 0 && probe.stdout.includes('169.254.169.254') ? false
  : `cannot make private network and mount namespaces with a test hosts file here (unshare -n -m: ${(probe.stderr || probe.error?.message || probe.stdout || '').trim()})`;

describe('egress with allow ["*"] never reaches a forbidden address through a name', { timeout: 60_000, skip }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = skip ? undefined : spawnSync('unshare', ['-n', '-m', 'sh', '-c', `${NAMESPACE} && exec "${NODE}" "${SCENARIO}"`], {
    encoding: 'utf8', timeout: 45_000, cwd: REPO_ROOT, env: { ...process.env, EGRESS_TEST_NAMES: JSON.stringify(NAMES) },
  });
  const result = (): NamesResult => {
    assert.equal(run!.status, 0, `scenario failed: ${run!.stderr}`);
    return JSON.parse(run!.stdout.trim().split('\n').at(-1)!) as NamesResult;
  };

  test('each name, in absolute form, by Host and with CONNECT: 403 EGRESS_NOT_ALLOWED naming the address it resolved to; the trap sees nothing', () => {
    const { answers, trapped } = result();
    assert.equal(answers.length, Object.keys(NAMES).length * 2 * 3, 'every request was answered');
    const wrong = answers.filter((a) => a.status !== 403 || a.code !== 'EGRESS_NOT_ALLOWED').map((a) => `${a.request} → ${a.status} ${a.code}`);
    assert.deepEqual(wrong, []);
    // The refusal is for the address the resolver gave, not because the name did not resolve.
    for (const answer of answers) assert.ok(answer.message.includes(`resolves to ${NAMES[answer.name]}`), `${answer.request}: ${answer.message}`);
    assert.equal(trapped, 0, 'connections the trap saw');
  });

  test('the refusal\'s log line names the host, the address it resolved to and its class', () => {
    assert.deepEqual(result().refusalLog, { host: 'metadata.test', address: '169.254.169.254', refused: 'metadata' });
  });
});
