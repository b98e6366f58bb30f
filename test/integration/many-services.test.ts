// A sidecar told about 5,000 services, none of them reachable (each at its own loopback address, on
// a port where nothing listens), still answers its liveness probe and honours SIGTERM within
// shutdown.grace. Before the fix, each link that reconnected and each link closed at shutdown swept
// grpc-js's process-wide subchannel pool (every channel's subchannels): N links cost N², and the
// event loop was blocked for seconds (/healthz took about 9 s, SIGTERM about 8 s with a 2 s grace).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { closedPort } from '../helpers/apps.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

const SERVICES = 5000;
const GRACE_MS = 1000;

describe(`a sidecar with ${SERVICES} unreachable static services`, { timeout: 90_000 }, () => {
  let sidecar: SidecarProcess;

  before(async () => {
    const port = await closedPort();
    const peers: Record<string, string[]> = {};
    // 127.0.0.0/8 is all loopback: 5,000 distinct peer addresses, each refusing at once.
    for (let i = 0; i < SERVICES; i++) peers[`svc-${i}`] = [`127.0.${Math.floor(i / 250) + 1}.${(i % 250) + 1}:${port}`];
    sidecar = await SidecarProcess.start({
      config: sidecarConfig({ service: 'orders', appPort: 1, peers, extra: { shutdown: { grace: `${GRACE_MS}ms` } } }),
      timeoutMs: 30_000,
    });
  });
  after(async () => { await sidecar?.stop(); });

  test('/healthz answers while every link dials and fails', async () => {
    const response = await within(request(`http://127.0.0.1:${sidecar.ports.admin}/healthz`), 6000, '/healthz did not answer');
    assert.equal(response.statusCode, 200);
    await response.body.dump();
  });

  test('SIGTERM: the sidecar exits 0 within shutdown.grace (plus a margin for the process to end)', async () => {
    sidecar.signal('SIGTERM');
    const exit = await within(sidecar.exited, GRACE_MS + 4000, 'the sidecar did not exit after SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, sidecar.describe());
  });
});
