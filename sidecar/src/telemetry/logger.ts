import { pino, type DestinationStream, type Logger } from 'pino';
import { LogController, type FastifyBaseLogger } from 'fastify';
import type { MeshCode } from '../errors/codes.ts';

// A log line's `code` is one of the table's (errors/codes.ts: error codes and log-only codes), so
// alerts and searches can rely on it and docs/logging.md lists them all: pino's fields are typed so.
declare module 'pino' {
  interface LogFnFields {
    code?: MeshCode;
  }
}

/** A log line's fields, for the narrow logger interfaces parts take instead of pino's (its `code` typed as above). */
export type LogFields = { code?: MeshCode } & Record<string, unknown>;

/** Headers whose values are credentials: redacted wherever the log carries headers (REDACT_PATHS). */
export const SECRET_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'] as const;

/** What `[redacted]` replaces. */
export const REDACTED = '[redacted]';

/** Where the log may carry headers: a log object's `headers`, `req.headers` or `res.headers`. */
const HEADER_HOLDERS = ['headers', 'req.headers', 'res.headers'] as const;

/**
 * Redaction paths: the secret headers of a headers object in one of those places; and every value of
 * a header list there in the mesh's own form (`[{ name, value }]`), where a path cannot pick a header
 * by its name. Explicit paths only: a leading wildcard (`*.headers…`) would cost about 10 µs on every
 * line logged, as fast-redact then walks each log object's keys.
 */
export const REDACT_PATHS: readonly string[] = HEADER_HOLDERS.flatMap((holder) => [
  ...SECRET_HEADERS.map((name) => `${holder}["${name}"]`),
  `${holder}[*].value`,
]);

/**
 * JSON lines on stdout (or `destination`, for tests); secrets never logged. The level can change at
 * run time (`logger.level = …`, the admin API's PUT /logging): the request log reads it per call.
 */
export function createLogger(options: { level: string; service: string; instance: string }, destination?: DestinationStream): Logger {
  const settings = {
    level: options.level,
    base: { service: options.service, instance: options.instance },
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
  };
  return destination ? pino(settings, destination) : pino(settings);
}

/** Fastify options that route its logs to our logger without a line per request (hot path). */
export function fastifyLogging(logger: Logger): { loggerInstance: FastifyBaseLogger; logController: LogController } {
  return { loggerInstance: logger as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) };
}
