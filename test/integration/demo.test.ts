// `mcp-mesh demo` (what `npm start` runs), as a user runs it: a child process that must finish, exit
// 0, and print a summary naming every service, with no unexpected errors, and the MCP section: the
// same SDK clients with affinity (all must succeed) and without (round-robin). The demo bounds its own
// load and MCP section (it fails itself past their deadlines); the test only bounds the wait.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { within } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/mcp-mesh.js', import.meta.url));

/** One run of the demo, shared by the tests below (it takes about 15 s alone, longer beside other tests). */
let run: Promise<{ code: number | null; stdout: string; stderr: string }> | undefined;
const demo = () => (run ??= runDemo());
/** A limit on the wait, not a measurement: a demo that hangs is stopped and fails the tests. */
const DEMO_LIMIT_MS = 80_000;

async function runDemo(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = once(child, 'exit') as Promise<[number | null]>;
  try {
    const [code] = await within(exited, DEMO_LIMIT_MS, 'the demo did not exit');
    return { code, stdout, stderr };
  } catch (err) {
    child.kill('SIGTERM'); // the demo stops its sidecars on SIGTERM
    await within(exited, 5000, 'the demo ignored SIGTERM').catch(() => child.kill('SIGKILL'));
    throw new Error(`${(err as Error).message}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`);
  }
}

test('mcp-mesh demo runs a mesh, prints a summary and exits 0', { timeout: 90_000 }, async () => {
  const { code, stdout, stderr } = await demo();
  const context = `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;

  assert.equal(code, 0, `exit code${context}`);
  assert.match(stdout, /Calls per service and replica/, context);
  for (const service of ['frontend', 'orders', 'payments', 'events']) {
    assert.match(stdout, new RegExp(`^\\s+${service}\\s+${service}-1\\s`, 'm'), `summary names ${service}${context}`);
  }
  for (const replica of ['orders-2', 'payments-2', 'events-2']) assert.match(stdout, new RegExp(`\\s${replica}\\s`), `summary names ${replica}${context}`);
  assert.match(stdout, /unexpected errors: 0\b/, context);
  assert.match(stdout, /^OK: /m, context);
  assert.doesNotMatch(stdout, /FAILED/, context);
  for (const section of ['Latency by call kind', 'p50', 'p99', 'batch sizes', 'Errors by code', 'UNKNOWN_SERVICE']) {
    assert.ok(stdout.includes(section), `summary has "${section}"${context}`);
  }
  assert.match(stdout, /SIGTERM to 12 sidecars; 12 exited with code 0/, context);
});

function mcpSection(stdout: string): string {
  const start = stdout.indexOf('\nMCP session affinity:');
  const end = stdout.indexOf('\nSidecar log lines', start);
  return start < 0 ? '' : stdout.slice(start, end < 0 ? undefined : end);
}

test('the demo\'s MCP section: the same SDK clients with affinity (every one succeeds) and without', { timeout: 90_000 }, async () => {
  const { code, stdout, stderr } = await demo();
  const mcp = mcpSection(stdout);
  const context = `\n--- MCP section ---\n${mcp}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
  assert.equal(code, 0, `exit code${context}`);
  assert.ok(mcp, `the MCP section is printed${context}`);
  assert.match(mcp, /3 replicas of an MCP server built with the official SDK \(mcp-1, mcp-2, mcp-3\)/, context);
  for (const transport of ['Streamable HTTP', 'HTTP\\+SSE']) {
    // transport, through, clients ok, failed, calls ok, replicas per client: 10 of 10 clients, 50 of 50 calls, each client on 1 replica.
    assert.match(mcp, new RegExp(`^\\s+${transport}\\s+with affinity\\s+10\\s+0\\s+50/50\\s+1 ×10\\s+-$`, 'm'), `${transport}: every client succeeded with affinity${context}`);
    assert.match(mcp, new RegExp(`^\\s+${transport}\\s+without \\(round-robin\\)\\s+\\d+\\s+\\d+\\s+\\d+/50\\s`, 'm'), `${transport}: the run without affinity is shown${context}`);
  }
  assert.match(mcp, /^MCP sessions per replica with affinity/m, context);
  assert.match(mcp, /answered by the replicas \(their own counts\): with affinity 0,/, context);
  assert.match(mcp, /^Admin \/sessions of mcp-client-affinity: \S+: bound \d+/m, context);
  assert.match(mcp, /^With affinity: all 20 clients ok, every session served by one replica\.$/m, context);
  assert.match(mcp, /^Without affinity: /m, context);
  assert.match(stdout, /^OK: /m, context);
});
