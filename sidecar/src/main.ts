// Builds a sidecar from a resolved config and runs it: discovery → links → pipeline → listeners.
// Also owns the shutdown order: stop new calls, let calls in flight finish, close links, exit.
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { createAdmin } from './admin/server.ts';
import type { Readiness } from './admin/status-view.ts';
import { buildCallStack } from './call/stack.ts';
import { ServiceStates } from './call/service-state.ts';
import { PolicyStore } from './policy/store.ts';
import { BreakerRegistry } from './resilience/breaker.ts';
import { formatHostPort } from './config/address.ts';
import { ConfigError, loadConfigFile, type MeshConfig } from './config/load.ts';
import { createResolver } from './discovery/create.ts';
import { StaticResolver } from './discovery/static.ts';
import { splitServiceName } from './discovery/resolver.ts';
import { AppForwarder } from './inbound/app-forwarder.ts';
import { DedupingHandler } from './inbound/dedup.ts';
import { AccessCheckingHandler } from './inbound/access.ts';
import { SessionLimitingHandler, SessionTable } from './inbound/session-limit.ts';
import { AsyncMessaging } from './async/messaging.ts';
import { LinkPool } from './mcp/link-pool.ts';
import { MeshServer } from './mcp/server.ts';
import { createOutbound } from './outbound/server.ts';
import { randomBytes } from 'node:crypto';
import { createSessionAffinity } from './affinity/session-stats.ts';
import { OwnerTokens } from './affinity/token.ts';
import { createLogger } from './telemetry/logger.ts';
import { MeshMetrics } from './telemetry/metrics.ts';
import { combine } from './telemetry/observer.ts';
import { createTracing } from './telemetry/tracing.ts';
import { createCallMetrics } from './telemetry/call-metrics.ts';
import { createRequestLog } from './telemetry/request-log.ts';
import { registerRuntimeMetrics } from './telemetry/runtime-metrics.ts';
import { createLiveStats } from './admin/live-stats.ts';
import { endpointsView } from './admin/endpoints-view.ts';
import { channelCredentials, loadMaterial, serverCredentials, watchMaterial, type TlsMaterial } from './security/tls.ts';
import { SecureNaming } from './security/secure-naming.ts';
import type { PeerRefusal } from './mcp/version.ts';
import { meshSource } from './security/identity.ts';
import { watchFiles, type FileWatch } from './config/watch-files.ts';

export interface RunningSidecar {
  config: MeshConfig;
  logger: Logger;
  ports: { outbound: number; inbound: number; admin: number };
  /** Graceful stop: drain, wait for calls in flight (up to shutdown.grace), close everything. */
  shutdown(): Promise<void>;
}

export async function startSidecar(config: MeshConfig, logger = createLogger({ level: config.log.level, service: config.service, instance: config.instance })): Promise<RunningSidecar> {
  const opened = new OpenedParts();
  try {
    return await buildSidecar(config, logger, opened);
  } catch (err) {
    // A start that fails part-way (a port in use, an unusable data folder) closes what it had
    // opened: a link to a reachable peer would otherwise keep the process alive, listeners closed.
    await opened.closeAll();
    throw err;
  }
}

/**
 * How to close what start-up has opened so far. A failed start closes it all again, newest first,
 * so the process exits with its error instead of living on through a timer or a socket.
 */
class OpenedParts {
  readonly #closers: (() => unknown)[] = [];

  add(close: () => unknown): void {
    this.#closers.push(close);
  }

  async closeAll(): Promise<void> {
    for (const close of this.#closers.reverse()) {
      try {
        await close();
      } catch {
        // Best effort: the start's own error is the one to report.
      }
    }
  }
}

