#!/usr/bin/env node
// Entry point of the `mcp-mesh` command. The sources are TypeScript run directly by Node 24.
import { tuneRuntime } from './runtime-tuning.js';

// `mcp-mesh sidecar` re-executes itself here with its memory settings (runtime-tuning.js says why).
tuneRuntime();
const { main } = await import('../sidecar/src/cli.ts');

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err); process.exitCode = 1; },
);
