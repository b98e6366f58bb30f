// Request logs (to be built): a CallObserver that writes a line per call at debug, failures at warn.
import type { Logger } from 'pino';
import { NO_OBSERVER, type CallObserver } from './observer.ts';

export function createRequestLog(_logger: Logger): CallObserver {
  return NO_OBSERVER;
}
