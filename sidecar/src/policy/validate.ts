// `mcp-mesh policy validate FILE…`: the checks the sidecar makes at start-up and on every reload,
// without a sidecar. The files are checked as one set, as a sidecar given them all would load them,
// so duplicates and ties between files are found too.
import { MeshConfigSchema } from '../config/schema.ts';
import { toMs } from '../config/duration.ts';
import { formatProblem, readPolicySet } from './load.ts';
import { compilePolicies, type PolicyDefaults } from './resolve.ts';

/** A sidecar config's defaults (namespace "default", timeouts from the config schema). */
export function configDefaults(): PolicyDefaults {
  const timeouts = MeshConfigSchema.properties.timeouts.properties;
  return {
    namespace: MeshConfigSchema.properties.namespace.default as string,
    timeouts: {
      connectMs: toMs(timeouts.connect.default as string),
      requestMs: toMs(timeouts.request.default as string),
      streamIdleMs: toMs(timeouts.streamIdle.default as string),
    },
  };
}

/** Check the files and folders in `paths`: one line per valid file, one per problem. */
export function validatePolicies(paths: readonly string[], defaults: PolicyDefaults = configDefaults()): { ok: string[]; errors: string[] } {
  const set = readPolicySet(paths);
  const problems = [...set.problems, ...compilePolicies(set, defaults).problems];
  const ok = set.files
    .filter((f) => !problems.some((p) => p.file === f.file))
    .map((f) => `${f.file}: OK (${f.policies.length} ${f.policies.length === 1 ? 'policy' : 'policies'})`);
  return { ok, errors: problems.map(formatProblem) };
}
