// The latency-distribution plot of the report: HdrHistogram-style percentile curves (x: percentile on
// a log scale of 1/(1−p), so 90%, 99%, 99.9% sit equally far apart and the tail gets as much room as
// the median; y: latency), one line per target, one panel per scenario. Vega-Lite → Vega → SVG
// (headless, no canvas) → PNG with resvg.
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface Series {
  /** Legend name, e.g. "direct", "mesh", "HAProxy". */
  target: string;
  points: PercentilePoint[];
}

export interface Panel {
  title: string;
  series: Series[];
}

export interface PercentilePoint {
  /** 0–100 */
  percentile: number;
  /** 1 / (1 − p): 1 at the minimum, 10 at p90, 1,000 at p99.9. */
  x: number;
  ms: number;
}

/** The plot shows up to p99.99 (x = 10⁴): further out, runs of 10⁴–10⁵ requests have only a few values. */
export const MAX_X = 10_000;
const STEPS_PER_DECADE = 24;
/** Where the x axis is labelled: x = 1/(1−p). */
const TICKS: [x: number, label: string][] = [[2, '50%'], [10, '90%'], [100, '99%'], [1000, '99.9%'], [10_000, '99.99%']];

/**
 * Points of one latency distribution, evenly spread on the log 1/(1−p) axis, from the minimum (x = 1)
 * to p99.99 or to the last percentile the sample size supports (x = count), whichever comes first.
 * `valueAt(percentile)` gives the latency in µs (HdrHistogram's getValueAtPercentile).
 */
export function percentilePoints(valueAt: (percentile: number) => number, count: number): PercentilePoint[] {
  const last = Math.min(MAX_X, Math.max(1, count));
  const points: PercentilePoint[] = [];
  for (let k = 0; ; k++) {
    const x = Math.min(last, 10 ** (k / STEPS_PER_DECADE));
    const percentile = 100 * (1 - 1 / x);
    points.push({ percentile, x, ms: valueAt(percentile) / 1000 });
    if (x >= last) return points;
  }
}

/** The Vega-Lite spec: one panel per scenario (own y scale), one coloured line per target. */
export function latencySpec(panels: Panel[], colours: Record<string, string> = {}): TopLevelSpec {
  const rows = panels.flatMap((panel) => panel.series.flatMap((s) => s.points.map((p) => ({ scenario: panel.title, target: s.target, x: p.x, percentile: p.percentile, ms: p.ms }))));
  const targets = [...new Set(panels.flatMap((p) => p.series.map((s) => s.target)))];
  const labelExpr = `${TICKS.map(([x, label]) => `datum.value == ${x} ? '${label}'`).join(' : ')} : ''`;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    padding: 12,
    title: { text: 'Latency by percentile (from the intended send time)', fontSize: 15, anchor: 'start' },
    data: { values: rows },
    facet: { field: 'scenario', type: 'nominal', sort: panels.map((p) => p.title), header: { title: null, labelFontSize: 13, labelFontWeight: 'bold' } },
    columns: Math.min(3, panels.length),
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 330,
      height: 260,
      mark: { type: 'line', strokeWidth: 2, clip: true },
      encoding: {
        x: {
          field: 'x', type: 'quantitative', title: 'percentile',
          scale: { type: 'log', domain: [1, MAX_X] },
          axis: { values: TICKS.map(([x]) => x), labelExpr, grid: true },
        },
        y: { field: 'ms', type: 'quantitative', title: 'latency (ms, log scale)', scale: { type: 'log' }, axis: { format: '~g', grid: true, gridOpacity: 0.6 } },
        color: {
          field: 'target', type: 'nominal', title: null, sort: targets,
          scale: { domain: targets, range: targets.map((t, i) => colours[t] ?? FALLBACK[i % FALLBACK.length]!) },
          legend: { orient: 'bottom', labelFontSize: 12, symbolStrokeWidth: 3 },
        },
        tooltip: [{ field: 'target' }, { field: 'percentile', format: '.3f' }, { field: 'ms', format: '.3f' }],
      },
    },
  };
}

const FALLBACK = ['#4c78a8', '#e45756', '#54a24b', '#b279a2', '#f58518'];

/** The plot as SVG text. */
export async function latencySvg(panels: Panel[], colours?: Record<string, string>): Promise<string> {
  const { spec } = compile(latencySpec(panels, colours));
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The plot as a PNG (twice the SVG's size, for sharp text). */
export async function latencyPng(panels: Panel[], colours?: Record<string, string>): Promise<Buffer> {
  const svg = await latencySvg(panels, colours);
  const resvg = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, background: 'white', font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' } });
  return resvg.render().asPng();
}
