// What both link ends share (mcp/link-end.ts): HELLO and capabilities, decompression of a payload,
// and the heartbeat, on a mocked clock.
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { Compression, MessageType, type Envelope } from '../../../sidecar/src/mcp/codec.ts';
import { Capabilities, controlEnvelope, decompressEnvelope, Heartbeat } from '../../../sidecar/src/mcp/link-end.ts';
import { PROTOCOL_MAJOR } from '../../../sidecar/src/mcp/version.ts';

describe('link ends', () => {
  it('HELLO: announces this end\'s capabilities; uses only those both ends announced; refuses another major version', () => {
    const mine = new Capabilities({ capabilities: ['batch', 'gzip'] });
    const hello = mine.hello({ source: 'orders.default', instance: 'orders-1' });
    assert.equal(hello.type, MessageType.HELLO);
    assert.deepEqual(hello.hello, { major: PROTOCOL_MAJOR, minor: hello.hello!.minor, capabilities: ['batch', 'gzip'], node: 'orders-1' });
    assert.equal(mine.accept({ ...controlEnvelope(MessageType.HELLO), hello: { major: PROTOCOL_MAJOR, minor: 0, capabilities: ['gzip', 'lz4'] } }), undefined);
    assert.ok(mine.shared('gzip'));
    assert.ok(mine.peerCan('lz4') && !mine.shared('lz4'), 'the peer has lz4, this end does not');
    assert.match(mine.accept({ ...controlEnvelope(MessageType.HELLO), hello: { major: PROTOCOL_MAJOR + 1, minor: 0 } })!, /not supported/);
  });

  it('decompresses in place, or fails that one call with PROTOCOL_ERROR naming its service', () => {
    const good: Envelope = { ...controlEnvelope(MessageType.RESPONSE), payload: gzipSync('hello'), compression: Compression.GZIP };
    assert.equal(decompressEnvelope(good), undefined);
    assert.equal(Buffer.from(good.payload!).toString(), 'hello');
    assert.equal(good.compression, Compression.IDENTITY);
    const bad: Envelope = { ...controlEnvelope(MessageType.RESPONSE), payload: Buffer.from('not gzip'), compression: Compression.GZIP };
    const error = decompressEnvelope(bad, 'payments.default');
    assert.equal(error?.code, 'PROTOCOL_ERROR');
    assert.equal(error?.service, 'payments.default');
  });

  describe('heartbeat', () => {
    beforeEach(() => mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 }));
    afterEach(() => mock.timers.reset());

    it('sends when this end was quiet for an interval, and gives up on a peer silent too long', () => {
      const told: string[] = [];
      const heartbeat = new Heartbeat({ heartbeatIntervalMs: 1000, unhealthyAfterMs: 3000 }, {
        idle: () => { told.push('idle'); heartbeat.lastSent = Date.now(); },
        silent: (ms) => told.push(`silent ${ms}`),
      });
      heartbeat.start();
      mock.timers.tick(500);
      assert.deepEqual(told, [], 'half an interval: nothing to do');
      mock.timers.tick(500);
      assert.deepEqual(told, ['idle']);
      heartbeat.lastReceived = Date.now(); // the peer answered
      for (let i = 0; i < 6; i++) mock.timers.tick(500);
      assert.deepEqual(told, ['idle', 'idle', 'idle', 'idle'], 'one per interval while the peer is not yet overdue');
      mock.timers.tick(500);
      assert.deepEqual(told.at(-1), 'silent 3500');
      heartbeat.stop();
      const count = told.length;
      mock.timers.tick(5000);
      assert.equal(told.length, count, 'stopped: no more checks');
    });
  });
});
