import { ERROR_CODES, isErrorCode, type ErrorCode } from './codes.ts';

/** An error made by the mesh. `code` decides the HTTP status (see codes.ts). */
export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly service: string | undefined;
  /** How many tries the calling sidecar made before giving up (set by the retry layer). */
  attempts: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { service?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.service = options?.service;
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
