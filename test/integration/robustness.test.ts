// Inputs that once took a sidecar down or lost data: each must leave the sidecar serving.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { closedPort } from '../helpers/apps.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';

describe('robustness', { timeout: 60_000 }, () => {
  let app: Server;
  let callee: SidecarProcess;
  let caller: SidecarProcess;

  before(async () => {
    app = createServer((req, res) => { req.resume(); res.end('ok'); });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    callee = await SidecarProcess.start({ config: sidecarConfig({ service: 'files', appPort: (app.address() as AddressInfo).port }) });
    const nowhere = `127.0.0.1:${await closedPort()}`;
    caller = await SidecarProcess.start({
      config: sidecarConfig({ service: 'web', appPort: 1, peers: { files: [callee.inboundAddress], nowhere: [nowhere] }, extra: { timeouts: { connect: '3s' } } }),
    });
    await caller.waitForLog((l) => l.msg === 'link ready' && l.peer === callee.inboundAddress);
  });
  after(async () => {
    await Promise.all([caller?.stop(), callee?.stop()]);
    app?.close();
  });

  const alive = async () => {
    const response = await request(`http://127.0.0.1:${caller.ports.admin}/healthz`);
    await response.body.dump();
    assert.equal(response.statusCode, 200, 'the sidecar still serves');
    assert.equal(caller.exitStatus, undefined, 'the sidecar process is still running');
  };

  test('a CONNECT to an unknown host, reset at once, does not crash the sidecar', async () => {
    const socket = connect(caller.ports.outbound, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write('CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n');
    socket.resetAndDestroy();
    await alive();
  });

  test('a chunked upload aborted while the call waits for a link does not crash the sidecar', async () => {
    const mark = caller.mark();
    const socket = connect(caller.ports.outbound, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write('POST /upload HTTP/1.1\r\nHost: nowhere\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    // The call is now waiting (up to timeouts.connect) for a link to "nowhere"; the client gives up.
    await new Promise<void>((resolve) => setImmediate(resolve));
    socket.resetAndDestroy();
    await alive();
    assert.equal(caller.logs.slice(mark).filter((l) => l.level >= 60).length, 0, 'nothing fatal was logged');
  });
});
