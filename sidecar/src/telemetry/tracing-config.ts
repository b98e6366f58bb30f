// Tracing settings from the standard OpenTelemetry environment variables (the SDK of OpenTelemetry
// JS 3.x reads none of them itself; the OTLP exporter reads a few from process.env, but the sidecar
// reads them here, from the environment it was handed, so what is configured is in one place):
//
//   on/off      OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER (otlp | none), and an OTLP endpoint:
//               tracing is on only when an endpoint is set or OTEL_TRACES_EXPORTER=otlp asks for it
//   export      OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _PROTOCOL (http/protobuf | http/json),
//               _HEADERS, _TIMEOUT, _COMPRESSION
//   sampling    OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG (default parentbased_traceidratio, 0.01)
//   batching    OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT, OTEL_BSP_MAX_QUEUE_SIZE,
//               OTEL_BSP_MAX_EXPORT_BATCH_SIZE
//   resource    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (over the sidecar's own service identity)
//
// Pure: no SDK objects are made here (tracing.ts makes them), so the rules are easy to test.
import { parseKeyPairsIntoRecord } from '@opentelemetry/core';

export type SamplerName = 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';
export type OtlpProtocol = 'http/protobuf' | 'http/json';

/** The sampler when OTEL_TRACES_SAMPLER is not set: follow the caller's decision, else sample 1 %. */
export const DEFAULT_SAMPLER: SamplerName = 'parentbased_traceidratio';
export const DEFAULT_RATIO = 0.01;

export interface SamplerConfig {
  name: SamplerName;
  /** For the *traceidratio samplers: the share of new traces recorded, 0 to 1. */
  ratio: number;
}

export interface BatchConfig {
  scheduledDelayMillis: number;
  exportTimeoutMillis: number;
  maxQueueSize: number;
  maxExportBatchSize: number;
}

export interface TracingOn {
  enabled: true;
  /** Where spans are POSTed: the traces endpoint itself (…/v1/traces). */
  url: string;
  protocol: OtlpProtocol;
  headers: Record<string, string>;
  timeoutMillis: number | undefined;
  compression: 'gzip' | 'none' | undefined;
  sampler: SamplerConfig;
  batch: BatchConfig;
  /** Resource attributes from OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; they win over the sidecar's own. */
  resource: Record<string, string>;
  /** Settings that were ignored, for the log. */
  warnings: string[];
}

export interface TracingOff {
  enabled: false;
  /** Why, for the log. */
  reason: string;
  warnings: string[];
}

export type TracingConfig = TracingOn | TracingOff;

