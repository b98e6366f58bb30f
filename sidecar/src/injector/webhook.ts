// The mutating admission webhook: HTTPS (the API server only calls webhooks over TLS), POST /mutate
// takes an AdmissionReview v1 and answers it with buildPatch's result; GET /healthz for its own probes.
// Thin on purpose: every decision about the pod is in patch.ts.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:https';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { watchFiles, type FileWatch } from '../config/watch-files.ts';
import { fastifyLogging } from '../telemetry/logger.ts';
import { buildPatch, type InjectOptions, type Pod } from './patch.ts';

export interface InjectorOptions extends InjectOptions {
  certFile: string;
  keyFile: string;
  logger: Logger;
}

interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  operation?: string;
  namespace?: string;
  subResource?: string;
  dryRun?: boolean;
  object?: unknown;
}

interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string };
}

/** Whole pods can be large (the API server allows objects of about 1.5 MB, sent with a bit of wrapping). */
const BODY_LIMIT = 6 * 1024 * 1024;

function review(response: AdmissionResponse) {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

/** What is wrong with a body that is not an AdmissionReview v1 with a request, or undefined. */
function malformed(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be an AdmissionReview object';
  const b = body as Record<string, unknown>;
  if (b.apiVersion !== 'admission.k8s.io/v1' || b.kind !== 'AdmissionReview') return 'expected apiVersion admission.k8s.io/v1, kind AdmissionReview';
  const request = b.request as Record<string, unknown> | undefined;
  if (typeof request !== 'object' || request === null) return 'request is missing';
  if (typeof request.uid !== 'string' || request.uid === '') return 'request.uid is missing';
  return undefined;
}

/** Answers one AdmissionRequest. Exported for unit tests of the wrapping. */
export function admit(request: AdmissionRequest, options: InjectOptions): { response: AdmissionResponse; outcome: string } {
  const { uid } = request;
  const isPod = request.kind?.kind === 'Pod' && (request.kind.group ?? '') === '';
  if (!isPod || request.operation !== 'CREATE' || request.subResource) {
    return { response: { uid, allowed: true }, outcome: 'ignored (not a pod creation)' };
  }
  const pod = request.object;
  if (typeof pod !== 'object' || pod === null) {
    return { response: { uid, allowed: false, status: { code: 400, message: 'mcp-mesh injector: request.object is missing' } }, outcome: 'denied' };
  }
  const result = buildPatch(pod as Pod, options);
  switch (result.kind) {
    case 'deny':
      return { response: { uid, allowed: false, status: { code: 400, message: result.message } }, outcome: 'denied' };
    case 'skip':
      return { response: { uid, allowed: true, ...(result.warnings.length ? { warnings: result.warnings } : {}) }, outcome: `skipped: ${result.reason}` };
    case 'inject':
      return {
        response: {
          uid,
          allowed: true,
          patchType: 'JSONPatch',
          patch: Buffer.from(JSON.stringify(result.patch)).toString('base64'),
          ...(result.warnings.length ? { warnings: result.warnings } : {}),
        },
        outcome: `injected (${result.mode})`,
      };
  }
}

export function createInjector(options: InjectorOptions): FastifyInstance<Server> {
  const { logger } = options;
  const app = Fastify({
    https: { cert: readFileSync(options.certFile), key: readFileSync(options.keyFile) },
    bodyLimit: BODY_LIMIT,
    ...fastifyLogging(logger),
  }) as unknown as FastifyInstance<Server>;
  const inject: InjectOptions = { image: options.image, mode: options.mode, ...(options.tokenSecret ? { tokenSecret: options.tokenSecret } : {}) };

  app.get('/healthz', async () => ({ status: 'ok' }));

  // /mutate trusts the webhook configuration's selectors; /mutate/opted-in also wants the pod's own
  // opt-in, for webhook entries that cannot filter on annotations (docs/injector.md, "Which pods").
  const mutate = (scope: 'selected' | 'opted-in') => async (req: FastifyRequest, reply: FastifyReply) => {
    const problem = malformed(req.body);
    if (problem) {
      logger.warn({ problem }, 'malformed admission review');
      return reply.code(400).send({ error: { code: 'BAD_ADMISSION_REVIEW', message: problem } });
    }
    const request = (req.body as { request: AdmissionRequest }).request;
    const pod = request.object as Pod | undefined;
    const { response, outcome } = admit(request, { ...inject, scope });
    logger.info({
      uid: request.uid,
      scope,
      namespace: request.namespace,
      pod: pod?.metadata?.name || pod?.metadata?.generateName,
      dryRun: request.dryRun === true,
      allowed: response.allowed,
      ...(response.status ? { message: response.status.message } : {}),
      ...(response.warnings ? { warnings: response.warnings } : {}),
    }, `admission ${outcome}`);
    return review(response);
  };
  app.post('/mutate', mutate('selected'));
  app.post('/mutate/opted-in', mutate('opted-in'));

  // An error of ours is a 500: the API server then applies the webhook's failurePolicy (Fail: the pod is
  // refused; Ignore: it starts without a sidecar), which is the operator's choice, not ours.
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) logger.error({ err }, 'injector error');
    reply.code(status).send({ error: { code: status === 500 ? 'INTERNAL' : 'BAD_REQUEST', message: err.message } });
  });
  return app;
}

