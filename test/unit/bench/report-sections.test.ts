import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replaceSection } from '../../../bench/report-sections.ts';
import { mcpHaproxyConfig, parseMcpOptions, MCP_DEFAULTS } from '../../../bench/mcp.ts';

const B = '<!-- x:begin -->';
const E = '<!-- x:end -->';

test('a report section replaces only its own part of the file', () => {
  const file = `# Report\n\nbefore\n${B}\nold\n${E}\nafter\n`;
  assert.equal(replaceSection(file, `${B}\nnew\n${E}\n`, B, E), `# Report\n\nbefore\n${B}\nnew\n${E}\nafter\n`);
});

test('a report section is appended when the file has none, and makes an empty file', () => {
  assert.equal(replaceSection('# Report\n', `${B}\nnew\n${E}\n`, B, E), `# Report\n\n${B}\nnew\n${E}\n`);
  assert.equal(replaceSection('', `${B}\nnew\n${E}\n`, B, E), `${B}\nnew\n${E}\n`);
});

test('an end marker before the begin marker is not taken for the section\'s end', () => {
  const file = `${E}\n${B}\nold\n${E}\n`;
  assert.equal(replaceSection(file, `${B}\nnew\n${E}`, B, E), `${E}\n${B}\nnew\n${E}\n`);
});

test('the HAProxy config learns the session owner from the answer and matches it on requests', () => {
  const lines = mcpHaproxyConfig('fd@3', ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']).split('\n').map((l) => l.trim());
  assert.ok(lines.includes('stick store-response res.hdr(mcp-session-id)'));
  assert.ok(lines.includes('stick match req.hdr(mcp-session-id)'));
  assert.ok(lines.some((l) => l.startsWith('stick-table type string')));
  assert.ok(lines.includes('balance roundrobin'));
  assert.equal(lines.filter((l) => l.startsWith('server ')).length, 3);
  assert.ok(lines.indexOf('stick match req.hdr(mcp-session-id)') > lines.indexOf('backend next'));
});

test('MCP bench options: defaults, --duration for both loops, one loop skipped, bad values refused', () => {
  const defaults = parseMcpOptions([], {});
  assert.equal(defaults.clients, MCP_DEFAULTS.clients);
  assert.deepEqual(defaults.transports, ['streamable', 'sse']);
  assert.equal(defaults.haproxy, true);
  const short = parseMcpOptions(['--duration', '2', '--sessions-duration', '0', '--transport', 'sse', '--no-haproxy'], {});
  assert.equal(short.callsDurationS, 2);
  assert.equal(short.sessionsDurationS, 0);
  assert.deepEqual(short.transports, ['sse']);
  assert.equal(short.haproxy, false);
  assert.equal(parseMcpOptions([], { BENCH_MCP_CLIENTS: '4' }).clients, 4);
  assert.throws(() => parseMcpOptions(['--transport', 'websocket'], {}), /unknown transport/);
  assert.throws(() => parseMcpOptions(['--clients', '0'], {}), /--clients/);
});