const SAMPLERS: ReadonlySet<string> = new Set<SamplerName>(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio']);

/** An environment variable; empty means unset, as the OpenTelemetry spec says. */
function read(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

export function tracingConfig(env: NodeJS.ProcessEnv): TracingConfig {
  const warnings: string[] = [];
  if (read(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return { enabled: false, reason: 'OTEL_SDK_DISABLED=true', warnings };

  const exporters = (read(env, 'OTEL_TRACES_EXPORTER') ?? '').split(',').map((e) => e.trim().toLowerCase()).filter((e) => e !== '');
  if (exporters.includes('none')) return { enabled: false, reason: 'OTEL_TRACES_EXPORTER=none', warnings };
  for (const other of exporters.filter((e) => e !== 'otlp')) warnings.push(`OTEL_TRACES_EXPORTER: exporter "${other}" is not supported (only otlp); ignored`);
  const signalEndpoint = read(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const endpoint = read(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (!exporters.includes('otlp') && signalEndpoint === undefined && endpoint === undefined) {
    return { enabled: false, reason: 'no OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT)', warnings };
  }

  // The signal's own endpoint is used as it is; the general one gets the signal's path appended.
  const url = signalEndpoint ?? (endpoint !== undefined ? `${endpoint}${endpoint.endsWith('/') ? '' : '/'}v1/traces` : 'http://localhost:4318/v1/traces');
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    return { enabled: false, reason: `the OTLP traces endpoint "${url}" is not an http(s) URL`, warnings };
  }

  const protocol = (read(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? read(env, 'OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/protobuf').toLowerCase();
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    return { enabled: false, reason: `OTLP protocol "${protocol}" is not supported (use http/protobuf or http/json)`, warnings };
  }

  const compression = read(env, 'OTEL_EXPORTER_OTLP_TRACES_COMPRESSION') ?? read(env, 'OTEL_EXPORTER_OTLP_COMPRESSION');
  if (compression !== undefined && compression !== 'gzip' && compression !== 'none') warnings.push(`OTEL_EXPORTER_OTLP_COMPRESSION: "${compression}" is not supported (gzip or none); ignored`);

  return {
    enabled: true,
    url,
    protocol,
    headers: { ...parseKeyPairsIntoRecord(read(env, 'OTEL_EXPORTER_OTLP_HEADERS')), ...parseKeyPairsIntoRecord(read(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS')) },
    timeoutMillis: positive(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', warnings) ?? positive(env, 'OTEL_EXPORTER_OTLP_TIMEOUT', warnings),
    compression: compression === 'gzip' || compression === 'none' ? compression : undefined,
    sampler: samplerConfig(env, warnings),
    batch: batchConfig(env, warnings),
    resource: resourceAttributes(env, warnings),
    warnings,
  };
}

function samplerConfig(env: NodeJS.ProcessEnv, warnings: string[]): SamplerConfig {
  let name = (read(env, 'OTEL_TRACES_SAMPLER') ?? DEFAULT_SAMPLER).toLowerCase();
  if (!SAMPLERS.has(name)) {
    warnings.push(`OTEL_TRACES_SAMPLER: "${name}" is not supported; using ${DEFAULT_SAMPLER}`);
    name = DEFAULT_SAMPLER;
  }
  let ratio = DEFAULT_RATIO;
  const arg = read(env, 'OTEL_TRACES_SAMPLER_ARG');
  if (arg !== undefined && name.endsWith('traceidratio')) {
    const parsed = Number(arg);
    if (Number.isFinite(parsed) && parsed >= 0 && parsed <= 1) ratio = parsed;
    else warnings.push(`OTEL_TRACES_SAMPLER_ARG: "${arg}" is not a ratio between 0 and 1; using ${DEFAULT_RATIO}`);
  }
  return { name: name as SamplerName, ratio };
}

function batchConfig(env: NodeJS.ProcessEnv, warnings: string[]): BatchConfig {
  const maxQueueSize = positive(env, 'OTEL_BSP_MAX_QUEUE_SIZE', warnings) ?? 2048;
  return {
    scheduledDelayMillis: positive(env, 'OTEL_BSP_SCHEDULE_DELAY', warnings) ?? 5000,
    exportTimeoutMillis: positive(env, 'OTEL_BSP_EXPORT_TIMEOUT', warnings) ?? 30_000,
    maxQueueSize,
    // The SDK requires a batch no larger than the queue.
    maxExportBatchSize: Math.min(positive(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', warnings) ?? 512, maxQueueSize),
  };
}

function positive(env: NodeJS.ProcessEnv, name: string, warnings: string[]): number | undefined {
  const raw = read(env, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (Number.isFinite(value) && value > 0) return value;
  warnings.push(`${name}: "${raw}" is not a positive number; ignored`);
  return undefined;
}

/**
 * OTEL_RESOURCE_ATTRIBUTES (key=value,… with ',' and '=' percent-encoded; a value that cannot be read
 * discards the whole variable, as the spec says), then OTEL_SERVICE_NAME over service.name.
 */
export function resourceAttributes(env: NodeJS.ProcessEnv, warnings: string[] = []): Record<string, string> {
  const attributes: Record<string, string> = {};
  const raw = read(env, 'OTEL_RESOURCE_ATTRIBUTES');
  if (raw !== undefined) {
    try {
      for (const pair of raw.split(',')) {
        if (pair.trim() === '') continue;
        const parts = pair.split('=');
        if (parts.length !== 2 || parts[0]!.trim() === '') throw new Error(`"${pair}" is not key=value`);
        attributes[decodeURIComponent(parts[0]!.trim())] = decodeURIComponent(parts[1]!.trim());
      }
    } catch (err) {
      warnings.push(`OTEL_RESOURCE_ATTRIBUTES ignored: ${(err as Error).message}`);
      for (const key of Object.keys(attributes)) delete attributes[key];
    }
  }
  const serviceName = read(env, 'OTEL_SERVICE_NAME');
  if (serviceName !== undefined) attributes['service.name'] = serviceName;
  return attributes;
}

/** How the sampler is described in the log and the docs: "parentbased_traceidratio(0.01)". */
export function describeSampler(sampler: SamplerConfig): string {
  return sampler.name.endsWith('traceidratio') ? `${sampler.name}(${sampler.ratio})` : sampler.name;
}
