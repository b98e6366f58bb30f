import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bucketRows, combineBuckets, NO_BUCKETS, parseHistogram, plotFile, sliceOrder } from '../../../bench/run.ts';
import { times } from '../../../bench/format.ts';
import { asSection, markers, mergeReport, splitReport } from '../../../bench/report-sections.ts';

const section = (name: string, body: string) => `${markers(name).begin}\n${body}\n${markers(name).end}\n`;

test('a report splits into its main part and its named sections, in file order', () => {
  const text = `# main\n\nsync text\n\n${section('async', '## async\nA')}\n${section('seed', '## seed\nS')}\ntrailing note\n`;
  const { main, sections } = splitReport(text);
  assert.equal(main, '# main\n\nsync text\n\ntrailing note\n');
  assert.deepEqual([...sections.keys()], ['async', 'seed']);
  assert.equal(sections.get('async'), section('async', '## async\nA'));
  assert.equal(sections.get('seed'), section('seed', '## seed\nS'));
});

test('a begin marker without its end stays in the main part; an empty main part is undefined', () => {
  const text = `intro\n<!-- mcp:begin -->\nunfinished\n`;
  const split = splitReport(text);
  assert.equal(split.sections.size, 0);
  assert.match(split.main!, /unfinished/);
  assert.equal(splitReport(section('async', 'only a section')).main, undefined);
});

test('merging: what ran replaces, what did not is kept from the previous file, sections in list order', () => {
  const previous = `old main\n\n${section('micro', 'old micro')}\n${section('async', 'old async')}\n${section('legacy', 'kept, not in the list')}`;
  const fresh = { main: undefined, sections: new Map([['async', section('async', 'new async')]]) };
  const merged = mergeReport(previous, fresh, ['async', 'seed', 'micro']);
  assert.equal(merged, `old main\n\n${section('async', 'new async')}\n${section('micro', 'old micro')}\n${section('legacy', 'kept, not in the list')}`);
  // And the main part of this run replaces the old one, keeping every section.
  const again = mergeReport(merged, { main: 'new main\n', sections: new Map() }, ['async', 'seed', 'micro']);
  assert.deepEqual(splitReport(again).main, 'new main\n');
  assert.deepEqual([...splitReport(again).sections.keys()], ['async', 'micro', 'legacy']);
  // No previous file.
  assert.equal(mergeReport(undefined, { main: 'm\n', sections: new Map([['seed', section('seed', 's')]]) }, ['async', 'seed']), `m\n\n${section('seed', 's')}`);
});

test("a section's Markdown is cut to its markers, and gets them when it has none", () => {
  assert.equal(asSection('seed', `stray\n${section('seed', 'body')}\nafter`), section('seed', 'body'));
  assert.equal(asSection('seed', '## Seed\n\ntext\n'), section('seed', '## Seed\n\ntext'));
});

/** One peer's series of the histogram as the admin /metrics endpoint writes them. */
function series(peer: string, counts: Record<string, number>, sum: number): string[] {
  const count = counts['+Inf']!;
  return [
    `mcp_link_batch_size_count{peer="${peer}"} ${count}`,
    `mcp_link_batch_size_sum{peer="${peer}"} ${sum}`,
    ...Object.entries(counts).map(([le, n]) => `mcp_link_batch_size_bucket{peer="${peer}",le="${le}"} ${n}`),
  ];
}

const EXPOSITION = [
  '# HELP mcp_link_batch_size Envelopes per batch written on the links to peer sidecars.',
  '# TYPE mcp_link_batch_size histogram',
  ...series('127.0.0.1:1', { 1: 4, 2: 6, 4: 9, '+Inf': 10 }, 25),
  ...series('127.0.0.1:2', { 1: 1, 2: 2, 4: 2, '+Inf': 2 }, 3),
  'mcp_link_batch_size_other{le="1"} 99',
  'mcp_requests_total{service="x"} 5',
].join('\n');

test('the batch-size histogram is read from Prometheus text, summed over peers', () => {
  const h = parseHistogram(EXPOSITION, 'mcp_link_batch_size');
  assert.deepEqual(h, { le: [1, 2, 4, Infinity], counts: [5, 8, 11, 12], sum: 28, count: 12 });
  assert.deepEqual(parseHistogram('', 'mcp_link_batch_size'), NO_BUCKETS);
});

test('bucket counts are diffed and added bound by bound; a histogram not yet there counts zero', () => {
  const after = parseHistogram(EXPOSITION, 'mcp_link_batch_size');
  const before = { le: [1, 2, 4, Infinity], counts: [2, 3, 3, 3], sum: 4, count: 3 };
  const diff = combineBuckets(after, before, -1);
  assert.deepEqual(diff, { le: [1, 2, 4, Infinity], counts: [3, 5, 8, 9], sum: 24, count: 9 });
  assert.deepEqual(combineBuckets(after, NO_BUCKETS, -1), after);
  assert.deepEqual(combineBuckets(NO_BUCKETS, diff, 1), diff);
  // A bound only one side has: the other side's cumulative count there is that of its next lower bound.
  const coarse = { le: [2, Infinity], counts: [1, 2], sum: 3, count: 2 };
  assert.deepEqual(combineBuckets(diff, coarse, 1).counts, [3, 6, 9, 11]);
});

test('bucket rows: per-bucket counts with shares, labelled as whole-number ranges, trimmed to the non-empty span', () => {
  const rows = bucketRows({ le: [1, 2, 4, 8, 16, Infinity], counts: [0, 5, 5, 15, 20, 20], sum: 0, count: 20 });
  assert.deepEqual(rows, [
    { label: '2', n: 5, share: 0.25 },
    { label: '3–4', n: 0, share: 0 },
    { label: '5–8', n: 10, share: 0.5 },
    { label: '9–16', n: 5, share: 0.25 },
  ]);
  assert.deepEqual(bucketRows({ le: [1, Infinity], counts: [1, 3], sum: 0, count: 3 }).map((r) => r.label), ['1', '> 1']);
  assert.deepEqual(bucketRows(NO_BUCKETS), []);
});

test('slice order rotates so each target takes each position once per round', () => {
  const targets = ['direct', 'mesh', 'haproxy'];
  const rounds = [0, 1, 2].map((i) => sliceOrder(targets, i));
  assert.deepEqual(rounds, [['direct', 'mesh', 'haproxy'], ['mesh', 'haproxy', 'direct'], ['haproxy', 'direct', 'mesh']]);
  for (let position = 0; position < 3; position++) assert.deepEqual(new Set(rounds.map((r) => r[position])), new Set(targets));
  assert.deepEqual(sliceOrder(targets, 3), targets);
  assert.deepEqual(sliceOrder(['a', 'b'], 1), ['b', 'a']);
});

test('ratios and the plot file name', () => {
  assert.equal(times(3, 2), '1.50×');
  assert.equal(times(250, 10), '25.0×');
  assert.equal(times(1, 0), '—');
  assert.equal(times(1, -2), '—');
  assert.equal(plotFile('/x/results/latest.md'), '/x/results/latency.png');
  assert.equal(plotFile('/tmp/b.md'), '/tmp/b-latency.png');
});
