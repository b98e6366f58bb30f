// The running policy set: loaded once at start-up (a broken set stops the sidecar), then replaced as
// a whole whenever the files change and the new set is valid. The call path only ever sees a
// complete, checked table: resolve() reads one field, and a reload swaps that field.
import { statSync } from 'node:fs';
import { watchFiles, type FileWatch } from '../config/watch-files.ts';
import { formatProblem, PolicyError, readPolicySet, type PolicyFile, type PolicyProblem } from './load.ts';
import { compilePolicies, type ExplainedPolicy, type PolicyDefaults, type PolicyTable, type PolicyTableDump, type RequestInfo, type Subscriber } from './resolve.ts';
import type { LogFields } from '../telemetry/logger.ts';
import type { EffectivePolicy } from './types.ts';

/** The part of a pino logger the store uses. */
export interface PolicyLogger {
  info(obj: LogFields, msg: string): void;
  error(obj: LogFields, msg: string): void;
}

export interface PolicyStoreOptions {
  /** Watch the files and folders for changes (default true). */
  watch?: boolean;
  /** Quiet time after the last change event before the files are read (default 50 ms): editors write in steps. */
  debounceMs?: number;
}

/** A rejected reload, as the dump and the logs show it. */
export interface ReloadError {
  /** ISO time of the attempt. */
  at: string;
  /** One line per problem, `file:line:col: path: message`. */
  problems: string[];
}

export interface PolicyChange {
  generation: number;
  files: string[];
}

export interface PolicyDump {
  /** 1 for the set loaded at start-up, +1 for each reload applied. */
  generation: number;
  /** ISO time the running set was applied. */
  appliedAt: string;
  /** What is watched: the `policies:` entries of the sidecar config. */
  paths: readonly string[];
  files: { file: string; policies: string[] }[];
  /** The built-in policy, used for services without a policy. */
  defaults: ExplainedPolicy;
  services: PolicyTableDump['services'];
  reload: { failures: number; lastError: ReloadError | null };
  precedence: string;
}

const PRECEDENCE = 'built-in default < service-wide policy < route policy; among matching routes: exact path > longer path '
  + '> methods condition > more header conditions > fewer methods (docs/policies.md#matching)';

export class PolicyStore {
  readonly #paths: readonly string[];
  readonly #defaults: PolicyDefaults;
  readonly #logger: PolicyLogger;
  readonly #debounceMs: number;
  #table: PolicyTable;
  #files: PolicyFile[];
  #generation = 1;
  #appliedAt = new Date().toISOString();
  /** Fingerprints of the running set and of the last rejected one: a repeated event is not a new change. */
  #appliedPrint: string;
  #rejectedPrint: string | undefined;
  #failures = 0;
  #lastError: ReloadError | undefined;
  readonly #changeListeners = new Set<(change: PolicyChange) => void>();
  readonly #errorListeners = new Set<(error: ReloadError) => void>();
  #watching: FileWatch | undefined;

  /**
   * Load every policy file behind `paths` (files or folders) and start watching them. Throws a
   * PolicyError listing every problem if the set is invalid: the sidecar must not start with it.
   */
  static load(paths: readonly string[], defaults: PolicyDefaults, logger: PolicyLogger, options: PolicyStoreOptions = {}): PolicyStore {
    const loaded = loadSet(paths, defaults);
    if ('problems' in loaded) throw new PolicyError(loaded.problems);
    const store = new PolicyStore(paths, defaults, logger, options, loaded);
    if (options.watch ?? true) store.#watch();
    logger.info({ files: loaded.files.map((f) => f.file), policies: loaded.files.reduce((n, f) => n + f.policies.length, 0) }, 'policies loaded');
    return store;
  }

  private constructor(paths: readonly string[], defaults: PolicyDefaults, logger: PolicyLogger, options: PolicyStoreOptions, loaded: ValidSet) {
    this.#paths = paths;
    this.#defaults = defaults;
    this.#logger = logger;
    this.#debounceMs = options.debounceMs ?? 50;
    this.#table = loaded.table;
    this.#files = loaded.files;
    this.#appliedPrint = loaded.print;
  }

  /** The effective policy for a call (hot path: a map lookup and a walk over the service's routes). */
  resolve(service: string, namespace: string, request: RequestInfo): EffectivePolicy {
    return this.#table.resolve(service, namespace, request);
  }

