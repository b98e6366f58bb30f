#!/usr/bin/env node
// Entry point of the `mcp-mesh` command. The sources are TypeScript run directly by Node 24.
import { main } from '../sidecar/src/cli.ts';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err); process.exitCode = 1; },
);
