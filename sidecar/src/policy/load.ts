// Reading policy files: files or folders → YAML documents → schema check → the rules one document
// must keep on its own. Rules that span documents (duplicates, references, values inherited from a
// service-wide policy) are checked where the documents are combined, in policy/resolve.ts.
//
// Every problem names file, line, column and the field ("spec.retries.attempts"), and all problems
// are collected rather than stopping at the first, so one `policy validate` run shows them all.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import { toMs } from '../config/duration.ts';
import { documentData, locate, locateErrors, type Position } from '../config/yaml-errors.ts';
import { PolicyDocumentSchema, type PolicyDocument, type PolicySpec } from './schema.ts';

export interface PolicyProblem {
  file: string;
  /** Undefined only when the problem is the file itself (it cannot be read). */
  at: Position | undefined;
  /** The field in words, e.g. spec.subsets[1].weight; empty for the document or file as a whole. */
  path: string;
  message: string;
}

/** `file:line:col: path: message`, the form editors and terminals turn into links. */
export function formatProblem(problem: PolicyProblem): string {
  const where = problem.at ? `${problem.file}:${problem.at.line}:${problem.at.col}` : problem.file;
  return problem.path ? `${where}: ${problem.path}: ${problem.message}` : `${where}: ${problem.message}`;
}

/** A policy set that cannot be used; `message` lists every problem, one per line. */
export class PolicyError extends Error {
  override name = 'PolicyError';
  readonly problems: readonly PolicyProblem[];
  constructor(problems: readonly PolicyProblem[]) {
    super(`policy error: ${problems.map(formatProblem).join('\n  ')}`);
    this.problems = problems;
  }
}

/** One valid policy document, with what is needed to point at its fields later. */
export interface LoadedPolicy {
  file: string;
  /** The document's place in its file, from 0. */
  index: number;
  name: string;
  spec: PolicySpec;
  /** Where a field is (keys from the document root, e.g. ['spec', 'retries']); the document start if absent. */
  at(key: readonly string[], atKey?: boolean): Position;
  /** A problem about a field of this document. */
  problem(key: readonly string[], message: string, atKey?: boolean): PolicyProblem;
}

export interface PolicyFile {
  file: string;
  /** The text as read (hot reload compares it to skip no-op changes). */
  text: string;
  /** Names of the valid policies it holds. */
  policies: string[];
}

export interface PolicySet {
  files: PolicyFile[];
  policies: LoadedPolicy[];
  problems: PolicyProblem[];
}

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validate = ajv.compile<PolicyDocument>(PolicyDocumentSchema);

/**
 * The files behind `paths`: a file as given, a folder's *.yaml / *.yml (not recursive, no dot
 * files), in name order. Names stay as given (relative ones too), so messages read as the user typed.
 */
export function policyFiles(paths: readonly string[]): { files: string[]; problems: PolicyProblem[] } {
  const files: string[] = [];
  const seen = new Set<string>();
  const problems: PolicyProblem[] = [];
  for (const given of paths) {
    let isFolder: boolean;
    try {
      isFolder = statSync(given).isDirectory();
    } catch (err) {
      problems.push({ file: given, at: undefined, path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      continue;
    }
    // Not recursive: a Kubernetes ConfigMap volume holds ..data/ and timestamped folders beside the
    // (symlinked) files, and reading them too would load every policy twice.
    const found = isFolder
      ? readdirSync(given).filter((n) => !n.startsWith('.') && /\.ya?ml$/.test(n)).sort().map((n) => path.join(given, n))
      : [given];
    for (const file of found) {
      if (seen.has(path.resolve(file))) continue;
      seen.add(path.resolve(file));
      files.push(file);
    }
  }
  return { files, problems };
}

/** Read and check every policy file behind `paths`. Never throws: problems are in the result. */
export function readPolicySet(paths: readonly string[]): PolicySet {
  const { files, problems } = policyFiles(paths);
  const set: PolicySet = { files: [], policies: [], problems };
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ file, at: undefined, path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      continue;
    }
    const parsed = parsePolicyText(text, file);
    set.files.push({ file, text, policies: parsed.policies.map((p) => p.name) });
    set.policies.push(...parsed.policies);
    problems.push(...parsed.problems);
  }
  return set;
}

