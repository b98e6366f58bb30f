// Turning YAML and schema (Ajv) errors into positions a user can find: shared by the sidecar config
// loader (config/load.ts) and the policy loader (policy/load.ts). Each loader words the problems its
// own way; what is shared is how an error is tied to a key and to a line and column in the file.
import type { ErrorObject } from 'ajv';
import { isMap, isPair, isScalar, isSeq, visit, type Alias, type Document, type LineCounter } from 'yaml';

export interface Position { line: number; col: number }

/** One schema error, tied to the key it is about and to where that key is in the file. */
export interface LocatedError {
  /** Keys from the document root to the offending value (for an unknown or missing key, that key). */
  key: string[];
  /** Where to look; undefined when nothing in the file corresponds (e.g. a value from elsewhere). */
  at: Position | undefined;
  error: ErrorObject;
}

/** Why a YAML document has no data, in one line, and where. */
export interface YamlProblem { at: Position; message: string }

/**
 * A parsed document's data, or why it has none: its first syntax error (the rest usually follow
 * from it), an alias naming no anchor, or aliases that would expand past the yaml package's limit
 * (maxAliasCount, 100: its guard against "billion laughs" files). The yaml package throws the last
 * two without a position, so the alias to blame is found here: the first one that fails on its
 * own, else (many small expansions adding up) the document's first alias.
 */
export function documentData(doc: Document.Parsed, lines: LineCounter): { data: unknown } | YamlProblem {
  const syntax = doc.errors[0];
  if (syntax) return { at: lines.linePos(syntax.pos[0]), message: syntax.message.split('\n')[0]! };
  try {
    return { data: doc.toJS() };
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    const aliases: Alias[] = [];
    visit(doc, { Alias: (_, alias) => { aliases.push(alias); } });
    const culprit = aliases.find((alias) => failsAlone(alias, doc)) ?? aliases[0];
    const at = culprit?.range ? lines.linePos(culprit.range[0]) : { line: 1, col: 1 };
    const message = /excessive alias count/i.test(err.message)
      ? `aliases expand too far (past the YAML reader's limit of 100 alias expansions; a file like this is an "alias bomb")`
      : err.message;
    return { at, message };
  }
}

function failsAlone(alias: Alias, doc: Document): boolean {
  try {
    alias.toJS(doc);
    return false;
  } catch {
    return true;
  }
}

/** The keys an Ajv error is about: its instance path, plus the unknown or missing key it names. */
export function errorKey(error: ErrorObject): string[] {
  const segments = error.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (error.keyword === 'additionalProperties') return [...segments, String(error.params.additionalProperty)];
  if (error.keyword === 'required') return [...segments, String(error.params.missingProperty)];
  return segments;
}

/**
 * Locate the errors worth showing (see explainable) in `doc`. An unknown key points at the key
 * itself; anything else at the value (a missing key at the mapping that lacks it).
 */
export function locateErrors(errors: ErrorObject[], doc: Document, lines: LineCounter): LocatedError[] {
  return explainable(errors).map((error) => {
    const key = errorKey(error);
    return { key, at: locate(doc, key, error.keyword === 'additionalProperties', lines), error };
  });
}

/**
 * Pick the errors worth showing. For a union (anyOf) the union's own description usually says it
 * best ("must be host:port or {address, labels, weight}"); but when the value is a mapping, the
 * mapping's own problems (an unknown or missing key) are what the user needs to read.
 */
export function explainable(errors: ErrorObject[]): ErrorObject[] {
  const unions = errors.filter((e) => e.keyword === 'anyOf');
  const kept: ErrorObject[] = [];
  for (const error of errors) {
    const union = unions.find((u) => error !== u && error.instancePath.startsWith(u.instancePath));
    if (!union) { kept.push(error); continue; }
    const isMapping = typeof union.data === 'object' && union.data !== null && !Array.isArray(union.data);
    if (isMapping && error.keyword !== 'type' && error.keyword !== 'anyOf') kept.push(error);
  }
  // A union error stays only when nothing more precise was kept under it.
  return kept.filter((e) => e.keyword !== 'anyOf' || !kept.some((o) => o !== e && o.instancePath.startsWith(e.instancePath)));
}

/**
 * Where `key` is in the document: the deepest node along the path that exists (so a missing key is
 * reported at the mapping that should hold it). `atKey` points at the last key rather than its value.
 */
export function locate(doc: Document, key: readonly string[], atKey: boolean, lines: LineCounter): Position | undefined {
  let node: unknown = doc.contents;
  let range: [number, number, number] | undefined;
  for (const [index, segment] of key.entries()) {
    const last = index === key.length - 1;
    if (isSeq(node)) {
      node = node.items[Number(segment)];
      range = (node as { range?: [number, number, number] } | undefined)?.range ?? range;
      continue;
    }
    if (!isMap(node)) break;
    const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === segment);
    if (!pair || !isPair(pair)) break;
    const target = atKey && last ? pair.key : pair.value;
    range = (target as { range?: [number, number, number] } | null)?.range ?? range;
    node = pair.value;
  }
  return range ? lines.linePos(range[0]) : undefined;
}
