// The demo's applications: small, real HTTP servers on 127.0.0.1 (port 0), one per replica. They know
// nothing about the mesh except the address of their own sidecar's outbound listener, which `orders`
// uses to call `payments` by name (Host: payments). Every answer carries `x-replica`, so callers can
// see which replica served them; each app also counts what it served, to cross-check the callers.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';

export type ServiceName = 'frontend' | 'orders' | 'payments' | 'events';

export interface DemoApp {
  service: ServiceName;
  replica: string;
  port: number;
  /** Requests this replica's app answered, by route ("GET /orders/:id", …). */
  served: Map<string, number>;
  /** Async messages and events its sidecar delivered to it, by route (kept apart: no caller waits on them). */
  delivered: Map<string, number>;
  /** Where this replica's sidecar takes outbound calls; set once the sidecar is up. */
  sidecarOutbound: number;
  close(): Promise<void>;
}

/** Declined charges: an app-level error (402, no `mcp-mesh-error` header) the demo asks for on purpose. */
export const DECLINED_AMOUNT = 666;

const agent = new Agent({ connections: 32, keepAliveTimeout: 10_000 });

export async function startApp(service: ServiceName, replica: string): Promise<DemoApp> {
  const app: DemoApp = { service, replica, port: 0, served: new Map(), delivered: new Map(), sidecarOutbound: 0, close: async () => {} };
  const handler = HANDLERS[service];
  const server = http.createServer((req, res) => {
    res.setHeader('x-replica', replica);
    // A delivery of an async message or event carries its message id; callers never see its answer.
    const tally = req.headers['mcp-mesh-message-id'] ? app.delivered : app.served;
    const count = (route: string) => tally.set(route, (tally.get(route) ?? 0) + 1);
    handler(app, req, res, count).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  app.port = (server.address() as AddressInfo).port;
  app.close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return app;
}

export async function closeAgent(): Promise<void> {
  await agent.close();
}

type Handler = (app: DemoApp, req: http.IncomingMessage, res: http.ServerResponse, count: (route: string) => void) => Promise<void>;

const HANDLERS: Record<ServiceName, Handler> = {
  // The load source: its app does nothing; the demo's driver makes its outbound calls.
  async frontend(_app, req, res, count) {
    await drain(req);
    count(`${req.method} ${req.url}`);
    json(res, 200, { ok: true });
  },

  async orders(app, req, res, count) {
    const url = new URL(req.url ?? '/', 'http://orders');
    if (req.method === 'GET' && url.pathname.startsWith('/orders/')) {
      await drain(req);
      count('GET /orders/:id');
      json(res, 200, { id: url.pathname.slice('/orders/'.length), status: 'shipped', items: 3 });
      return;
    }
    if (req.method === 'POST' && url.pathname === '/orders') {
      count('POST /orders');
      const order = JSON.parse((await drain(req)).toString('utf8') || '{}') as { amount?: number };
      const orderId = `o-${Math.random().toString(36).slice(2, 10)}`;
      // A chained call: orders → (own sidecar) → payments, addressed by name.
      const charge = await request(`http://127.0.0.1:${app.sidecarOutbound}/charge`, {
        method: 'POST', dispatcher: agent,
        headers: { host: 'payments', 'content-type': 'application/json', 'x-order-id': orderId },
        body: JSON.stringify({ orderId, amount: order.amount ?? 10 }),
      });
      const payment = await charge.body.json() as Record<string, unknown>;
      const upstream = String(charge.headers['x-replica'] ?? '');
      if (upstream) res.setHeader('x-upstream-replica', upstream);
      const meshError = charge.headers['mcp-mesh-error'];
      if (meshError) res.setHeader('x-upstream-mesh-error', String(meshError));
      if (charge.statusCode !== 200) {
        json(res, charge.statusCode === 402 ? 402 : 502, { orderId, error: 'payment failed', payment });
        return;
      }
      json(res, 201, { orderId, payment });
      return;
    }
    if (req.method === 'PUT' && url.pathname === '/upload') {
      count('PUT /upload');
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of req) { hash.update(chunk as Buffer); bytes += (chunk as Buffer).length; }
      json(res, 200, { bytes, sha256: hash.digest('hex') });
      return;
    }
    await drain(req);
    json(res, 404, { error: 'no such route' });
  },

  async payments(_app, req, res, count) {
    const url = new URL(req.url ?? '/', 'http://payments');
    const body = await drain(req);
    if (req.method === 'GET' && url.pathname === '/balance') {
      count('GET /balance');
      json(res, 200, { account: url.searchParams.get('account'), balance: 1234.5 });
      return;
    }
    if (req.method === 'POST' && url.pathname === '/events/orders-seen') {
      count('POST /events/orders-seen');
      json(res, 200, { seen: true });
      return;
    }
    if (req.method === 'POST' && url.pathname === '/charge') {
      count('POST /charge');
      const charge = JSON.parse(body.toString('utf8') || '{}') as { orderId?: string; amount?: number };
      if (charge.amount === DECLINED_AMOUNT) {
        json(res, 402, { declined: true, reason: 'card declined (on purpose)' });
        return;
      }
      json(res, 200, { chargeId: `c-${Math.random().toString(36).slice(2, 10)}`, orderId: charge.orderId, source: req.headers['mcp-mesh-source'] });
      return;
    }
    json(res, 404, { error: 'no such route' });
  },

  async events(_app, req, res, count) {
    const url = new URL(req.url ?? '/', 'http://events');
    if (req.method === 'GET' && url.pathname === '/stream') {
      await drain(req);
      count('GET /stream (SSE)');
      const n = Number(url.searchParams.get('n') ?? 10);
      const interval = Number(url.searchParams.get('interval') ?? 50);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (let i = 1; i <= n; i++) {
        if (res.destroyed) return;
        res.write(`id: ${i}\nevent: tick\ndata: {"seq":${i},"of":${n},"sentAt":${Date.now()}}\n\n`);
        if (i < n) await new Promise((resolve) => setTimeout(resolve, interval));
      }
      res.end();
      return;
    }
    if (req.method === 'POST' && url.pathname === '/events/order-created') {
      await drain(req);
      count('POST /events/order-created');
      json(res, 200, { recorded: true });
      return;
    }
    if (req.method === 'POST' && url.pathname === '/events') {
      await drain(req);
      count('POST /events');
      json(res, 202, { accepted: true });
      return;
    }
    await drain(req);
    json(res, 404, { error: 'no such route' });
  },
};

async function drain(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
