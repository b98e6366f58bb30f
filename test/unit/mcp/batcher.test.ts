import { describe, it, mock, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Batcher, type BatcherOptions } from '../../../sidecar/src/mcp/batcher.ts';
import { MessageType, Priority, type Envelope } from '../../../sidecar/src/mcp/codec.ts';

/** One turn of the event loop's check phase: the batcher's own setImmediate (scheduled earlier) runs first. */
const nextImmediate = () => new Promise<void>((resolve) => setImmediate(resolve));

function envelope(id: string, priority?: Priority, payloadBytes = 0): Envelope {
  return { id, type: MessageType.REQUEST, ...(priority === undefined ? {} : { priority }), payload: new Uint8Array(payloadBytes) };
}

/** A recording sink; `accept` decides what write() returns (false = transport full). */
function recordingSink() {
  const batches: string[][] = [];
  const state = { accept: true };
  const sink = (envelopes: Envelope[]) => {
    batches.push(envelopes.map((e) => e.id));
    return state.accept;
  };
  return { batches, state, sink };
}

const defaults: BatcherOptions = { maxCount: 128, maxBytes: 1 << 20, lingerMs: 0 };
const ENVELOPE_OVERHEAD = 64; // sizeOf() in batcher.ts counts 64 bytes per envelope plus its payload

