// The outbound listener answers a mesh error with the same headers and body whether a proxied call
// failed (written on the raw response) or a mesh API route threw it (written through fastify):
// Retry-After and mcp-mesh-attempts included.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { request, type Dispatcher } from 'undici';
import type { AsyncMessaging } from '../../../sidecar/src/async/messaging.ts';
import { createOutbound, type OutboundListener } from '../../../sidecar/src/outbound/server.ts';
import { OverloadedError } from '../../../sidecar/src/resilience/concurrency.ts';
import { NO_OBSERVER } from '../../../sidecar/src/telemetry/observer.ts';
import { answerHeaders } from '../../helpers/mesh.ts';

/** What a full concurrency limit says after two tries: when to come back, and how many tries were made. */
function overloaded(): OverloadedError {
  const err = new OverloadedError('reports.default', 'all slots for reports.default are taken', 4);
  err.attempts = 2;
  return err;
}

async function answer(response: Dispatcher.ResponseData): Promise<{ status: number; headers: Record<string, string>; body: unknown }> {
  return { status: response.statusCode, headers: answerHeaders(response.headers), body: await response.body.json() };
}

describe('outbound listener: one writer for mesh errors', () => {
  let outbound: OutboundListener;
  let url: string;

  before(async () => {
    const messaging: Pick<AsyncMessaging, 'status'> = { status: async () => { throw overloaded(); } };
    outbound = createOutbound({
      namespace: 'default', maxBodyBytes: 1024, inlineBodyBytes: 1024, maxHeaderBytes: 16 * 1024, headerTimeoutMs: 5000,
      logger: pino({ level: 'silent' }),
      pipeline: async () => { throw overloaded(); },
      isKnownService: () => true,
      async: { messaging: messaging as AsyncMessaging, maxMessageBytes: 1024 },
      egress: { allow: [], policy: () => { throw new Error('no egress in this test'); }, observer: NO_OBSERVER },
    });
    url = await outbound.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(() => outbound.app.close());

  it('a routed call and a mesh API route answer the same OVERLOADED alike: status, headers (Retry-After, mcp-mesh-attempts), body', async () => {
    const routed = await answer(await request(`${url}/report`, { headers: { host: 'reports' } }));
    const meshApi = await answer(await request(`${url}/mesh/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV`));
    const expectedBody = { error: { code: 'OVERLOADED', message: 'all slots for reports.default are taken', service: 'reports.default' } };
    assert.deepEqual(routed, {
      status: 503,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'content-length': String(Buffer.byteLength(JSON.stringify(expectedBody))),
        'mcp-mesh-error': 'OVERLOADED',
        'mcp-mesh-attempts': '2',
        'retry-after': '4',
      },
      body: expectedBody,
    });
    assert.deepEqual(meshApi, routed);
  });
});