async function buildSidecar(config: MeshConfig, logger: Logger, opened: OpenedParts): Promise<RunningSidecar> {
  const source = `${config.service}.${config.namespace}`;

  // Mutual TLS: certificate files that are set must be usable (ConfigError, exit 1: never a fallback
  // to plaintext); none set is plaintext, said loudly (tls.required makes it an error in load.ts).
  const tlsFiles = config.tls.files;
  let tlsMaterial: TlsMaterial | undefined = tlsFiles ? loadMaterial(tlsFiles, config.tls.trustDomain) : undefined;
  const tlsMode = tlsMaterial ? 'mutual' as const : 'plaintext' as const;
  let linkCredentials = tlsMaterial ? channelCredentials(tlsMaterial, config.tls.trustDomain) : undefined;
  if (tlsMaterial) {
    logger.info({ tls: 'mutual', identity: tlsMaterial.identity.uri, notAfter: tlsMaterial.notAfter.toISOString(), secureNaming: true }, `mutual TLS on: this sidecar is ${tlsMaterial.identity.uri}; calls go only to peers whose certificate may serve the called service (secure naming)`);
    const certified = meshSource(tlsMaterial.identity);
    if (certified !== source) {
      logger.warn({ code: 'TLS_IDENTITY_MISMATCH', identity: tlsMaterial.identity.uri }, `this sidecar's certificate names ${certified}, not ${source}: peers will see the certificate's name`);
    }
  } else {
    logger.warn({ code: 'TLS_PLAINTEXT', secureNaming: false }, 'no tls.cert/tls.key/tls.ca: sidecar-to-sidecar traffic is plaintext, callers are not authenticated (mcp-mesh-source is what the peer claims) and peers are not checked against the service called (no secure naming); see docs/security.md');
  }

  // Every file is checked before anything is opened: a broken policy stops the start at once, with
  // no link dialling a peer meanwhile.
  const policies = PolicyStore.load(config.policies, { namespace: config.namespace, timeouts: config.timeouts }, logger);
  opened.add(() => policies.close());
  const resolver = await createResolver(config, logger);
  opened.add(() => resolver.close());
  // Both ends of every link share one set of settings: who we are, and config `link.*`.
  const linkSettings = {
    source, instance: config.instance, logger, ...config.link, tls: tlsMaterial ? { trustDomain: config.tls.trustDomain } : undefined,
    maxStreamsPerPeer: config.limits.maxStreamsPerPeer,
    onLimit: (limit: 'streams_per_peer' | 'frame_size') => metrics.limitRejections.add(1, { limit }),
    aliases: config.aliases,
    onRefused: (reason: PeerRefusal) => metrics.peerRefusals.add(1, { reason }),
  };
  // Secure naming needs identities: only under mutual TLS.
  const secureNaming = tlsMaterial ? new SecureNaming({ resolver, identities: config.tls.identities, namespace: config.namespace }) : undefined;
  const links = new LinkPool({ ...linkSettings, credentials: linkCredentials ? () => linkCredentials! : undefined, secureNaming });
  opened.add(() => links.close());
  links.sync(resolver.allAddresses());
  resolver.onChange(() => links.sync(resolver.allAddresses()));

  const metrics = new MeshMetrics({ service: config.service, namespace: config.namespace, instance: config.instance });
  opened.add(() => metrics.shutdown());
  policies.onReloadError(() => metrics.policyReloadFailures.add(1));
  const breakers = new BreakerRegistry({
    onStateChange: (breaker, state) => {
      logger.warn({ target: breaker.service, endpoint: breaker.address, state }, `circuit breaker ${state}`);
      metrics.breakerTransitions.add(1, { service: breaker.service, scope: breaker.address === undefined ? 'service' : 'endpoint', state });
    },
  });
  opened.add(() => breakers.close());
  const services = new ServiceStates();
  resolver.onChange(() => {
    const live = resolver.allAddresses();
    breakers.retain(live);
    for (const [service] of services.entries()) {
      const [name, namespace] = splitServiceName(service);
      services.retain(service, new Set((resolver.endpoints(name, namespace) ?? []).map((e) => e.address)));
    }
  });

  links.onReady = (address) => breakers.peerRecovered(address, resolver.servicesOf(address));

  const sessions = createSessionAffinity(new OwnerTokens(config.mcp.tokenKey ?? ephemeralTokenKey(logger)), metrics);
  // Telemetry of every call, in one place: spans, request metrics, the status page's live numbers, request logs.
  const tracing = await createTracing({ service: config.service, namespace: config.namespace, instance: config.instance, env: process.env, logger });
  opened.add(() => tracing.shutdown());
  const liveStats = createLiveStats();
  // Inbound calls are labelled with the route this sidecar's own policies give them (route names
  // come from policies, so the label set stays bounded).
  const callMetrics = createCallMetrics(metrics, { inboundRoute: (call) => policies.resolve(config.service, config.namespace, call).route });
  const observer = combine([tracing.observer, callMetrics, liveStats.observer, createRequestLog(logger)]);
  const pipeline = buildCallStack({ instance: config.instance, resolver, links, policies, services, breakers, sessions, logger, observer });

  // Async calls and pub/sub: an outbox on disk, delivered through the same pipeline. A data directory
  // that cannot be used makes only async requests fail; the sidecar starts anyway.
  const messaging = await AsyncMessaging.start({
    storage: config.storage, pipeline, policies, logger,
    endpoints: (service, namespace) => resolver.endpoints(service, namespace),
    metrics: {
      onAccepted: (service, kind) => metrics.asyncAccepted.add(1, { service, kind }),
      onSettled: (service, outcome) => metrics.asyncDeliveries.add(1, { service, outcome }),
    },
  });
  opened.add(() => messaging.close());
  metrics.observeOutbox(() => messaging.counts);
  registerRuntimeMetrics(metrics, { links, services, breakers });
  metrics.observeTlsMode(() => tlsMode);

  const outbound = createOutbound({
    namespace: config.namespace,
    maxBodyBytes: config.limits.maxBodyBytes, inlineBodyBytes: config.limits.inlineBodyBytes,
    maxHeaderBytes: config.limits.maxHeaderBytes, headerTimeoutMs: config.limits.headerTimeoutMs,
    onLimit: (limit) => metrics.limitRejections.add(1, { limit }),
    logger, pipeline, isKnownService: (service, namespace) => resolver.endpoints(service, namespace) !== undefined,
    async: { messaging, maxMessageBytes: config.storage.maxMessageBytes },
    egress: { allow: config.egress.allow, policy: () => policies.defaults, observer, logger },
  });
  opened.add(() => outbound.app.close());

  const forwarder = new AppForwarder({
    host: config.app.host, port: config.app.port, connections: config.app.connections,
    inlineBodyBytes: config.limits.inlineBodyBytes, connectTimeoutMs: config.timeouts.connectMs,
    parkTimeoutMs: Math.max(10_000, config.timeouts.connectMs * 2), logger, service: source, observer,
  });
  opened.add(() => forwarder.close());
  // MCP sessions the app opens count against limits.maxSessions; next to the app, so answers that
  // the dedup record gives (never the app's own) do not count again.
  const sessionTable = new SessionTable(config.limits.maxSessions, config.limits.sessionIdleTimeoutMs);
  metrics.observeSessionsHeld(() => sessionTable.size);
  const sessionLimited = new SessionLimitingHandler(forwarder, {
    table: sessionTable, service: source, logger,
    onRefused: () => metrics.limitRejections.add(1, { limit: 'sessions' }),
  });
  // Durable messages from peers pass the dedup record before they reach the app.
  const inboundHandler = new DedupingHandler(sessionLimited, {
    store: () => messaging.store(), logger,
    onDuplicate: (caller) => metrics.asyncDuplicatesDropped.add(1, { source: caller }),
  });
  // Access rules first: a caller the policy does not allow never reaches the dedup record or the app.
  const accessChecked = new AccessCheckingHandler(inboundHandler, {
    service: config.service, namespace: config.namespace, logger,
    policy: (request) => policies.resolve(config.service, config.namespace, request),
    restricted: () => policies.restrictsAccess(config.service, config.namespace),
    onDenied: (route, caller) => metrics.accessDenied.add(1, { route, source: caller }),
  });
  const inbound = new MeshServer(accessChecked, { ...linkSettings, connections: {
    maxTotal: config.limits.maxInboundConnections, maxPerPeer: config.limits.maxConnectionsPerPeer,
    handshakeTimeoutMs: config.limits.inboundHandshakeTimeoutMs, idleTimeoutMs: config.limits.inboundIdleTimeoutMs,
    onLimit: (limit) => metrics.limitRejections.add(1, { limit }),
  } });
  opened.add(() => inbound.close());

  let readiness: Readiness = 'starting';
  const admin = createAdmin({
    readiness: () => readiness,
    endpoints: () => endpointsView(links, services, breakers, resolver),
    metrics: (request, response) => metrics.serve(request, response),
    sessions: () => sessions.snapshot(),
    status: () => liveStats.snapshot(),
    configDump: () => ({
      config: { ...config, mcp: { tokenKey: config.mcp.tokenKey ? '[redacted]' : '[random per sidecar]' } },
      tls: tlsMaterial
        ? { mode: tlsMode, identity: tlsMaterial.identity.uri, notAfter: tlsMaterial.notAfter.toISOString(), fingerprint: tlsMaterial.fingerprint, trustDomain: config.tls.trustDomain }
        : { mode: tlsMode },
      policies: policies.dump(),
    }),
  }, logger);
  opened.add(() => admin.close());

  const inboundPort = await inbound.listen(config.listen.inbound.host, config.listen.inbound.port, tlsMaterial ? serverCredentials(tlsMaterial) : undefined);
  // Rotated certificate files: new connections (accepted, and links that reconnect) use them; open ones go on.
  const tlsWatcher = tlsFiles && tlsMaterial ? watchMaterial(tlsFiles, config.tls.trustDomain, logger, (next) => {
    tlsMaterial = next;
    linkCredentials = channelCredentials(next, config.tls.trustDomain);
    inbound.setCredentials(serverCredentials(next));
    logger.info({ code: 'TLS_RELOADED', identity: next.identity.uri, notAfter: next.notAfter.toISOString(), fingerprint: next.fingerprint }, 'certificates reloaded: new connections use them');
  }, tlsMaterial) : undefined;
  opened.add(() => tlsWatcher?.close());
  await outbound.app.listen({ host: config.listen.outbound.host, port: config.listen.outbound.port });
  await admin.listen({ host: config.listen.admin.host, port: config.listen.admin.port });
  const ports = {
    inbound: inboundPort,
    outbound: portOf(outbound.app),
    admin: portOf(admin),
  };
  const watcher = config.file && resolver instanceof StaticResolver ? watchConfig(config.file, resolver, logger) : undefined;
  // Listeners are bound first (so /healthz answers and the ports are logged), but /readyz says ready
  // only once discovery has its first picture (DNS: listed services resolved; Kubernetes: the first
  // list): a pod is not sent traffic it would answer with UNKNOWN_SERVICE. Not awaited here, so a
  // SIGTERM while discovery is unreachable still shuts down cleanly. Static discovery: at once.
  let stopping: Promise<void> | undefined;
  void resolver.ready().then(() => {
    if (stopping) return;
    readiness = 'ready';
    if (config.discovery.mode !== 'static') logger.info({ mode: config.discovery.mode }, 'discovery ready');
  });
  logger.info({ ports, mode: tlsMode }, `sidecar ${source} listening: outbound ${formatHostPort({ host: config.listen.outbound.host, port: ports.outbound })}, inbound ${formatHostPort({ host: config.listen.inbound.host, port: ports.inbound })}, admin ${formatHostPort({ host: config.listen.admin.host, port: ports.admin })}`);

  const shutdown = () => {
    stopping ??= (async () => {
      const graceMs = config.shutdown.graceMs;
      const deadline = performance.now() + graceMs;
      const left = () => Math.max(0, deadline - performance.now());
      logger.info({ graceMs, waitForApp: config.shutdown.waitForApp }, 'shutting down: draining');
      readiness = 'draining';
      watcher?.close();
      tlsWatcher?.close();
      resolver.close();
      policies.close();
      // Peers first: told DRAIN, they send no new calls; the calls in flight finish within the grace.
      const inboundDrained = inbound.drain(graceMs);
      // The app may still be finishing its own work and need the mesh for its last calls: the
      // outbound listener serves it until its port closes (it has gone) or the grace ends.
      if (config.shutdown.waitForApp) {
        const gone = await untilAppGone(config.app.host, config.app.port, left());
        logger.info({ appGone: gone }, gone ? 'the app has gone: closing the outbound listener' : 'grace period over: closing the outbound listener');
      }
      outbound.stopAccepting();
      // Async deliveries running get what is left of the grace; those cut after it stay queued on disk.
      await Promise.all([inboundDrained, outbound.drain(left()), messaging.close(left())]);
      // The calls in flight are done (or out of grace): cut what is left, keep-alive connections
      // included, or close() would wait for the apps to hang up.
      outbound.app.server.closeAllConnections();
      await outbound.app.close();
      links.close();
      await inbound.close();
      await forwarder.close();
      breakers.close();
      await metrics.shutdown();
      await tracing.shutdown();
      await admin.close();
      logger.info('shut down');
    })();
    return stopping;
  };
  return { config, logger, ports, shutdown };
}

