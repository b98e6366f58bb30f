import { pino, type Logger } from 'pino';
import { LogController, type FastifyBaseLogger } from 'fastify';

/** JSON lines on stdout; secrets never logged. The level can change at run time (logger.level = …). */
export function createLogger(options: { level: string; service: string; instance: string }): Logger {
  return pino({
    level: options.level,
    base: { service: options.service, instance: options.instance },
    redact: { paths: ['headers.authorization', 'headers.cookie', 'headers["proxy-authorization"]'], censor: '[redacted]' },
  });
}

/** Fastify options that route its logs to our logger without a line per request (hot path). */
export function fastifyLogging(logger: Logger): { loggerInstance: FastifyBaseLogger; logController: LogController } {
  return { loggerInstance: logger as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) };
}
