// npm run proto:types — generate the TypeScript types of mcp.proto's messages into generated/ with
// @grpc/proto-loader's generator (a dev dependency): interfaces, and `as const` objects for the enums
// (erasable syntax, so Node runs them as they are). codec.ts derives the wire types from them. Run
// it after changing mcp.proto; test/unit/mcp/proto-types.test.ts fails until generated/ matches.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const PROTO_FILE = 'sidecar/src/mcp/mcp.proto';
export const GENERATED_DIR = fileURLToPath(new URL('./generated/', import.meta.url));
const GENERATOR = path.join(REPO_ROOT, 'node_modules/.bin/proto-loader-gen-types');

/** Replace `outDir` with the types generated from mcp.proto. Throws with the generator's output on failure. */
export function writeProtoTypes(outDir: string): void {
  rmSync(outDir, { recursive: true, force: true });
  const run = spawnSync(process.execPath, [
    GENERATOR, '--includeComments', '--importFileExtension', '.ts', '--outDir', outDir, PROTO_FILE,
  ], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`proto-loader-gen-types failed: ${run.stderr || run.stdout || run.error?.message}`);
}

if (import.meta.main) {
  writeProtoTypes(GENERATED_DIR);
  process.stdout.write(`wrote ${path.relative(process.cwd(), GENERATED_DIR)}\n`);
}
