// Small builders for policy tests: documents from a few lines of spec, compiled sets, a logger that
// remembers what it was told, and promises for a store's next change or rejected reload.
import { parsePolicyText, type PolicyProblem } from '../../sidecar/src/policy/load.ts';
import { compilePolicies, type PolicyDefaults, type PolicyTable } from '../../sidecar/src/policy/resolve.ts';
import type { PolicyChange, PolicyLogger, PolicyStore, ReloadError } from '../../sidecar/src/policy/store.ts';
import { within } from './wait.ts';

export const DEFAULTS: PolicyDefaults = { namespace: 'default', timeouts: { connectMs: 1000, requestMs: 15000, streamIdleMs: 300000 } };

/** One policy document; `spec` is the YAML under spec: after the service line, indented by two. */
export function policy(name: string, service: string, spec = ''): string {
  return `apiVersion: mcp-mesh.io/v1\nkind: Policy\nmetadata:\n  name: ${name}\nspec:\n  service: ${service}\n${spec}`;
}

/** Documents joined with ---. */
export function documents(...docs: string[]): string {
  return docs.join('---\n');
}

/** Parse and compile texts as one set; each entry is [file name, text]. */
export function compile(files: [string, string][], defaults: PolicyDefaults = DEFAULTS): { table: PolicyTable; problems: PolicyProblem[] } {
  const parsed = files.map(([file, text]) => parsePolicyText(text, file));
  const problems = parsed.flatMap((p) => p.problems);
  const compiled = compilePolicies({ policies: parsed.flatMap((p) => p.policies) }, defaults);
  return { table: compiled.table, problems: [...problems, ...compiled.problems] };
}

/** Compile and insist that the set is valid. */
export function compileValid(files: [string, string][], defaults: PolicyDefaults = DEFAULTS): PolicyTable {
  const { table, problems } = compile(files, defaults);
  if (problems.length > 0) throw new Error(`unexpected problems: ${JSON.stringify(problems)}`);
  return table;
}

export interface LogEntry { level: 'info' | 'error'; obj: Record<string, unknown>; msg: string }

export function memoryLogger(): PolicyLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  return {
    entries,
    info: (obj, msg) => { entries.push({ level: 'info', obj: obj as Record<string, unknown>, msg }); },
    error: (obj, msg) => { entries.push({ level: 'error', obj: obj as Record<string, unknown>, msg }); },
  };
}

/** The store's next applied change (bounded, so a broken watcher fails the test instead of hanging it). */
export function nextChange(store: PolicyStore): Promise<PolicyChange> {
  return within(new Promise((resolve) => { const off = store.onChange((c) => { off(); resolve(c); }); }), 10_000, 'no policy change applied');
}

/** The store's next rejected reload. */
export function nextRejection(store: PolicyStore): Promise<ReloadError> {
  return within(new Promise((resolve) => { const off = store.onReloadError((e) => { off(); resolve(e); }); }), 10_000, 'no policy change rejected');
}
