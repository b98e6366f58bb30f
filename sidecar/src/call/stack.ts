// The outbound call stack, top to bottom, in the one place it is put together. Each layer is a
// function of the layer below it (call.ts), with one job, in a file of its own:
//
//   route            route.ts            the service and its endpoints; telemetry of the whole call
//   policy           policy.ts           settings (route policy; a delivery's one try); MCP session pin/bind
//   deadline         deadline.ts         the call's one deadline, on the call's one signal
//   concurrency      concurrency.ts      a slot of the service's limiter, held across retries
//   retry            retry.ts            tries again within the deadline and the retry budget
//   service breaker  service-breaker.ts  refuses the call while the service's breaker is open
//   balance          balance.ts          the endpoint of each try; balancer and outlier accounting
//   endpoint breaker endpoint-breaker.ts refuses a try while that endpoint's breaker is open
//   transport        link-transport.ts   one try on the link (mcp/ decides inline, Stream or pull)
//
// The deadline sits above the concurrency limit so that the wait for a slot counts against it. Calls
// to hosts outside the mesh (egress) take the same deadline and retry layers over a route and a
// transport of their own (egressStack below); durable-message deliveries take this stack, with their
// settings set by the policy layer (one try, their own attempt timeout) and their replica by balance.
import type { Logger } from 'pino';
import { balanceLayer } from './balance.ts';
import { Call, compose, type Handler, type Layer } from './call.ts';
import { concurrencyLayer } from './concurrency.ts';
import { deadlineLayer } from './deadline.ts';
import { endpointBreakerLayer } from './endpoint-breaker.ts';
import { linkTransport } from './link-transport.ts';
import type { CallPipeline, OutboundCall, PipelineDeps } from './pipeline.ts';
import { policyLayer } from './policy.ts';
import { retryLayer, type RetryRule } from './retry.ts';
import { routeLayer } from './route.ts';
import { serviceBreakerLayer } from './service-breaker.ts';

export function buildCallStack(deps: PipelineDeps): CallPipeline {
  const handler = compose([
    routeLayer(deps),
    policyLayer(deps),
    deadlineLayer,
    concurrencyLayer,
    retryLayer({ logger: deps.logger }),
    serviceBreakerLayer(deps.breakers),
    balanceLayer(deps),
    endpointBreakerLayer(deps.breakers),
  ], linkTransport);
  return run(handler);
}

/**
 * The stack of an egress call: its own route (the address guard, telemetry) and transport (HTTP to
 * the checked address), and the mesh's deadline and retry layers in between — retried under `rule`
 * (connect failures only), without telling the app the tries (an external host's answer is the app's).
 */
export function egressStack(options: { route: Layer; transport: Handler; rule: RetryRule; logger: Logger }): CallPipeline {
  return run(compose([options.route, deadlineLayer, retryLayer({ logger: options.logger, rule: options.rule, answerAttempts: false })], options.transport));
}

function run(handler: Handler): CallPipeline {
  return (request: OutboundCall) => handler(new Call(request));
}
