// A message too large for gRPC's limit between sidecars is refused for its own call, before it is
// sent: sent, it would break the whole link and every call on it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MeshError } from '../../../sidecar/src/errors/mesh-error.ts';
import { MAX_ENVELOPE_BYTES } from '../../../sidecar/src/mcp/link.ts';
import { requestEnvelope, withReadyLink } from './fixtures.ts';

describe('MCP message size limit', () => {
  it('a call whose message would exceed the limit is refused BODY_TOO_LARGE and counted; the link goes on', async () => {
    const limits: string[] = [];
    await withReadyLink({ link: { onLimit: (limit) => limits.push(limit) } }, async ({ handler, link }) => {
      const huge = requestEnvelope('/huge', '');
      huge.payload = Buffer.alloc(MAX_ENVELOPE_BYTES + 1);
      await assert.rejects(link.call(huge), (err: MeshError) => err.code === 'BODY_TOO_LARGE' && /MCP message/.test(err.message));
      assert.deepEqual(limits, ['frame_size']);
      const fine = await link.call(requestEnvelope('/after', 'small'));
      assert.equal(fine.http?.status, 200);
      assert.equal(link.state, 'ready');
      assert.deepEqual(handler.seen.map((s) => s.request.http?.path), ['/after'], 'the huge one never left');
    });
  });

  it('a message just under the limit is sent', async () => {
    await withReadyLink({}, async ({ link }) => {
      const big = requestEnvelope('/big', '');
      big.payload = Buffer.alloc(MAX_ENVELOPE_BYTES - 2 * 1024 * 1024);
      const answer = await link.call(big);
      assert.equal(answer.http?.status, 200);
    });
  });
});
