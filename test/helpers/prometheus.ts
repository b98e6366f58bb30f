// Reading the Prometheus text exposition format (what the admin listener's /metrics writes) for the
// tests and the bench: the one parser of it in the repository. The sidecar only writes the format
// (through OpenTelemetry's exporter), so this lives with the test helpers, which the bench imports.
// Comments (# HELP, # TYPE) and blank lines are skipped; label values are unescaped.

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  /** The line after the name, as written (`{a="1",b="2"} 3`): for exact comparisons of label sets. */
  text: string;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?[ \t]+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
const ESCAPE = /\\(.)/g;

/** Every sample of the exposition, in the order written; with `name`, only that metric's. */
export function parseSamples(text: string, name?: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || (name !== undefined && !line.startsWith(name))) continue;
    const match = SAMPLE.exec(line);
    if (!match || (name !== undefined && match[1] !== name)) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = value!.replace(ESCAPE, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: match[1]!, labels, value: sampleValue(match[3]!), text: line.slice(match[1]!.length) });
  }
  return samples;
}

/** A sample's value: a Go float, where infinities are written +Inf and -Inf. */
function sampleValue(written: string): number {
  if (written === '+Inf') return Infinity;
  if (written === '-Inf') return -Infinity;
  return Number(written);
}

/** Sum of the samples of `name` whose labels include all of `labels` (0 if there is none). */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const sample of parseSamples(text, name)) {
    if (Object.entries(labels).every(([k, v]) => sample.labels[k] === v)) sum += sample.value;
  }
  return sum;
}

/** The samples of `name` as `{labels} value` lines, sorted: for exact comparisons of label sets. */
export function sampleLines(text: string, name: string): string[] {
  return parseSamples(text, name).map((s) => s.text).sort();
}
