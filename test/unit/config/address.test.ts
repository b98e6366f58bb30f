import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatHostPort, parseHostPort } from '../../../sidecar/src/config/address.ts';

describe('parseHostPort / formatHostPort', () => {
  it('parses IPv4, names, bracketed IPv6 and port 0', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:15001'), { host: '127.0.0.1', port: 15001 });
    assert.deepEqual(parseHostPort('localhost:0'), { host: 'localhost', port: 0 });
    assert.deepEqual(parseHostPort('payments-0.payments.shop:15002'), { host: 'payments-0.payments.shop', port: 15002 });
    assert.deepEqual(parseHostPort('[::1]:15001'), { host: '::1', port: 15001 });
    assert.deepEqual(parseHostPort('[2001:db8::1]:80'), { host: '2001:db8::1', port: 80 });
    assert.deepEqual(parseHostPort('0.0.0.0:65535'), { host: '0.0.0.0', port: 65535 });
  });

  it('refuses ports out of range', () => {
    assert.throws(() => parseHostPort('127.0.0.1:65536'), /port out of range/);
    assert.throws(() => parseHostPort('127.0.0.1:99999'), /port out of range/);
    // ('127.0.0.1:' would give port 0, but the schema's Address pattern never lets an empty port through.)
    assert.throws(() => parseHostPort('127.0.0.1:1.5'), /port out of range/);
  });

  it('formats back, bracketing IPv6', () => {
    for (const address of ['127.0.0.1:15001', 'localhost:0', '[::1]:15001', '[2001:db8::1]:80']) {
      assert.equal(formatHostPort(parseHostPort(address)), address);
    }
  });
});