/** Parse the documents of one file (separated by ---) and check each on its own. */
export function parsePolicyText(text: string, file: string): { policies: LoadedPolicy[]; problems: PolicyProblem[] } {
  const lines = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const documents = Array.isArray(parsed) ? parsed : [];
  const policies: LoadedPolicy[] = [];
  const problems: PolicyProblem[] = [];
  for (const [index, doc] of documents.entries()) {
    const parsed = documentData(doc, lines);
    if ('message' in parsed) {
      problems.push({ file, at: parsed.at, path: '', message: `invalid YAML: ${parsed.message}` });
      continue;
    }
    const data = parsed.data;
    if (doc.contents === null || data === null) continue; // an empty document (a trailing ---, only comments)
    const start = lines.linePos(doc.contents.range[0]);
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      problems.push({ file, at: start, path: '', message: 'a policy document must be a mapping with apiVersion, kind, metadata and spec' });
      continue;
    }
    const policy = loadedPolicy(file, index, doc, lines, data as PolicyDocument, start);
    if (!validate(data)) {
      problems.push(...schemaProblems(validate.errors ?? [], policy, doc, lines, data));
      continue;
    }
    const own = documentRules(policy);
    if (own.length > 0) { problems.push(...own); continue; }
    policies.push(policy);
  }
  problems.sort((a, b) => (a.at?.line ?? 0) - (b.at?.line ?? 0) || (a.at?.col ?? 0) - (b.at?.col ?? 0));
  return { policies, problems };
}

function loadedPolicy(file: string, index: number, doc: Document, lines: LineCounter, data: PolicyDocument, start: Position): LoadedPolicy {
  const at = (key: readonly string[], atKey = false) => locate(doc, key, atKey, lines) ?? start;
  return {
    file,
    index,
    name: data.metadata?.name,
    spec: data.spec,
    at,
    problem: (key, message, atKey = false) => ({ file, at: at(key, atKey), path: fieldPath(key, data), message }),
  };
}

// ---- the rules one document keeps on its own ----

function documentRules(policy: LoadedPolicy): PolicyProblem[] {
  const { spec } = policy;
  const problems: PolicyProblem[] = [];
  const fail = (key: string[], message: string, atKey = false) => problems.push(policy.problem(['spec', ...key], message, atKey));
  if (spec.route?.name === 'default') fail(['route', 'name'], '"default" is reserved for the service-wide policy; choose another name');
  const headerMaps: [string[], Record<string, string>][] = [];
  if (spec.route?.match.headers) headerMaps.push([['route', 'match', 'headers'], spec.route.match.headers]);
  for (const [i, headerRoute] of (spec.headerRoutes ?? []).entries()) headerMaps.push([['headerRoutes', String(i), 'headers'], headerRoute.headers]);
  for (const [key, headers] of headerMaps) {
    const seen = new Set<string>();
    for (const name of Object.keys(headers)) {
      if (seen.has(name.toLowerCase())) fail([...key, name], `header ${name.toLowerCase()} is listed twice (header names are case-insensitive)`, true);
      seen.add(name.toLowerCase());
    }
  }
  for (const field of ['connect', 'streamIdle'] as const) {
    const value = spec.timeouts?.[field];
    if (value !== undefined && toMs(value) === 0) fail(['timeouts', field], 'must be longer than 0');
  }
  if (spec.loadBalancer?.ewma && spec.loadBalancer.policy !== undefined && spec.loadBalancer.policy !== 'p2c-ewma') {
    fail(['loadBalancer', 'ewma'], `only applies to policy p2c-ewma, not ${spec.loadBalancer.policy}`, true);
  }
  if (spec.loadBalancer?.consistentHash && spec.loadBalancer.policy !== undefined && spec.loadBalancer.policy !== 'consistent-hash') {
    fail(['loadBalancer', 'consistentHash'], `only applies to policy consistent-hash, not ${spec.loadBalancer.policy}`, true);
  }
  const subsets = spec.subsets ?? [];
  const names = new Set<string>();
  for (const [i, subset] of subsets.entries()) {
    if (names.has(subset.name)) fail(['subsets', String(i), 'name'], `subset ${subset.name} is defined twice`);
    names.add(subset.name);
  }
  const total = subsets.reduce((sum, s) => sum + s.weight, 0);
  if (subsets.length > 0 && total !== 100) fail(['subsets'], `the weights must add up to 100; they add up to ${total}`, true);
  return problems;
}

// ---- schema errors in words ----

function schemaProblems(errors: ErrorObject[], policy: LoadedPolicy, doc: Document, lines: LineCounter, data: unknown): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  // Ajv reports a bad property name twice: as the inner check (with propertyName set) and as propertyNames.
  const relevant = oneBranchOfKeyedUnions(errors.filter((e) => (e as { propertyName?: string }).propertyName === undefined));
  for (const { key, at, error } of locateErrors(relevant, doc, lines)) {
    // A bad key name points at that key; a repeated list item at its second appearance.
    let named = key;
    let where = at;
    if (error.keyword === 'propertyNames') {
      named = [...key, String(error.params.propertyName)];
      where = locate(doc, named, true, lines);
    } else if (error.keyword === 'uniqueItems') {
      where = locate(doc, [...key, String(error.params.i)], false, lines) ?? at;
    }
    const problem: PolicyProblem = { file: policy.file, at: where ?? policy.at([]), path: fieldPath(named, data), message: phrase(error) };
    if (!out.some((o) => o.path === problem.path && o.message === problem.message)) out.push(problem);
  }
  return out;
}

