// Turning YAML and schema (Ajv) errors into positions a user can find: shared by the sidecar config
// loader (config/load.ts) and the policy loader (policy/load.ts). Each loader words the problems its
// own way; what is shared is how an error is tied to a key and to a line and column in the file.
import type { ErrorObject } from 'ajv';
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter } from 'yaml';

export interface Position { line: number; col: number }

/** One schema error, tied to the key it is about and to where that key is in the file. */
export interface LocatedError {
  /** Keys from the document root to the offending value (for an unknown or missing key, that key). */
  key: string[];
  /** Where to look; undefined when nothing in the file corresponds (e.g. a value from elsewhere). */
  at: Position | undefined;
  error: ErrorObject;
}

/** The first syntax error of a parsed document (the rest usually follow from it), with its position. */
export function yamlSyntaxError(doc: Document.Parsed, lines: LineCounter): { at: Position; message: string } | undefined {
  const first = doc.errors[0];
  if (!first) return undefined;
  return { at: lines.linePos(first.pos[0]), message: first.message.split('\n')[0]! };
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
