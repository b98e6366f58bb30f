// A report file holds several sections, each between its own markers (`<!-- mcp:begin -->` …
// `<!-- mcp:end -->`), so one benchmark can rewrite its section and keep the others: run.ts for the
// whole report, and each scenario run on its own (seed.ts, mcp.ts, micro.ts) for its section.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** The markers around section `name`. */
export function markers(name: string): { begin: string; end: string } {
  return { begin: `<!-- ${name}:begin -->`, end: `<!-- ${name}:end -->` };
}

/**
 * `text` with its section between `begin` and `end` replaced by `section` (which carries the
 * markers); appended when the file has no such section yet.
 */
export function replaceSection(text: string, section: string, begin: string, end: string): string {
  const from = text.indexOf(begin);
  const to = from < 0 ? -1 : text.indexOf(end, from);
  if (from < 0 || to < 0) return `${text.trimEnd()}${text.trim() ? '\n\n' : ''}${section.trimEnd()}\n`;
  const after = text.slice(to + end.length).replace(/^\n/, '');
  return `${text.slice(0, from)}${section.trimEnd()}\n${after}`;
}

/** Writes `section` into `file` (created if missing), replacing only its own section. */
export function writeSection(file: string, section: string, begin: string, end: string): void {
  const previous = existsSync(file) ? readFileSync(file, 'utf8') : '';
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, replaceSection(previous, section, begin, end));
}
