// Fastify's own failures (a body that does not parse or validate, one over the route's bodyLimit, no
// route for the path, a fault in a handler) answered as mesh errors, by the one writer: the mesh API
// on the outbound listener and the admin listener answer every error alike. Handlers and hooks
// throw MeshErrors; they arrive here as they are.
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { MeshError } from './mesh-error.ts';
import { replyWithMeshError } from './respond.ts';

export function answerWithMeshErrors(app: FastifyInstance, unknownRoute: (request: FastifyRequest) => string): void {
  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    const meshError = meshErrorOf(error);
    // INTERNAL says "the log has details": so it must.
    if (meshError.code === 'INTERNAL') request.log.error({ code: 'INTERNAL', err: error, method: request.method, path: request.routeOptions.url }, `admin or mesh API request failed: ${error.message}`);
    return replyWithMeshError(reply, meshError);
  });
  app.setNotFoundHandler(async (request, reply) => replyWithMeshError(reply, new MeshError('UNKNOWN_ROUTE', unknownRoute(request))));
}

/** A fastify error as a mesh error: its 4xx are a request's faults, anything else is the sidecar's. */
function meshErrorOf(error: FastifyError | MeshError): MeshError {
  if (error instanceof MeshError) return error;
  if (error.validation !== undefined) return new MeshError('BAD_REQUEST', error.message, { cause: error });
  if (error.statusCode === 413) return new MeshError('BODY_TOO_LARGE', error.message, { cause: error });
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) return new MeshError('BAD_REQUEST', error.message, { cause: error });
  return new MeshError('INTERNAL', error.message, { cause: error });
}
