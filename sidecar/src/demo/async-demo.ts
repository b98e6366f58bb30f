// The demo's async section: the frontend hands its sidecar async charges (Prefer: respond-async, with
// ordering keys) and publishes events to a topic two services subscribe to, one as competing consumers
// and one as a broadcast to every replica. Every 202 is checked, then every message's status is read
// until all are delivered; the apps' own counts of what they received are the cross-check.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';

export const ASYNC_TOPIC = 'orders.created';

/** The subscriptions, as a policy file the publishing sidecar (frontend) loads. */
export function writeAsyncPolicy(dir: string): string {
  const file = path.join(dir, 'async-policies.yaml');
  writeFileSync(file, [
    'apiVersion: mcp-mesh.io/v1', 'kind: Policy', 'metadata: { name: events-subscriptions }',
    'spec:', '  service: events', '  subscriptions:', `    - { topic: ${ASYNC_TOPIC}, path: /events/order-created }`,
    '---',
    'apiVersion: mcp-mesh.io/v1', 'kind: Policy', 'metadata: { name: payments-subscriptions }',
    'spec:', '  service: payments', '  subscriptions:', `    - { topic: ${ASYNC_TOPIC}, path: /events/orders-seen, delivery: broadcast }`,
    '',
  ].join('\n'));
  return file;
}

export interface AsyncReport {
  calls: number;
  events: number;
  /** Messages the sidecar accepted (202) — async calls plus one per event copy. */
  accepted: number;
  /** Event copies per subscribing service. */
  copies: Record<string, number>;
  /** Final states read back from /mesh/v1/messages/<id>. */
  states: Record<string, number>;
  acceptP50Ms: number;
  acceptMaxMs: number;
  /** From the first send until every message was delivered. */
  allDeliveredMs: number;
  failures: string[];
}

export async function runAsyncDemo(outboundPort: number, options: { calls: number; events: number }, log: (line: string) => void, signal: AbortSignal): Promise<AsyncReport> {
  const agent = new Agent({ connections: 16 });
  const base = `http://127.0.0.1:${outboundPort}`;
  const report: AsyncReport = { calls: options.calls, events: options.events, accepted: 0, copies: {}, states: {}, acceptP50Ms: 0, acceptMaxMs: 0, allDeliveredMs: 0, failures: [] };
  const ids: string[] = [];
  const acceptMs: number[] = [];
  const t0 = performance.now();
  try {
    log(`async: ${options.calls} charges with Prefer: respond-async (4 ordering keys) and ${options.events} events to topic ${ASYNC_TOPIC}`);
    const send = async (i: number) => {
      const started = performance.now();
      const res = i < options.calls
        ? await request(`${base}/charge`, {
          method: 'POST', dispatcher: agent, signal,
          headers: { host: 'payments', prefer: 'respond-async', 'content-type': 'application/json', 'mcp-mesh-ordering-key': `account-${i % 4}` },
          body: JSON.stringify({ orderId: `async-${i}`, amount: 10 + i }),
        })
        : await request(`${base}/mesh/v1/publish/${ASYNC_TOPIC}`, {
          method: 'POST', dispatcher: agent, signal, headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ event: 'order.created', orderId: `event-${i}` }),
        });
      const body = await res.body.json() as { id?: string; messages?: { id: string; service: string }[]; error?: { code: string; message: string } };
      acceptMs.push(performance.now() - started);
      if (res.statusCode !== 202) {
        report.failures.push(`async ${i < options.calls ? 'call' : 'publish'} answered ${res.statusCode} ${body.error?.code ?? ''} ${body.error?.message ?? ''}`);
        return;
      }
      if (body.messages) {
        for (const m of body.messages) {
          ids.push(m.id);
          report.copies[m.service] = (report.copies[m.service] ?? 0) + 1;
        }
      } else if (body.id) {
        ids.push(body.id);
      }
    };
    const total = options.calls + options.events;
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => { while (next < total) await send(next++); }));
    report.accepted = ids.length;

    // Read every status until none is left to deliver (bounded: the demo never hangs here).
    const pending = new Set(ids);
    const deadline = performance.now() + 20_000;
    while (pending.size > 0 && performance.now() < deadline) {
      for (const id of [...pending]) {
        const res = await request(`${base}/mesh/v1/messages/${id}`, { dispatcher: agent, signal });
        const view = await res.body.json() as { state?: string };
        if (view.state !== 'queued' && view.state !== 'in-flight') {
          pending.delete(id);
          report.states[view.state ?? 'unknown'] = (report.states[view.state ?? 'unknown'] ?? 0) + 1;
        }
      }
      if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (pending.size > 0) report.failures.push(`${pending.size} async messages were still undelivered after 20 s`);
    report.allDeliveredMs = performance.now() - t0;
    acceptMs.sort((a, b) => a - b);
    report.acceptP50Ms = acceptMs[Math.floor(acceptMs.length / 2)] ?? 0;
    report.acceptMaxMs = acceptMs.at(-1) ?? 0;
    log(`async: ${report.accepted} messages accepted, ${report.states.delivered ?? 0} delivered in ${(report.allDeliveredMs / 1000).toFixed(1)} s`);
  } finally {
    await agent.close();
  }
  return report;
}
