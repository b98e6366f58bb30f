import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { takeIfComplete } from '../../../sidecar/src/inbound/app-forwarder.ts';

describe('takeIfComplete (short chunked answers ride inline)', () => {
  it('a body that has ended within the turn comes back whole', async () => {
    const taken = await takeIfComplete(Readable.from([Buffer.from('hel'), Buffer.from('lo')]), 1024);
    assert.ok('bytes' in taken);
    assert.equal(taken.bytes.toString(), 'hello');
  });

  it('a body still open after the turn becomes a stream that replays what was read, then the rest', async () => {
    const body = new PassThrough();
    body.write('first ');
    const taken = await takeIfComplete(body, 1024);
    assert.ok('rest' in taken, 'an open stream is not waited for');
    body.end('and the rest');
    assert.equal(await text(taken.rest), 'first and the rest');
  });

  it('a body over the limit becomes a stream at once, nothing lost', async () => {
    const taken = await takeIfComplete(Readable.from([Buffer.alloc(600, 97), Buffer.alloc(600, 98)]), 1000);
    assert.ok('rest' in taken);
    assert.equal(await text(taken.rest), 'a'.repeat(600) + 'b'.repeat(600));
  });

  it('a body that fails before the turn ends rejects (the caller gets a coded error, not a cut stream)', async () => {
    const body = new PassThrough();
    const taken = takeIfComplete(body, 1024);
    body.destroy(new Error('socket hang up'));
    await assert.rejects(taken, /socket hang up/);
  });

  it('destroying the replay stream destroys the app body', async () => {
    const body = new PassThrough();
    body.write('x');
    const taken = await takeIfComplete(body, 1024);
    assert.ok('rest' in taken);
    const closed = new Promise((resolve) => body.once('close', resolve));
    taken.rest.destroy();
    await closed;
    assert.equal(body.destroyed, true);
  });
});
