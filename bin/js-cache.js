// The sidecar's sources with their types already stripped, so that the long-running sidecar process
// never loads Node's TypeScript stripper (amaro: a WebAssembly build of swc whose code, memory and
// source stay resident once loaded, about 30 MB of the sidecar's RSS).
//
//   prepareJsCache()  before the sidecar re-executes itself (runtime-tuning.js): strips every
//                     sidecar/src/**/*.ts that has no entry yet (only then is the stripper loaded, in
//                     the process image that is about to be replaced).
//   useJsCache()      in the re-executed process: a module load hook that serves a .ts file of the
//                     package from its entry. URLs, file names and line:column positions stay those of
//                     the .ts sources (strip mode replaces types with spaces), so stack traces do too.
//
// Entries are named by the SHA-256 of the source, so an edited file simply misses and is stripped by
// Node as usual; they live in node_modules/.cache/mcp-mesh/ (the image fills it at build time). A cache
// that cannot be written or read changes nothing but memory: Node strips the file itself.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import module from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SOURCES = path.join(ROOT, 'sidecar', 'src');
/** Per Node version: its stripper made the entries. */
const CACHE_DIR = path.join(ROOT, 'node_modules', '.cache', 'mcp-mesh', `js-${process.version}`);

const entryOf = (source) => path.join(CACHE_DIR, `${createHash('sha256').update(source).digest('hex')}.js`);

/** Strips the sources that have no entry yet. Returns how many were written; never throws. */
export function prepareJsCache() {
  if (typeof module.stripTypeScriptTypes !== 'function' || typeof module.registerHooks !== 'function') return 0;
  let written = 0;
  try {
    const files = readdirSync(SOURCES, { recursive: true }).filter((file) => file.endsWith('.ts'));
    for (const file of files) {
      const source = readFileSync(path.join(SOURCES, file), 'utf8');
      const entry = entryOf(source);
      if (existsSync(entry)) continue;
      if (written === 0) mkdirSync(CACHE_DIR, { recursive: true });
      // Written aside and renamed: a sidecar starting meanwhile never reads half an entry.
      const partial = `${entry}.${process.pid}.tmp`;
      writeFileSync(partial, module.stripTypeScriptTypes(source, { mode: 'strip' }));
      renameSync(partial, entry);
      written++;
    }
  } catch {
    // Read-only or missing folder: the entries that are there are used, Node strips the rest.
  }
  return written;
}

/**
 * Serves the package's .ts files from their entries (those without one load as usual). A worker thread
 * has a module loader of its own: MCP_MESH_JS_CACHE, set here to this module's URL, tells the code that
 * starts one to call useJsCache() in it first (sidecar/src/async/store.ts does).
 */
export function useJsCache() {
  if (typeof module.registerHooks !== 'function') return;
  const prefix = new URL('..', import.meta.url).href;
  module.registerHooks({
    load(url, context, nextLoad) {
      if (url.startsWith(prefix) && url.endsWith('.ts') && !url.includes('/node_modules/')) {
        try {
          const source = readFileSync(entryOf(readFileSync(fileURLToPath(url), 'utf8')), 'utf8');
          return { format: 'module', source, shortCircuit: true };
        } catch { /* no entry: Node strips it */ }
      }
      return nextLoad(url, context);
    },
  });
  process.env.MCP_MESH_JS_CACHE = import.meta.url;
}

// `node bin/js-cache.js` fills the cache ahead of time (the image does, at build time, so that a
// sidecar whose node_modules is read-only still finds every entry).
if (import.meta.main) process.stdout.write(`stripped ${prepareJsCache()} sources into ${CACHE_DIR}\n`);
