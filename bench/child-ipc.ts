// The bench's IPC with its forked helpers (the load generators of generator.ts and async.ts, the async
// app): each message from the parent is a command with an id, or a stop; each answer carries the id
// and a value or an error; the helper's first message (`{ready}`, `{port}`) says it is listening.
// The child's side is serveSpecs (and PoolCache for a generator's connections), the parent's ForkedChild.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Pool } from 'undici';

/** An answer to command `id`. */
type Answer = { id?: number; value?: unknown; error?: string };

export function serveSpecs<S extends { id: number }, R>(run: (spec: S) => Promise<R>, closeAll: () => Promise<unknown>, reply: (spec: S, result: R) => object = (spec, result) => ({ id: spec.id, value: result })): void {
  process.on('message', (spec: S | { id: number; stop: true }) => {
    if ('stop' in spec) {
      closeAll().finally(() => process.exit(0));
      return;
    }
    run(spec).then(
      (result) => process.send!(reply(spec, result)),
      (err: unknown) => process.send!({ id: spec.id, error: String((err as Error)?.stack ?? err) }),
    );
  });
  process.send!({ ready: true });
}

/** One keep-alive undici Pool per target and connection count, reused across runs of a generator. */
export class PoolCache {
  readonly #pools = new Map<string, Pool>();

  get(origin: string, connections: number): Pool {
    const key = `${origin}|${connections}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  closeAll(): Promise<unknown> {
    return Promise.all([...this.#pools.values()].map((p) => p.close()));
  }
}

/** The parent's side: a forked helper, driven by command and answer. */
export class ForkedChild {
  readonly #child: ChildProcess;
  /** Its first message ({ready}, {port}, {ports}…). */
  readonly hello: { port?: number; ports?: number[] };
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: never) => void; reject: (e: Error) => void }>();

  private constructor(child: ChildProcess, hello: ForkedChild['hello'], name: string) {
    this.#child = child;
    this.hello = hello;
    child.on('message', (message: Answer) => {
      const waiter = message.id === undefined ? undefined : this.#waiting.get(message.id);
      if (!waiter) return;
      this.#waiting.delete(message.id!);
      if (message.error !== undefined) waiter.reject(new Error(message.error));
      else waiter.resolve(message.value as never);
    });
    child.once('exit', (code) => {
      for (const waiter of this.#waiting.values()) waiter.reject(new Error(`${name} exited (code ${code})`));
      this.#waiting.clear();
    });
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  /** The port it said it listens on (0 if none). */
  get port(): number {
    return this.hello.port ?? 0;
  }

  /** Forks `file` with `args` and waits for its first message. */
  static async start(file: string, args: string[] = []): Promise<ForkedChild> {
    const child = fork(file, args, { execPath: process.execPath, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const name = path.basename(file);
    const hello = await new Promise<ForkedChild['hello']>((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`${name} exited early (code ${code})`)));
    });
    child.removeAllListeners('exit');
    return new ForkedChild(child, hello, name);
  }

  /** Sends `command` with a fresh id; resolves with the answer's value, rejects with its error. */
  call<T>(command: object): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: never) => void, reject });
      this.#child.send({ ...command, id });
    });
  }

  /** Asks it to stop (SIGTERM once the IPC channel is gone), SIGKILL after 5 s. */
  stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
      this.#child.once('exit', () => { clearTimeout(timer); resolve(); });
      if (this.#child.connected) this.#child.send({ id: 0, stop: true });
      else this.#child.kill('SIGTERM');
    });
  }
}
