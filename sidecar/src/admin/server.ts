// The admin listener (127.0.0.1:15000 by default; docs/admin.md): probes, metrics, config dump,
// endpoints, sessions, the log level, and the status page with the JSON it polls.
//
//   GET /healthz        the process answers
//   GET /readyz         200 once started (config, policies, discovery loaded, listeners bound), 503 before and while draining
//   GET /endpoints      per link and per called service: endpoint health, in flight, EWMA, breakers, ejections
//   GET /config_dump    running config and effective policies
//   GET /sessions       MCP session affinity counts
//   GET /metrics        Prometheus text
//   GET|PUT|POST /logging[?level=…]  the log level, changed at run time
//   GET /               the status page (status-page.html): polls /status.json every second
//   GET /status.json    live rates and latency per service, endpoint and caller, with endpoint health
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { answerWithMeshErrors } from '../errors/fastify.ts';
import { MeshError } from '../errors/mesh-error.ts';
import { fastifyLogging } from '../telemetry/logger.ts';
import type { EndpointsView } from './endpoints-view.ts';
import type { LiveSnapshot } from './live-stats.ts';
import { registerLogging } from './logging.ts';
import { statusView, type Identity, type Readiness } from './status-view.ts';

export interface AdminState {
  /**
   * Where the sidecar is in its life, as main.ts knows it: starting (listeners not all bound, or
   * discovery without its first picture yet), ready, or draining (shutdown has begun).
   */
  readiness(): Readiness;
  endpoints(): EndpointsView;
  /** MCP session affinity counts per service. */
  sessions(): unknown;
  /** Prometheus text exposition of the sidecar's metrics. */
  metrics(request: IncomingMessage, response: ServerResponse): void;
  /** The running configuration and policies, defaults included, with where each value came from. */
  configDump(): unknown;
  /** Live request rates and latency percentiles per service (admin/live-stats.ts), for the status page. */
  status(): LiveSnapshot;
}

/** The page, read once: a self-contained HTML file (inline CSS and JS, no build step). */
let page: Buffer | undefined;
function statusPage(): Buffer {
  page ??= readFileSync(new URL('./status-page.html', import.meta.url));
  return page;
}

/**
 * The page runs only its own inline script and talks only to this listener: no third-party
 * resources, no framing by other sites.
 */
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** Admin routes any caller may use: probes and metrics. */
const OPEN_TO_THE_NETWORK = new Set(['/healthz', '/readyz', '/metrics']);

function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.'));
}

export function createAdmin(state: AdminState, logger: Logger): FastifyInstance {
  const app = Fastify({ ...fastifyLogging(logger) });
  let identity: Identity | undefined;
  const identityOf = (): Identity => {
    if (!identity) {
      const config = (state.configDump() as { config?: Partial<Identity> } | undefined)?.config;
      identity = { service: config?.service ?? 'unknown', namespace: config?.namespace ?? 'unknown', instance: config?.instance ?? 'unknown' };
    }
    return identity;
  };

  // In a pod the admin port must take the kubelet's probes and Prometheus' scrapes, so it may listen
  // beyond loopback (the injector binds it to 0.0.0.0); everything else it offers (config dump,
  // run-time log level, status page) answers only callers on this host (kubectl port-forward counts).
  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0]!;
    if (OPEN_TO_THE_NETWORK.has(path) || isLoopback(request.socket.remoteAddress)) return;
    throw new MeshError('ACCESS_DENIED', `admin ${path} answers only local callers; from elsewhere only ${[...OPEN_TO_THE_NETWORK].join(', ')}`);
  });
  // Refusals, bad input, unknown routes and faults: mesh errors, written as the outbound listener writes them.
  answerWithMeshErrors(app, (request) => `no admin route ${request.method} ${request.url.split('?')[0]} (see docs/admin.md)`);

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const status = state.readiness();
    return reply.code(status === 'ready' ? 200 : 503).send({ status });
  });
  app.get('/endpoints', async () => state.endpoints());
  app.get('/config_dump', async () => state.configDump());
  app.get('/sessions', async () => state.sessions());
  app.get('/metrics', (request, reply) => {
    reply.hijack(); // the exporter writes the response itself
    state.metrics(request.raw, reply.raw);
  });
  registerLogging(app, logger);
  app.get('/status.json', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    return statusView(identityOf(), state.readiness(), state.status(), state.endpoints());
  });
  app.get('/', async (_request, reply) => reply.headers(PAGE_HEADERS).send(statusPage()));
  return app;
}
