// A calling app that closes a stream (an SSE client leaving) cancels it all the way to the called
// app, even while the stream is idle; and the calling sidecar does not log it as a broken link.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

describe('a closed stream', { timeout: 30_000 }, () => {
  let app: Server;
  let appSawClose: Promise<void>;
  let callee: SidecarProcess;
  let caller: SidecarProcess;

  before(async () => {
    let closed!: () => void;
    appSawClose = new Promise((resolve) => { closed = resolve; });
    // One event, then silence: the stream stays open and idle until the client goes away.
    app = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: hello\n\n');
      res.on('close', () => closed());
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    callee = await SidecarProcess.start({ config: sidecarConfig({ service: 'events', appPort: (app.address() as AddressInfo).port }) });
    caller = await SidecarProcess.start({ config: sidecarConfig({ service: 'web', appPort: 1, peers: { events: [callee.inboundAddress] } }) });
    await caller.waitForLog((l) => l.msg === 'link ready');
  });
  after(async () => {
    await Promise.all([caller?.stop(), callee?.stop()]);
    app?.close();
  });

  test('reaches the called app while idle, and is not logged as LINK_BROKEN', async () => {
    const mark = caller.mark();
    const response = await request(`${caller.outboundUrl}/stream`, { headers: { host: 'events', accept: 'text/event-stream' } });
    const iterator = response.body[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.match(Buffer.from(first.value as Uint8Array).toString(), /data: hello/);
    response.body.destroy(); // the client leaves while the stream is idle
    await within(appSawClose, 5000, 'the called app never saw the stream close');
    // The caller logs per-request outcomes at debug only; a warning here would be a false alarm.
    await caller.stop();
    assert.deepEqual(caller.logs.slice(mark).filter((l) => l.code === 'LINK_BROKEN'), [], 'no LINK_BROKEN warning for a client leaving');
  });
});
