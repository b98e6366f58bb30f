// POST /mesh/v1/batch: many calls in one request, each through the full pipeline, results in input
// order, one failure never failing the batch.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startMesh, type Mesh } from '../helpers/mesh.ts';
import type { SidecarProcess } from '../helpers/sidecar-process.ts';

interface Result { status?: number; headers?: Record<string, string | string[]>; body?: string; bodyBase64?: string; error?: { code: string; message: string } }

describe('batch calls', { timeout: 30_000 }, () => {
  let mesh: Mesh;
  let caller: SidecarProcess;

  before(async () => {
    mesh = await startMesh();
    caller = mesh.caller;
  });
  after(() => mesh?.close());

  const batch = async (payload: unknown) => {
    const response = await request(`${caller.outboundUrl}/mesh/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) });
    return { status: response.statusCode, code: response.headers['mcp-mesh-error'], json: await response.body.json() as { results: Result[] } & { error?: { code: string } } };
  };

  test('100 calls with 10 failing: 90 answers and 10 coded errors, in input order', async () => {
    const calls = Array.from({ length: 100 }, (_, i) => (i % 10 === 3
      ? { service: 'nowhere', path: `/call/${i}` }
      : { service: 'payments', method: 'POST', path: `/call/${i}?n=${i}`, headers: { 'x-index': String(i) }, body: `body-${i}` }));
    const { status, json } = await batch({ calls, concurrency: 8 });
    assert.equal(status, 200);
    assert.equal(json.results.length, 100);
    json.results.forEach((result, i) => {
      if (i % 10 === 3) {
        assert.equal(result.error?.code, 'UNKNOWN_SERVICE', `call ${i}`);
        return;
      }
      assert.equal(result.status, 200, `call ${i}: ${JSON.stringify(result)}`);
      const echo = JSON.parse(result.body!) as { method: string; url: string; body: string; rawHeaders: string[] };
      assert.equal(echo.url, `/call/${i}?n=${i}`, 'answers are in input order');
      assert.equal(echo.method, 'POST');
      assert.equal(echo.body, `body-${i}`);
    });
    assert.equal(json.results.filter((r) => r.error).length, 10);
  });

  test('a malformed batch is a coded 400; nothing is called', async () => {
    const { status, code } = await batch({ calls: [{ service: 'payments', path: 'no-slash' }] });
    assert.equal(status, 400);
    assert.equal(code, 'BAD_REQUEST');
    const empty = await batch({ calls: [] });
    assert.equal(empty.status, 400);
  });
});
