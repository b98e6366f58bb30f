import { describe, it, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { OutlierDetector } from '../../../sidecar/src/resilience/outlier.ts';
import type { OutlierDetectionPolicy } from '../../../sidecar/src/policy/types.ts';

const envoy: OutlierDetectionPolicy = Object.freeze({
  enabled: true,
  consecutiveFailures: 5,
  intervalMs: 10_000,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
  maxEjectionPercent: 10,
  successRate: { enabled: true, minRequests: 100, stdevFactor: 1.9 },
});
const noSuccessRate = { ...envoy, successRate: { ...envoy.successRate, enabled: false } };

function fail(d: OutlierDetector, address: string, times: number): void {
  for (let i = 0; i < times; i++) d.record(address, false);
}

describe('OutlierDetector', () => {
  beforeEach(() => mock.timers.enable({ apis: ['Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  it('ejects on the Nth consecutive failure, and a success in between starts the count again', () => {
    const d = new OutlierDetector(noSuccessRate);
    d.setEndpoints(['a', 'b']);
    fail(d, 'a', 4);
    d.record('a', true);
    fail(d, 'a', 4);
    assert.equal(d.isEjected('a'), false, '4 in a row, twice');
    fail(d, 'a', 1);
    assert.equal(d.isEjected('a'), true);
    assert.equal(d.isEjected('b'), false);
  });

  it('ejects for base × times ejected, then lets the endpoint back', () => {
    const d = new OutlierDetector(noSuccessRate);
    d.setEndpoints(['a', 'b']);
    fail(d, 'a', 5);
    mock.timers.tick(29_999);
    assert.equal(d.isEjected('a'), true);
    mock.timers.tick(1);
    assert.equal(d.isEjected('a'), false, 'back after 30 s');
    fail(d, 'a', 5);
    mock.timers.tick(59_999);
    assert.equal(d.isEjected('a'), true, 'second ejection: 60 s');
    mock.timers.tick(1);
    assert.equal(d.isEjected('a'), false);
  });

  it('caps an ejection at maxEjectionMs', () => {
    const d = new OutlierDetector({ ...noSuccessRate, baseEjectionMs: 100_000, maxEjectionMs: 150_000, intervalMs: 1_000_000 });
    d.setEndpoints(['a']);
    fail(d, 'a', 5);
    mock.timers.tick(100_000);
    fail(d, 'a', 5);
    assert.equal(d.snapshot()[0]!.returnsInMs, 150_000, '2 × 100 s capped at 150 s');
  });

  it('takes one off the ejection count for each whole interval the endpoint stays in service', () => {
    const d = new OutlierDetector(noSuccessRate);
    d.setEndpoints(['a']);
    fail(d, 'a', 5);
    mock.timers.tick(30_000);
    fail(d, 'a', 5);
    assert.equal(d.snapshot()[0]!.timesEjected, 2);
    mock.timers.tick(60_000 + 20_000); // out for 60 s, then two whole intervals in service
    assert.equal(d.snapshot()[0]!.timesEjected, 0);
    fail(d, 'a', 5);
    assert.equal(d.snapshot()[0]!.returnsInMs, 30_000, 'the multiplier started again');
  });

  it('never ejects more than maxEjectionPercent of the endpoints', () => {
    const d = new OutlierDetector(noSuccessRate);
    d.setEndpoints(Array.from({ length: 30 }, (_, i) => `e${i}`));
    for (let i = 0; i < 5; i++) fail(d, `e${i}`, 5);
    assert.deepEqual([0, 1, 2, 3, 4].map((i) => d.isEjected(`e${i}`)), [true, true, true, false, false], '10% of 30 = 3');
  });

  it('always allows one ejection, even when the percentage rounds down to none', () => {
    const d = new OutlierDetector(noSuccessRate);
    d.setEndpoints(['a', 'b', 'c']);
    fail(d, 'a', 5);
    fail(d, 'b', 5);
    assert.equal(d.isEjected('a'), true);
    assert.equal(d.isEjected('b'), false, 'only one of three');
    mock.timers.tick(30_000);
    assert.equal(d.isEjected('a'), false);
    fail(d, 'b', 1);
    assert.equal(d.isEjected('b'), true, 'room again: its next failure ejects it');
  });

  it('ejects by success rate at the end of an interval: below mean − 1.9·stdev, enough calls only', () => {
    const d = new OutlierDetector({ ...envoy, consecutiveFailures: 1000, maxEjectionPercent: 50 });
    const all = Array.from({ length: 10 }, (_, i) => `e${i}`);
    d.setEndpoints(all);
    for (const address of all.slice(0, 8)) for (let i = 0; i < 100; i++) d.record(address, true);
    for (let i = 0; i < 100; i++) d.record('e8', i % 2 === 0); // 50% success
    for (let i = 0; i < 99; i++) d.record('e9', false); // worse, but under minRequests
    assert.equal(d.isEjected('e8'), false, 'not before the interval ends');
    mock.timers.tick(10_000);
    assert.equal(d.isEjected('e8'), true);
    assert.equal(d.snapshot().find((s) => s.address === 'e8')!.reason, 'success-rate');
    assert.equal(d.isEjected('e9'), false, '99 calls < minRequests 100');
    assert.ok(all.slice(0, 8).every((a) => !d.isEjected(a)));
  });

  it('does not eject by success rate when every endpoint does equally', () => {
    const d = new OutlierDetector({ ...envoy, consecutiveFailures: 1000, maxEjectionPercent: 100 });
    const all = ['a', 'b', 'c', 'd', 'e'];
    for (const address of all) for (let i = 0; i < 200; i++) d.record(address, i % 4 !== 0);
    mock.timers.tick(10_000);
    assert.ok(all.every((a) => !d.isEjected(a)));
  });

  it('counts success rates per interval', () => {
    const d = new OutlierDetector({ ...envoy, consecutiveFailures: 1000, maxEjectionPercent: 50 });
    const all = Array.from({ length: 10 }, (_, i) => `e${i}`);
    for (let i = 0; i < 100; i++) d.record('e9', i % 2 === 0); // bad in the first interval only
    mock.timers.tick(9_000);
    assert.equal(d.isEjected('e9'), false, 'nobody else to compare with in that interval');
    mock.timers.tick(1_000);
    for (const address of all) for (let i = 0; i < 100; i++) d.record(address, true);
    mock.timers.tick(10_000);
    assert.equal(d.isEjected('e9'), false, 'its earlier failures were in the previous interval');
  });

  it('reports ejections and returns, and shows them in the snapshot', () => {
    const events: string[] = [];
    const d = new OutlierDetector(noSuccessRate, {
      onEject: (address, reason, ms) => events.push(`eject ${address} ${reason} ${ms}`),
      onReturn: (address) => events.push(`return ${address}`),
    });
    d.setEndpoints(['a', 'b']);
    fail(d, 'a', 5);
    mock.timers.tick(1_000);
    assert.deepEqual(d.snapshot(), [
      { address: 'a', ejected: true, reason: 'consecutive-failures', returnsInMs: 29_000, timesEjected: 1, consecutiveFailures: 0, requests: 5, failures: 5 },
      { address: 'b', ejected: false, timesEjected: 0, consecutiveFailures: 0, requests: 0, failures: 0 },
    ]);
    mock.timers.tick(29_000);
    d.isEjected('a');
    assert.deepEqual(events, ['eject a consecutive-failures 30000', 'return a']);
  });

  it('drops endpoints that left, freeing their place under the cap', () => {
    const d = new OutlierDetector(noSuccessRate);
    d.setEndpoints(['a', 'b', 'c']);
    fail(d, 'a', 5);
    d.setEndpoints(['b', 'c']);
    fail(d, 'b', 5);
    assert.equal(d.isEjected('b'), true);
    assert.deepEqual(d.snapshot().map((s) => s.address), ['b', 'c']);
  });

  it('does nothing when disabled', () => {
    const d = new OutlierDetector({ ...envoy, enabled: false });
    fail(d, 'a', 50);
    assert.equal(d.isEjected('a'), false);
  });
});
