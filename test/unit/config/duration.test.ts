import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { toMs } from '../../../sidecar/src/config/duration.ts';

describe('toMs', () => {
  it('converts every unit', () => {
    assert.equal(toMs('250ms'), 250);
    assert.equal(toMs('1s'), 1000);
    assert.equal(toMs('1.5s'), 1500);
    assert.equal(toMs('5m'), 300_000);
    assert.equal(toMs('1h'), 3_600_000);
    assert.equal(toMs('0s'), 0);
  });

  it('passes numbers through as milliseconds', () => {
    assert.equal(toMs(0), 0);
    assert.equal(toMs(1234), 1234);
  });

  it('rounds fractional milliseconds', () => {
    assert.equal(toMs('1.0005s'), 1001);
    assert.equal(toMs('0.4ms'), 0);
  });

  it('throws on anything else', () => {
    for (const bad of ['', '5', '5 s', '5sec', '1d', '-1s', '.5s', 's', '1e3ms', '1s ']) {
      assert.throws(() => toMs(bad), /not a duration/, JSON.stringify(bad));
    }
  });
});
