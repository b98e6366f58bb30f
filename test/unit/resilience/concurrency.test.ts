import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConcurrencyLimiter, OverloadedError, type Release } from '../../../sidecar/src/resilience/concurrency.ts';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';

const limits = { maxInFlight: 2, maxQueue: 2, retryAfterSeconds: 3 };

/** Settle order of promises, to check FIFO without timers. */
function track(order: string[], name: string, p: Promise<Release>): Promise<Release> {
  return p.then((release) => { order.push(name); return release; });
}

describe('ConcurrencyLimiter', () => {
  it('grants up to maxInFlight at once', async () => {
    const limiter = new ConcurrencyLimiter(limits, 'pay.shop');
    await limiter.acquire();
    await limiter.acquire();
    assert.equal(limiter.inFlight, 2);
    let third = false;
    void limiter.acquire().then(() => { third = true; });
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(third, false, 'the third call waits');
    assert.equal(limiter.queued, 1);
  });

  it('lets waiters in first come, first served as slots free', async () => {
    const limiter = new ConcurrencyLimiter(limits);
    const first = await limiter.acquire();
    const second = await limiter.acquire();
    const order: string[] = [];
    const a = track(order, 'a', limiter.acquire());
    const b = track(order, 'b', limiter.acquire());
    second();
    (await a)();
    first();
    await b;
    assert.deepEqual(order, ['a', 'b']);
    assert.equal(limiter.inFlight, 1, 'only b holds a slot now');
  });

  it('lets a high-priority waiter in before low ones queued earlier, FIFO within a lane', async () => {
    const limiter = new ConcurrencyLimiter({ maxInFlight: 1, maxQueue: 10, retryAfterSeconds: 1 });
    const holder = await limiter.acquire();
    const order: string[] = [];
    // Each waiter gives its slot back as soon as it gets it, letting the next one in.
    const waiters = [
      track(order, 'low-1', limiter.acquire(undefined, 'low')),
      track(order, 'low-2', limiter.acquire(undefined, 'low')),
      track(order, 'medium', limiter.acquire()),
      track(order, 'high', limiter.acquire(undefined, 'high')),
    ].map((granted) => granted.then((release) => release()));
    holder();
    await Promise.all(waiters);
    assert.deepEqual(order, ['high', 'medium', 'low-1', 'low-2']);
  });

  it('refuses at once with OVERLOADED and Retry-After when the queue is full', async () => {
    const limiter = new ConcurrencyLimiter(limits, 'pay.shop');
    for (let i = 0; i < 2; i++) await limiter.acquire();
    void limiter.acquire();
    void limiter.acquire();
    await assert.rejects(limiter.acquire(), (err: unknown) => {
      assert.ok(err instanceof OverloadedError);
      assert.equal(err.code, 'OVERLOADED');
      assert.equal(err.status, 503);
      assert.equal(err.retryAfterSeconds, 3);
      assert.equal(err.service, 'pay.shop');
      return true;
    });
  });

  it('with no queue, refuses as soon as the slots are taken', async () => {
    const limiter = new ConcurrencyLimiter({ maxInFlight: 1, maxQueue: 0, retryAfterSeconds: 1 });
    await limiter.acquire();
    await assert.rejects(limiter.acquire(), OverloadedError);
  });

  it('takes an aborted waiter out of the queue and rejects it with the signal reason', async () => {
    const limiter = new ConcurrencyLimiter(limits);
    const held = await limiter.acquire();
    await limiter.acquire();
    const controller = new AbortController();
    const gone = limiter.acquire(controller.signal);
    const order: string[] = [];
    const next = track(order, 'next', limiter.acquire());
    const reason = new MeshError('CLIENT_CLOSED', 'app went away');
    controller.abort(reason);
    await assert.rejects(gone, (err) => err === reason);
    assert.equal(limiter.queued, 1);
    held();
    await next;
    assert.deepEqual(order, ['next'], 'the slot went to the waiter behind the aborted one');
    assert.equal(limiter.inFlight, 2);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const limiter = new ConcurrencyLimiter(limits);
    await assert.rejects(limiter.acquire(AbortSignal.abort(new Error('late'))), /late/);
    assert.equal(limiter.inFlight, 0);
  });

  it('ignores a second release of the same slot', async () => {
    const limiter = new ConcurrencyLimiter(limits);
    const release = await limiter.acquire();
    await limiter.acquire();
    release();
    release();
    assert.equal(limiter.inFlight, 1);
  });

  it('has no limit when maxInFlight is 0', async () => {
    const limiter = new ConcurrencyLimiter({ maxInFlight: 0, maxQueue: 0, retryAfterSeconds: 1 });
    for (let i = 0; i < 1000; i++) await limiter.acquire();
    assert.equal(limiter.inFlight, 1000);
  });

  it('lets waiters in when the limit is raised', async () => {
    const limiter = new ConcurrencyLimiter({ maxInFlight: 1, maxQueue: 5, retryAfterSeconds: 1 });
    await limiter.acquire();
    const waiting = [limiter.acquire(), limiter.acquire()];
    limiter.setPolicy({ maxInFlight: 3, maxQueue: 5, retryAfterSeconds: 1 });
    await Promise.all(waiting);
    assert.equal(limiter.inFlight, 3);
    assert.equal(limiter.queued, 0);
  });
});
