import { test } from 'node:test';
import assert from 'node:assert/strict';
import { latencySpec, MAX_X, percentilePoints } from '../../../bench/plot.ts';

test('percentile points run from the minimum to p99.99 on the 1/(1−p) axis, no further than the sample allows', () => {
  const points = percentilePoints((p) => p * 10, 1_000_000);
  assert.equal(points[0]!.x, 1);
  assert.equal(points[0]!.percentile, 0);
  assert.equal(points.at(-1)!.x, MAX_X);
  assert.ok(Math.abs(points.at(-1)!.percentile - 99.99) < 1e-9);
  for (let i = 1; i < points.length; i++) assert.ok(points[i]!.x > points[i - 1]!.x);
  // x = 10 is p90; latency is read at that percentile and shown in ms.
  const p90 = points.find((p) => Math.abs(p.x - 10) < 1e-9)!;
  assert.ok(Math.abs(p90.percentile - 90) < 1e-9);
  assert.ok(Math.abs(p90.ms - 0.9) < 1e-9);
  // 500 requests: nothing past p99.8.
  assert.equal(percentilePoints(() => 1, 500).at(-1)!.x, 500);
});

test('the spec: one panel per scenario in order, a line per target with its colour, labelled percentile ticks', () => {
  const series = (target: string) => ({ target, points: percentilePoints(() => 1000, 100) });
  const spec = latencySpec([
    { title: 'open loop, 1,000 req/s', series: [series('direct'), series('mesh')] },
    { title: 'closed loop', series: [series('direct'), series('mesh')] },
  ], { mesh: '#ff0000' }) as unknown as {
    data: { values: { scenario: string; target: string }[] };
    facet: { sort: string[] };
    spec: { encoding: { x: { axis: { values: number[]; labelExpr: string } }; color: { scale: { domain: string[]; range: string[] } } } };
  };
  assert.deepEqual(spec.facet.sort, ['open loop, 1,000 req/s', 'closed loop']);
  assert.equal(spec.data.values.filter((r) => r.scenario === 'closed loop' && r.target === 'mesh').length, percentilePoints(() => 1, 100).length);
  assert.deepEqual(spec.spec.encoding.color.scale.domain, ['direct', 'mesh']);
  assert.equal(spec.spec.encoding.color.scale.range[1], '#ff0000');
  assert.deepEqual(spec.spec.encoding.x.axis.values, [2, 10, 100, 1000, 10_000]);
  for (const label of ["'50%'", "'90%'", "'99%'", "'99.9%'", "'99.99%'"]) assert.ok(spec.spec.encoding.x.axis.labelExpr.includes(label));
});
