// Node and V8 settings for the long-running sidecar, applied by re-executing the same process image
// (process.execve: same pid, so tini, Kubernetes and signal handling see no difference) before any
// module of the sidecar is loaded. Plain JavaScript on purpose: it runs before TypeScript support is.
//
// Why (measured at 1,000 req/s with 1 KiB bodies through two sidecars; README "Performance"):
//   --max-semi-space-size=SEMI_SPACE_MB  V8 lets the young generation grow to 2 × 64 MB on a machine
//     with a few GB of memory. A sidecar allocates tens of MB per second, nearly all of it dead within
//     a call, so the young generation grew to its maximum and stayed resident: 60-100 MB of RSS that
//     only ever holds garbage. Capped, a scavenge runs more often (about 12 a second at 1,000 req/s,
//     1-1.5 ms each, copying only what is in flight), and more objects reach the old generation, so
//     its collections come more often too: a few % more CPU and a few ms on the p99 for ~130 MB
//     less RSS. 16 MB halves the old-generation collections for 30 MB more.
//   MALLOC_ARENA_MAX=2  glibc gives each thread (V8's GC and compiler workers, libuv's pool) a malloc
//     arena of its own; two are plenty for one event loop and save about 10 MB of RSS.
//   js-cache.js  the sources are served with their types already stripped, so Node's TypeScript
//     stripper (about 30 MB once loaded) is never loaded in the sidecar process.
// A value the operator set (on the command line, in NODE_OPTIONS, or MALLOC_ARENA_MAX in the
// environment) is kept. MCP_MESH_RUNTIME_TUNING=off skips all of this.
import { prepareJsCache, useJsCache } from './js-cache.js';

/** Each of the two semi-spaces of V8's young generation, in MB. */
const SEMI_SPACE_MB = 4;

const MARKER = 'MCP_MESH_RUNTIME_TUNED';

/**
 * `mcp-mesh sidecar` re-executes itself once with the settings above (and never returns from the
 * first call); in the re-executed process it installs the stripped-sources hook. Anything else
 * (another command, a platform without execve, tuning off) returns at once and changes nothing.
 */
export function tuneRuntime(argv = process.argv, env = process.env) {
  if (argv[2] !== 'sidecar' || env.MCP_MESH_RUNTIME_TUNING === 'off') return;
  if (env[MARKER] === '1') {
    useJsCache();
    return;
  }
  if (typeof process.execve !== 'function') return;
  prepareJsCache();
  const set = `${process.execArgv.join(' ')} ${env.NODE_OPTIONS ?? ''}`;
  const flags = set.includes('--max-semi-space-size') ? [] : [`--max-semi-space-size=${SEMI_SPACE_MB}`];
  const nextEnv = { ...env, [MARKER]: '1', MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? '2' };
  try {
    process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...argv.slice(1)], nextEnv);
  } catch {
    // Not fatal: the sidecar runs with Node's defaults (more memory, longer GC pauses).
  }
}
