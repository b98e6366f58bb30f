// A report file holds several sections, each between its own markers (`<!-- mcp:begin -->` …
// `<!-- mcp:end -->`), so one benchmark can rewrite its section and keep the others: each scenario run
// on its own (seed.ts, mcp.ts, micro.ts) its section (writeSection), run.ts the whole report, its main
// part and the sections that ran this time (mergeReport).
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

/** A report file cut into its main part (everything outside sections) and its sections, in file order. */
export function splitReport(text: string): { main: string | undefined; sections: Map<string, string> } {
  const sections = new Map<string, string>();
  let main = '';
  let at = 0;
  const begins = /<!-- ([\w.-]+):begin -->/g;
  for (let found = begins.exec(text); found; found = begins.exec(text)) {
    const name = found[1]!;
    const { end } = markers(name);
    const endAt = text.indexOf(end, found.index);
    if (endAt < 0) continue; // an unfinished section stays in the text around it
    main += text.slice(at, found.index);
    sections.set(name, `${text.slice(found.index, endAt + end.length)}\n`);
    at = endAt + end.length;
    begins.lastIndex = at;
  }
  main += text.slice(at);
  main = main.replace(/\n{3,}/g, '\n\n').trim();
  return { main: main ? `${main}\n` : undefined, sections };
}

/** A section's Markdown exactly from its begin marker to its end marker; the markers are added if missing. */
export function asSection(name: string, markdown: string): string {
  const own = splitReport(markdown).sections.get(name);
  if (own) return own;
  const { begin, end } = markers(name);
  return `${begin}\n${markdown.trim()}\n${end}\n`;
}

/**
 * The new report file: this run's main part and sections where they ran, the previous file's where
 * they did not; sections in the order of `order`, then any other section the previous file had.
 */
export function mergeReport(previous: string | undefined, fresh: { main: string | undefined; sections: Map<string, string> }, order: string[]): string {
  const old = previous === undefined ? { main: undefined, sections: new Map<string, string>() } : splitReport(previous);
  const names = [...new Set([...order, ...fresh.sections.keys(), ...old.sections.keys()])];
  const parts = [fresh.main ?? old.main, ...names.map((name) => fresh.sections.get(name) ?? old.sections.get(name))];
  return parts.filter((part): part is string => Boolean(part)).map((part) => `${part.trimEnd()}\n`).join('\n');
}