  /** Whether any current policy of the service says who may call it. */
  restrictsAccess(service: string, namespace: string): boolean {
    return this.#table.restrictsAccess(service, namespace);
  }

  /** The services subscribed to a topic in the current policy set. */
  subscribers(topic: string): readonly Subscriber[] {
    return this.#table.subscribers(topic);
  }

  /** The built-in policy of this sidecar (what a service without any policy gets). */
  get defaults(): EffectivePolicy {
    return this.#table.defaults;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Reloads rejected since start-up (each distinct broken state counts once). */
  get reloadFailures(): number {
    return this.#failures;
  }

  /** The most recent rejected reload, kept after later successful ones (see dump().generation). */
  get lastError(): ReloadError | undefined {
    return this.#lastError;
  }

  /** Called after a new set is applied. Returns a function that removes the listener. */
  onChange(listener: (change: PolicyChange) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** Called when a change on disk is rejected. Returns a function that removes the listener. */
  onReloadError(listener: (error: ReloadError) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /**
   * Read the files again and apply them if they are valid and differ from the running set. The
   * watcher calls this; so may an admin endpoint. Returns whether a new set was applied.
   */
  reload(): boolean {
    const loaded = loadSet(this.#paths, this.#defaults);
    if (loaded.print === this.#appliedPrint) return false;
    if ('problems' in loaded) {
      if (loaded.print === this.#rejectedPrint) return false;
      this.#rejectedPrint = loaded.print;
      this.#failures++;
      const error: ReloadError = { at: new Date().toISOString(), problems: loaded.problems.map(formatProblem) };
      this.#lastError = error;
      this.#logger.error({ code: 'POLICY_INVALID', problems: error.problems, reloadFailures: this.#failures },
        `policy change rejected, the running policies stay: ${new PolicyError(loaded.problems).message}`);
      this.#emit(this.#errorListeners, error);
      return false;
    }
    this.#table = loaded.table;
    this.#files = loaded.files;
    this.#appliedPrint = loaded.print;
    this.#rejectedPrint = undefined;
    this.#generation++;
    this.#appliedAt = new Date().toISOString();
    const change: PolicyChange = { generation: this.#generation, files: loaded.files.map((f) => f.file) };
    this.#logger.info({ ...change, policies: loaded.files.reduce((n, f) => n + f.policies.length, 0) }, 'policies reloaded');
    this.#emit(this.#changeListeners, change);
    return true;
  }

  /** Everything /config_dump shows about policies; plain JSON. */
  dump(): PolicyDump {
    const table = this.#table.dump();
    return {
      generation: this.#generation,
      appliedAt: this.#appliedAt,
      paths: this.#paths,
      files: this.#files.map((f) => ({ file: f.file, policies: f.policies })),
      defaults: table.defaults,
      services: table.services,
      reload: { failures: this.#failures, lastError: this.#lastError ?? null },
      precedence: PRECEDENCE,
    };
  }

  /** Stop watching. */
  close(): void {
    this.#watching?.close();
    this.#watching = undefined;
  }

  #emit<T>(listeners: Set<(value: T) => void>, value: T): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (err) {
        this.#logger.error({ err }, 'policy listener failed');
      }
    }
  }

  /** Any change re-reads the whole set (see config/watch-files.ts for why folders are watched). */
  #watch(): void {
    const folders: string[] = [];
    const files: string[] = [];
    for (const given of this.#paths) (statSync(given).isDirectory() ? folders : files).push(given);
    this.#watching = watchFiles({ folders, files }, {
      debounceMs: this.#debounceMs,
      onChange: () => this.reload(),
      onError: (err, folder) => this.#logger.error({ err, folder }, 'policy watch failed'),
    });
  }
}

interface ValidSet { table: PolicyTable; files: PolicyFile[]; print: string }

/** Read, check and compile; a fingerprint of what was read identifies the state on disk. */
function loadSet(paths: readonly string[], defaults: PolicyDefaults): ValidSet | { problems: PolicyProblem[]; print: string } {
  const set = readPolicySet(paths);
  const print = JSON.stringify([set.files.map((f) => [f.file, f.text]), set.problems.map(formatProblem)]);
  if (set.problems.length > 0) return { problems: set.problems, print };
  const { table, problems } = compilePolicies(set, defaults);
  if (problems.length > 0) return { problems, print };
  return { table, files: set.files, print };
}
