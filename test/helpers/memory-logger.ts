// A pino logger whose lines end up parsed in an array, for tests that check what was logged and at
// which level.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export function memoryLogger(level = 'info'): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({ write(chunk, _encoding, done) { lines.push(JSON.parse(String(chunk)) as Record<string, unknown>); done(); } });
  return { logger: pino({ level }, stream), lines };
}