/**
 * Resolves true once nothing accepts connections on the app's port any more (the app has exited),
 * false when `withinMs` passes first. Checked every 200 ms by opening (and at once closing) a TCP
 * connection: the one signal that works for every app, whatever it is written in.
 */
async function untilAppGone(host: string, port: number, withinMs: number): Promise<boolean> {
  const until = performance.now() + withinMs;
  for (;;) {
    const listening = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.setTimeout(500, () => { socket.destroy(); resolve(true); }); // busy, not gone
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (!listening) return true;
    const wait = Math.min(200, until - performance.now());
    if (wait <= 0) return false;
    await sleep(wait);
  }
}

/**
 * No shared token key configured: sessions still stick, but only through this sidecar (another
 * client sidecar cannot verify its tokens). Said loudly, since a mesh wants one key everywhere.
 */
function ephemeralTokenKey(logger: Logger): Buffer {
  logger.warn({ code: 'MCP_TOKEN_KEY_EPHEMERAL' }, 'mcp.tokenKey is not set: MCP session tokens are signed with a random key of this sidecar, so a session works only through it; set the same mcp.tokenKey (MESH_MCP_TOKEN_KEY) in every sidecar');
  return randomBytes(32);
}

function portOf(app: { server: { address(): unknown } }): number {
  const address = app.server.address();
  return address && typeof address === 'object' ? (address as { port: number }).port : 0;
}

/**
 * Re-read the config file when it changes and apply what can change live (the static endpoint list).
 * The folder is watched, not the file, so editors' and Kubernetes' atomic renames are seen too.
 * An invalid file is logged and ignored: the running config stays.
 */
function watchConfig(file: string, resolver: StaticResolver, logger: Logger): FileWatch {
  const reload = () => {
    try {
      const next = loadConfigFile(file);
      resolver.update(next.discovery.static);
      logger.info({ services: Object.keys(next.discovery.static) }, 'config reloaded: static endpoints updated');
    } catch (err) {
      logger.error({ code: 'CONFIG_INVALID' }, err instanceof ConfigError ? err.message : String(err));
    }
  };
  // Editors write in several steps: read once they are done.
  return watchFiles({ files: [file] }, {
    debounceMs: 50, onChange: reload,
    onError: (err) => logger.error({ code: 'CONFIG_WATCH_FAILED', err: err.message }, 'watching the config file failed; changes will not be picked up until a restart'),
  });
}
