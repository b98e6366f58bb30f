// The admin listener (127.0.0.1:15000 by default): probes now; metrics, config dump and the status
// page are added here as they come.
import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { fastifyLogging } from '../telemetry/logger.ts';

export interface AdminState {
  ready(): boolean;
  endpoints(): unknown;
  /** MCP session affinity counts per service. */
  sessions(): unknown;
  /** Prometheus text exposition of the sidecar's metrics. */
  metrics(request: IncomingMessage, response: ServerResponse): void;
  /** The running configuration and policies, defaults included, with where each value came from. */
  configDump(): unknown;
  /** Live request rates and latency percentiles per service (admin/live-stats.ts), for the status page. */
  status(): unknown;
}

export function createAdmin(state: AdminState, logger: Logger): FastifyInstance {
  const app = Fastify({ ...fastifyLogging(logger) });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const ready = state.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'starting' });
  });
  app.get('/endpoints', async () => state.endpoints());
  app.get('/config_dump', async () => state.configDump());
  app.get('/sessions', async () => state.sessions());
  app.get('/metrics', (request, reply) => {
    reply.hijack(); // the exporter writes the response itself
    state.metrics(request.raw, reply.raw);
  });
  return app;
}
