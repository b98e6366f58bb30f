// /logging on the admin listener: read and change the log level at run time, as Envoy's
// `POST /logging?level=debug`. The level is the pino logger's (`logger.level = …`): every line the
// sidecar writes goes through that one root logger (request logs read its level per call), so a
// change applies to the next line. It lasts until the process ends; the config file is not touched.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { MeshError } from '../errors/mesh-error.ts';

/** pino's levels, most verbose first; `silent` turns logging off. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

/** The level named by `?level=` or, failing that, a JSON body `{ "level": … }`. */
function requestedLevel(request: FastifyRequest): unknown {
  const query = request.query as Record<string, unknown> | undefined;
  if (query?.level !== undefined) return query.level;
  const body = request.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body.level : undefined;
}

/**
 * Set the level and say so at info. The line is written under whichever of the two levels lets an
 * info line through (the old one when quietening, the new one when turning up), so the change is
 * on record unless both are above info.
 */
export function setLogLevel(logger: Logger, level: LogLevel, by: string): { level: LogLevel; previous: string } {
  const previous = logger.level;
  // Not `level`: that key is the line's own level in pino's output.
  const line = () => logger.info({ from: previous, to: level, by }, `log level set to ${level}`);
  if (logger.isLevelEnabled('info')) {
    line();
    logger.level = level;
  } else {
    logger.level = level;
    if (logger.isLevelEnabled('info')) line();
  }
  return { level, previous };
}

export function registerLogging(app: FastifyInstance, logger: Logger): void {
  app.get('/logging', async () => ({ level: logger.level, levels: LOG_LEVELS }));
  const change = async (request: FastifyRequest) => {
    const level = requestedLevel(request);
    if (level === undefined) {
      throw new MeshError('BAD_REQUEST', `name the level: ${request.method} /logging?level=LEVEL, one of ${LOG_LEVELS.join(', ')}`);
    }
    if (!isLogLevel(level)) {
      throw new MeshError('BAD_REQUEST', `invalid log level ${JSON.stringify(level)}: use one of ${LOG_LEVELS.join(', ')}`);
    }
    return setLogLevel(logger, level, `${request.method} /logging`);
  };
  app.put('/logging', change);
  app.post('/logging', change);
}