/**
 * Reloads the certificate and key when their folder changes (cert-manager renewing a mounted Secret
 * swaps the folder's `..data` link), so a renewed certificate is served without a restart.
 */
export function watchCertificate(app: FastifyInstance<Server>, options: Pick<InjectorOptions, 'certFile' | 'keyFile' | 'logger'>): FileWatch {
  const reload = () => {
    try {
      app.server.setSecureContext({ cert: readFileSync(options.certFile), key: readFileSync(options.keyFile) });
      options.logger.info({ cert: options.certFile }, 'certificate reloaded');
    } catch (err) {
      // Half-written files or a key not matching the certificate yet: keep serving the old one.
      options.logger.warn({ err: (err as Error).message }, 'certificate not reloaded');
    }
  };
  return watchFiles({ files: [options.certFile, options.keyFile] }, {
    debounceMs: 100, onChange: reload,
    onError: (err) => options.logger.error({ err: err.message }, 'watching the certificate failed; a renewed one is not served until a restart'),
  });
}

export async function startInjector(options: InjectorOptions & { host: string; port: number }): Promise<{ app: FastifyInstance<Server>; port: number; close: () => Promise<void> }> {
  const app = createInjector(options);
  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const watching = watchCertificate(app, options);
  options.logger.info({ port, image: options.image, mode: options.mode }, `injector listening: https://${options.host}:${port}/mutate`);
  return { app, port, close: async () => { watching.close(); await app.close(); } };
}

const USAGE = 'usage: mcp-mesh injector --cert FILE --key FILE [--port 9443] [--host 0.0.0.0] [--image IMG] [--sidecar-mode native|container]';

/** The image injected unless `--image` or MESH_INJECTOR_IMAGE say otherwise: this release's. */
export function defaultImage(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return `ghcr.io/mcp-mesh/mcp-mesh:${pkg.version}`;
}

/** `mcp-mesh injector …`: parse, start, serve until SIGTERM/SIGINT. Returns the exit code. */
export async function runInjector(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { parseArgs } = await import('node:util');
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        cert: { type: 'string' }, key: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' },
        image: { type: 'string' }, 'sidecar-mode': { type: 'string' },
      },
    }));
  } catch (err) {
    process.stderr.write(`mcp-mesh injector: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const fail = (message: string) => { process.stderr.write(`mcp-mesh injector: ${message}\n${USAGE}\n`); return 2; };
  if (!values.cert || !values.key) return fail('--cert FILE and --key FILE are required (the API server calls webhooks over HTTPS only)');
  const port = Number(values.port ?? '9443');
  if (!/^[0-9]{1,5}$/.test(values.port ?? '9443') || port > 65535) return fail(`--port ${values.port}: must be a port number 0–65535`);
  const mode = values['sidecar-mode'] ?? 'native';
  if (mode !== 'native' && mode !== 'container') return fail(`--sidecar-mode ${mode}: must be native or container`);
  const image = values.image ?? env.MESH_INJECTOR_IMAGE ?? defaultImage();
  const { createLogger } = await import('../telemetry/logger.ts');
  const { hostname } = await import('node:os');
  const logger = createLogger({ level: env.MESH_LOG_LEVEL ?? 'info', service: 'mcp-mesh-injector', instance: env.POD_NAME ?? hostname() });
  let injector;
  try {
    const tokenSecret = env.MESH_INJECTOR_TOKEN_SECRET || undefined;
    injector = await startInjector({ certFile: values.cert, keyFile: values.key, host: values.host ?? '0.0.0.0', port, image, mode, logger, ...(tokenSecret ? { tokenSecret } : {}) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`mcp-mesh injector: cannot start: ${e.code === 'ENOENT' ? `cannot read ${e.path}` : e.message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'signal received');
      injector.close().then(resolve, (err: unknown) => { logger.error({ err }, 'shutdown failed'); resolve(); });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
