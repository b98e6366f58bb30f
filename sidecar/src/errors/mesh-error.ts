import { ERROR_CODES, isErrorCode, type ErrorCode } from './codes.ts';

export interface MeshErrorOptions {
  /** The called service, `name.namespace` (or the host as sent, when it is not a mesh name). */
  service?: string;
  cause?: unknown;
  /** How many tries the calling sidecar made; `mcp-mesh-attempts` on the answer. */
  attempts?: number;
  /** When the caller may try again (OVERLOADED): `Retry-After` on the answer. */
  retryAfterSeconds?: number;
}

/**
 * An error made by the mesh. `code` decides the HTTP status (see codes.ts); everything its answer
 * carries (errors/respond.ts) is on it from the start: service, attempts, Retry-After.
 */
export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly service: string | undefined;
  /**
   * How many tries the calling sidecar made before giving up: given when the error is made, or set
   * once by the retry layer for an error a try ended with (it knows the count only then).
   */
  attempts: number | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options?: MeshErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.service = options?.service;
    this.attempts = options?.attempts;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  /** Rebuild an error that a peer sidecar sent in an ERROR envelope or frame. */
  static fromWire(wire: { code?: string | null; message?: string | null }, service?: string): MeshError {
    const code = wire.code && isErrorCode(wire.code) ? wire.code : 'PROTOCOL_ERROR';
    const message = wire.message || `peer reported ${wire.code ?? 'an unnamed error'}`;
    return new MeshError(code, message, service === undefined ? undefined : { service });
  }
}

/** Turn anything thrown on the call path into a MeshError, keeping mesh errors as they are. */
export function toMeshError(err: unknown, fallback: ErrorCode = 'INTERNAL', service?: string): MeshError {
  if (err instanceof MeshError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MeshError(fallback, message, { service, cause: err });
}