/**
 * A union of single-key mappings (hashOn: { header: … } | { cookie: … } | …) fails on every branch
 * at once; only the branch named by the key written is worth reading ("source: must be true"), and
 * when no branch has that key, the union's own words ("must be one of { header: NAME }, …").
 */
function oneBranchOfKeyedUnions(errors: ErrorObject[]): ErrorObject[] {
  let kept = errors;
  for (const union of errors) {
    const branches = (union.parentSchema as { anyOf?: { properties?: Record<string, unknown> }[] } | undefined)?.anyOf;
    if (union.keyword !== 'anyOf' || !branches?.every((b) => b.properties && Object.keys(b.properties).length === 1)) continue;
    const keys = union.data !== null && typeof union.data === 'object' ? Object.keys(union.data) : [];
    const chosen = keys.length === 1 ? branches.findIndex((b) => keys[0]! in b.properties!) : -1;
    const inBranch = (e: ErrorObject, i: number) => e.schemaPath.startsWith(`${union.schemaPath}/${i}/`);
    kept = kept.filter((e) => {
      if (e === union) return chosen < 0;
      if (!e.schemaPath.startsWith(`${union.schemaPath}/`)) return true;
      return chosen >= 0 && inBranch(e, chosen);
    });
  }
  return kept;
}

interface SchemaNode {
  type?: string;
  minimum?: number;
  maximum?: number;
  properties?: Record<string, unknown>;
  propertyNames?: { 'x-expect'?: string };
  'x-expect'?: string;
}

/** What is wrong, in the words of someone who writes the file, not of JSON Schema. */
function phrase(error: ErrorObject): string {
  const schema = (error.parentSchema ?? {}) as SchemaNode;
  switch (error.keyword) {
    case 'additionalProperties': {
      const known = Object.keys(schema.properties ?? {});
      const suggestion = closest(String(error.params.additionalProperty), known);
      return suggestion
        ? `unknown key; did you mean ${suggestion}?`
        : `unknown key; the keys allowed here are ${known.join(', ')}`;
    }
    case 'required':
      return 'is required';
    case 'type':
    case 'minimum':
    case 'maximum':
      return `must be ${expected(schema, error.data)}`;
    case 'pattern':
    case 'anyOf':
    case 'const':
      return `must be ${schema['x-expect'] ?? expected(schema, error.data)}`;
    case 'propertyNames':
      return `is not ${schema.propertyNames?.['x-expect'] ?? 'a valid name'}`;
    case 'minProperties':
    case 'maxProperties':
      return schema.properties ? `must set exactly one of ${Object.keys(schema.properties).join(' or ')}` : 'must not be empty';
    case 'minItems':
      return 'must not be an empty list';
    case 'uniqueItems': {
      const list = error.data as unknown[];
      return `lists ${JSON.stringify(list[Number(error.params.j)])} twice`;
    }
    default:
      return error.message ?? 'is invalid';
  }
}

/** The kind of value a schema node wants, e.g. "an integer from 1 to 10". */
function expected(schema: SchemaNode, data: unknown): string {
  const range = schema.minimum !== undefined && schema.maximum !== undefined ? ` from ${schema.minimum} to ${schema.maximum}` : '';
  switch (schema.type) {
    case 'integer': return `an integer${range}`;
    case 'number': return `a number${range}`;
    case 'boolean': return 'true or false';
    case 'object': return 'a mapping (key: value)';
    case 'array': return 'a list, such as [a, b]';
    case 'string':
      // YAML reads true, 1 or 2024-01-01 as other types; quoting keeps them text.
      return typeof data === 'boolean' || typeof data === 'number' ? `text; write "${String(data)}" in quotes` : 'text';
    default: return 'a valid value';
  }
}

/** A known key close to what was written (a typo or a case slip), if there is one. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 4)) + 1;
  for (const candidate of candidates) {
    const distance = candidate.toLowerCase() === word.toLowerCase() ? 0 : editDistance(word, candidate);
    if (distance < bestDistance) { best = candidate; bestDistance = distance; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Keys → "spec.subsets[1].labels["app.kubernetes.io/name"]": list indexes in brackets, odd keys quoted. */
export function fieldPath(key: readonly string[], data: unknown): string {
  let out = '';
  let node = data;
  for (const segment of key) {
    if (Array.isArray(node)) out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out ? `.${segment}` : segment;
    else out += `[${JSON.stringify(segment)}]`;
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return out;
}