describe('Batcher', () => {
  afterEach(() => mock.timers.reset());

  it('sends a lone envelope on the next setImmediate, with no timer having to advance', async () => {
    // Timers are frozen: if the flush depended on setTimeout, nothing would go out.
    mock.timers.enable({ apis: ['setTimeout'] });
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    batcher.enqueue(envelope('a'));
    assert.deepEqual(batches, [], 'nothing is written synchronously inside enqueue()');
    assert.equal(batcher.queued, 1);
    await nextImmediate();
    assert.deepEqual(batches, [['a']]);
    assert.equal(batcher.queued, 0);
  });

  it('coalesces a burst enqueued in one synchronous run into one batch', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    const ids = Array.from({ length: 50 }, (_, i) => `e${i}`);
    for (const id of ids) batcher.enqueue(envelope(id));
    await nextImmediate();
    assert.deepEqual(batches, [ids]);
  });

  it('sends envelopes enqueued in a later turn as a new batch', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    batcher.enqueue(envelope('a'));
    await nextImmediate();
    batcher.enqueue(envelope('b'));
    batcher.enqueue(envelope('c'));
    await nextImmediate();
    assert.deepEqual(batches, [['a'], ['b', 'c']]);
  });

  it('splits at maxCount, in order, all in the same flush', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, { ...defaults, maxCount: 3 });
    for (let i = 0; i < 8; i++) batcher.enqueue(envelope(`e${i}`));
    await nextImmediate();
    assert.deepEqual(batches, [['e0', 'e1', 'e2'], ['e3', 'e4', 'e5'], ['e6', 'e7']]);
  });

  it('splits at maxBytes; an envelope larger than maxBytes still goes, alone', async () => {
    const { batches, sink } = recordingSink();
    const maxBytes = 1000;
    const batcher = new Batcher(sink, { ...defaults, maxBytes });
    // 400 + 64 each: two fit (928), a third would not (1392).
    batcher.enqueue(envelope('a', undefined, 400));
    batcher.enqueue(envelope('b', undefined, 400));
    batcher.enqueue(envelope('c', undefined, 400));
    batcher.enqueue(envelope('huge', undefined, 5000));
    batcher.enqueue(envelope('d', undefined, 10));
    await nextImmediate();
    assert.deepEqual(batches, [['a', 'b'], ['c'], ['huge'], ['d']]);
  });

  it('counts exactly up to maxBytes inclusive', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, { ...defaults, maxBytes: 2 * (ENVELOPE_OVERHEAD + 100) });
    batcher.enqueue(envelope('a', undefined, 100));
    batcher.enqueue(envelope('b', undefined, 100));
    batcher.enqueue(envelope('c', undefined, 0));
    await nextImmediate();
    assert.deepEqual(batches, [['a', 'b'], ['c']]);
  });

  it('orders a batch HIGH, then MEDIUM (also the default), then LOW, FIFO within a priority', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    batcher.enqueue(envelope('low1', Priority.LOW));
    batcher.enqueue(envelope('med1', Priority.MEDIUM));
    batcher.enqueue(envelope('high1', Priority.HIGH));
    batcher.enqueue(envelope('none', undefined));
    batcher.enqueue(envelope('low2', Priority.LOW));
    batcher.enqueue(envelope('high2', Priority.HIGH));
    await nextImmediate();
    assert.deepEqual(batches, [['high1', 'high2', 'med1', 'none', 'low1', 'low2']]);
  });

  it('fills a split batch from higher lanes first (maxCount)', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, { ...defaults, maxCount: 2 });
    batcher.enqueue(envelope('low', Priority.LOW));
    batcher.enqueue(envelope('med', Priority.MEDIUM));
    batcher.enqueue(envelope('high', Priority.HIGH));
    await nextImmediate();
    assert.deepEqual(batches, [['high', 'med'], ['low']]);
  });

  it('never lets a lower lane fill room that the next higher-priority envelope could not use', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, { ...defaults, maxBytes: 1000 });
    batcher.enqueue(envelope('high-small', Priority.HIGH, 100)); // 164
    batcher.enqueue(envelope('high-big', Priority.HIGH, 900)); //   964: does not fit after high-small
    batcher.enqueue(envelope('low-tiny', Priority.LOW, 0)); //      64: would fit, must not jump the queue
    await nextImmediate();
    assert.deepEqual(batches, [['high-small'], ['high-big'], ['low-tiny']]);
  });

  it('holds envelopes while the sink is full and sends them together after drained()', async () => {
    const { batches, state, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    state.accept = false;
    batcher.enqueue(envelope('a'));
    await nextImmediate();
    assert.deepEqual(batches, [['a']], 'the batch that filled the transport was still handed over');

    batcher.enqueue(envelope('b'));
    await nextImmediate();
    batcher.enqueue(envelope('c', Priority.HIGH));
    await nextImmediate();
    batcher.enqueue(envelope('d'));
    await nextImmediate();
    assert.deepEqual(batches, [['a']], 'nothing more is written while blocked');
    assert.equal(batcher.queued, 3);

    state.accept = true;
    batcher.drained();
    assert.equal(batches.length, 1, 'drained() schedules the flush, it does not write synchronously');
    await nextImmediate();
    assert.deepEqual(batches, [['a'], ['c', 'b', 'd']]);
    assert.equal(batcher.queued, 0);
  });

  it('stops mid-flush when the sink turns full, keeping the rest for drained()', async () => {
    const { batches, state, sink } = recordingSink();
    const batcher = new Batcher(sink, { ...defaults, maxCount: 2 });
    for (const id of ['a', 'b', 'c', 'd', 'e']) batcher.enqueue(envelope(id));
    state.accept = false;
    await nextImmediate();
    assert.deepEqual(batches, [['a', 'b']]);
    assert.equal(batcher.queued, 3);
    state.accept = true;
    batcher.drained();
    await nextImmediate();
    assert.deepEqual(batches, [['a', 'b'], ['c', 'd'], ['e']]);
  });

  it('drained() with nothing queued writes nothing', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    batcher.drained();
    await nextImmediate();
    assert.deepEqual(batches, []);
  });

  it('with lingerMs > 0, waits for the linger and then sends everything that arrived meanwhile', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, { ...defaults, lingerMs: 5 });
    batcher.enqueue(envelope('a'));
    await nextImmediate();
    mock.timers.tick(4);
    batcher.enqueue(envelope('b'));
    await nextImmediate();
    assert.deepEqual(batches, [], 'nothing before the linger has passed');
    mock.timers.tick(1);
    assert.deepEqual(batches, [['a', 'b']]);
    // The next envelope waits for a fresh linger.
    batcher.enqueue(envelope('c'));
    mock.timers.tick(4);
    assert.deepEqual(batches, [['a', 'b']]);
    mock.timers.tick(1);
    assert.deepEqual(batches, [['a', 'b'], ['c']]);
  });

  it('close() returns the unsent envelopes in priority order, sends nothing afterwards and refuses more', async () => {
    const { batches, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    batcher.enqueue(envelope('low', Priority.LOW));
    batcher.enqueue(envelope('med', Priority.MEDIUM));
    batcher.enqueue(envelope('high', Priority.HIGH));
    const unsent = batcher.close();
    assert.deepEqual(unsent.map((e) => e.id), ['high', 'med', 'low']);
    assert.equal(batcher.queued, 0);
    await nextImmediate();
    assert.deepEqual(batches, [], 'the flush scheduled before close() must not send');
    assert.throws(() => batcher.enqueue(envelope('late')), /closed/);
  });

  it('close() while blocked returns what was held back', async () => {
    const { state, sink } = recordingSink();
    const batcher = new Batcher(sink, defaults);
    state.accept = false;
    batcher.enqueue(envelope('a'));
    await nextImmediate();
    batcher.enqueue(envelope('b'));
    batcher.enqueue(envelope('c'));
    assert.deepEqual(batcher.close().map((e) => e.id), ['b', 'c']);
  });
});
