// The MCP server app of sidecar/src/demo/mcp-server.ts (official SDK, both transports, a `whoami`
// tool, GET /stats) run as its own process, so a test can SIGKILL one replica. Started by
// mcp-server-app.ts:
//
//   node test/helpers/mcp-server-main.ts --name mcp-0 --allowed-hosts mcp,localhost,127.0.0.1
//
// On start the process prints one JSON line {"msg":"listening","port":N} on stdout.
import { parseArgs } from 'node:util';
import { startMcpServer } from '../../sidecar/src/demo/mcp-server.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'mcp' },
    'allowed-hosts': { type: 'string', default: 'mcp,localhost,127.0.0.1' },
    port: { type: 'string', default: '0' },
  },
});
const app = await startMcpServer({
  replica: values.name!,
  allowedHosts: values['allowed-hosts']!.split(',').map((h) => h.trim()).filter(Boolean),
  port: Number(values.port),
});
process.stdout.write(`${JSON.stringify({ msg: 'listening', replica: app.replica, port: app.port })}\n`);
// SSE streams stay open; a polite stop should not wait for them.
process.on('SIGTERM', () => { void app.close().then(() => process.exit(0)); });
