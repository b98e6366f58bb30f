// The calling end of a Stream call with a slow reader: the peer ends the call long before the
// reader has taken the body, and the body must still arrive whole.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { MessageType } from '../../../sidecar/src/mcp/codec.ts';
import { PeerLink } from '../../../sidecar/src/mcp/link.ts';
import { MeshServer } from '../../../sidecar/src/mcp/server.ts';
import { streamCall } from '../../../sidecar/src/mcp/stream-client.ts';

const CHUNK = 16 * 1024;
const TOTAL = 2 * 1024 * 1024;

describe('streamCall with a slow reader', () => {
  const logger = pino({ level: 'silent' });
  const settings = { source: 'a.default', instance: 'a-1', batchMaxCount: 128, batchMaxBytes: 1 << 20, lingerMs: 0, heartbeatIntervalMs: 1000, unhealthyAfterMs: 3000, logger };
  let server: MeshServer;
  let link: PeerLink;

  before(async () => {
    // Test double of the app side: answers every Stream call with TOTAL bytes at once.
    server = new MeshServer({
      unary: async () => { throw new Error('not used'); },
      pull: () => undefined,
      stream: async (head) => ({
        head: { id: 'r', type: MessageType.RESPONSE, correlationId: head.id, http: { status: 200 } },
        body: Readable.from((function* () { for (let i = 0; i < TOTAL / CHUNK; i++) yield Buffer.alloc(CHUNK, 1); })()),
      }),
    }, settings);
    const port = await server.listen('127.0.0.1', 0);
    link = new PeerLink(`127.0.0.1:${port}`, { ...settings, reconnectBaseMs: 100, reconnectMaxMs: 1000 });
    await link.whenReady(5000);
  });
  after(async () => {
    link.close();
    await server.close();
  });

  it('gets every byte even though the peer finished first', async () => {
    const response = await streamCall(link.openStream(), { id: 'q', type: MessageType.REQUEST, http: { method: 'GET', path: '/' } }, null, { signal: new AbortController().signal, idleTimeoutMs: 10_000 });
    let received = 0;
    // The pause per chunk is the slow reader under test (an app on a slow network), not a wait.
    for await (const chunk of response.body) {
      received += (chunk as Buffer).byteLength;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(received, TOTAL);
  });
});
