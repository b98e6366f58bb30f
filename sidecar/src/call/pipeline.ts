// The outbound call path's public face: what an edge hands in (OutboundCall), what comes back
// (CallResult), and what the stack is built from (PipelineDeps). The stack itself, top to bottom, is
// in stack.ts; each layer in a file of its own (README.md in this folder).
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Resolver } from '../discovery/resolver.ts';
import type { Header } from '../mcp/codec.ts';
import type { LinkPool } from '../mcp/link-pool.ts';
import type { RequestBody } from '../mcp/transport.ts';
import type { ServiceTarget } from '../outbound/target.ts';
import type { EffectivePolicy, PriorityName } from '../policy/types.ts';
import type { OwnerTokens } from '../affinity/token.ts';
import type { BreakerRegistry } from '../resilience/breaker.ts';
import type { CallObserver } from '../telemetry/observer.ts';
import type { ServiceStates } from './service-state.ts';

export type { RequestBody };

export interface OutboundCall {
  target: ServiceTarget;
  method: string;
  /** Origin-form path with query string. */
  path: string;
  /** The Host the app used; the called app sees it unchanged. */
  authority: string;
  headers: Header[];
  body: RequestBody;
  /** The response is expected to stream (SSE): go straight to a Stream call. */
  expectStream: boolean;
  /** Deadline the app asked for (`mcp-mesh-timeout`), in ms; undefined: the policy's. */
  deadlineMs: number | undefined;
  /**
   * The call's one AbortController, made at the edge where the call arrives: the edge aborts it when
   * the app goes away (with the CLIENT_CLOSED error the app is answered with), the deadline layer when
   * the call's time is up. Every wait and try of the call watches its signal (call/README.md: the two places that add one of their own).
   */
  cancel: AbortController;
  /** The lane on the link: the app's `mcp-mesh-priority`, else the policy's. */
  priority?: PriorityName;
  /** Set when the call delivers a durable message (async/dispatcher.ts). */
  delivery?: Delivery;
  /** The call is an entry of a batch (POST /mesh/v1/batch), for telemetry. */
  batched?: boolean;
}

/**
 * A delivery attempt of a durable message. It gets one try and no more: the outbox redelivers, with
 * its own back-off, from disk. Its deadline is `deadlineMs` (the policy's async.attemptTimeout),
 * not the synchronous request deadline.
 */
export interface Delivery {
  messageId: string;
  attempt: number;
  topic?: string;
  /**
   * The replica to deliver to. `pinned` (broadcast): that one and no other. Otherwise a preference:
   * the replica an earlier attempt went to, so a redelivery meets the record of the first one and
   * is dropped there as a duplicate rather than run by another replica.
   */
  endpoint?: string;
  pinned: boolean;
  /** Told which replica the try is sent to, before it leaves (if it then fails, the app there may have run it). */
  onSent?: (endpoint: string) => void;
}

export interface CallResult {
  status: number;
  headers: Header[];
  /** Inline bytes, or a stream for streamed and large bodies. */
  body: Buffer | Readable;
  endpoint: string;
}

/** Where the effective policy of a call comes from (the policy store; a fixed policy in tests). */
export interface PolicySource {
  resolve(service: string, namespace: string, request: { method: string; path: string; headers: readonly Header[] }): EffectivePolicy;
}

/** MCP session affinity: the token signer, and counters for /sessions and metrics. */
export interface SessionAffinity {
  tokens: OwnerTokens;
  /** A response bound a new session to its owner. */
  onBound(service: string): void;
  /** A request was routed to its session's owner. */
  onRouted(service: string): void;
  /** A request's session owner is gone (404 to the client). */
  onOwnerGone(service: string): void;
}

export interface PipelineDeps {
  /** This replica (pod) of it: the key of `hashOn: [{ source: true }]`, like IP hash at an edge. */
  instance: string;
  sessions: SessionAffinity;
  resolver: Resolver;
  links: LinkPool;
  policies: PolicySource;
  services: ServiceStates;
  breakers: BreakerRegistry;
  logger: Logger;
  /** Tracing, metrics and request logs (telemetry/observer.ts). */
  observer: CallObserver;
}

export type CallPipeline = (call: OutboundCall) => Promise<CallResult>;
