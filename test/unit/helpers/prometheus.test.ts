import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metricSum, parseSamples, sampleLines } from '../../helpers/prometheus.ts';

const EXPOSITION = [
  '# HELP mcp_requests_total Calls.',
  '# TYPE mcp_requests_total counter',
  'mcp_requests_total{service="a.default",code="200"} 3',
  'mcp_requests_total{service="a.default",code="503"} 1',
  'mcp_requests_total{service="b.default",code="200"} 2 1700000000000',
  'mcp_requests_total_other{service="a.default"} 100',
  '',
  'mcp_links 4',
  'mcp_latency_seconds_bucket{le="0.5"} 7',
  'mcp_latency_seconds_bucket{le="+Inf"} 9',
  'odd_labels{path="/a}b",quote="say \\"hi\\"",slash="a\\\\b",nl="x\\ny"} +Inf',
  'negative{} -Inf',
].join('\n');

describe('parseSamples', () => {
  it('reads every sample with its labels and value, skipping comments and blank lines', () => {
    const samples = parseSamples(EXPOSITION);
    assert.deepEqual(samples.map((s) => s.name), [
      'mcp_requests_total', 'mcp_requests_total', 'mcp_requests_total', 'mcp_requests_total_other', 'mcp_links',
      'mcp_latency_seconds_bucket', 'mcp_latency_seconds_bucket', 'odd_labels', 'negative',
    ]);
    assert.deepEqual(samples[0], { name: 'mcp_requests_total', labels: { service: 'a.default', code: '200' }, value: 3, text: '{service="a.default",code="200"} 3' });
    assert.deepEqual(samples[4]!.labels, {});
    assert.equal(samples[2]!.value, 2, 'a timestamp after the value is not the value');
  });

  it('unescapes label values, even ones holding a brace or a quote, and reads ±Inf', () => {
    const [odd] = parseSamples(EXPOSITION, 'odd_labels');
    assert.deepEqual(odd!.labels, { path: '/a}b', quote: 'say "hi"', slash: 'a\\b', nl: 'x\ny' });
    assert.equal(odd!.value, Infinity);
    assert.equal(parseSamples(EXPOSITION, 'negative')[0]!.value, -Infinity);
  });

  it('with a name, keeps that metric only (not others that start with it)', () => {
    assert.equal(parseSamples(EXPOSITION, 'mcp_requests_total').length, 3);
    assert.equal(parseSamples(EXPOSITION, 'mcp_requests').length, 0);
  });
});

describe('metricSum', () => {
  it('adds the samples whose labels include the ones asked for', () => {
    assert.equal(metricSum(EXPOSITION, 'mcp_requests_total'), 6);
    assert.equal(metricSum(EXPOSITION, 'mcp_requests_total', { service: 'a.default' }), 4);
    assert.equal(metricSum(EXPOSITION, 'mcp_requests_total', { code: '200' }), 5);
    assert.equal(metricSum(EXPOSITION, 'mcp_latency_seconds_bucket', { le: '+Inf' }), 9);
    assert.equal(metricSum(EXPOSITION, 'odd_labels', { path: '/a}b' }), Infinity);
    assert.equal(metricSum(EXPOSITION, 'mcp_absent'), 0);
  });
});

describe('sampleLines', () => {
  it('gives the text after the name, sorted, for exact comparisons', () => {
    assert.deepEqual(sampleLines(EXPOSITION, 'mcp_latency_seconds_bucket'), ['{le="+Inf"} 9', '{le="0.5"} 7']);
    assert.deepEqual(sampleLines(EXPOSITION, 'mcp_links'), [' 4']);
  });
});
