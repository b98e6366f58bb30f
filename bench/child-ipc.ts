// The child side of the bench's IPC, shared by the load generators (generator.ts, async.ts): each
// message from the parent is a spec to run or a stop; every run's result (or error) is sent back
// with the spec's id; "ready" tells the parent the child is listening.
import { Pool } from 'undici';

export function serveSpecs<S extends { id: number }, R>(run: (spec: S) => Promise<R>, closeAll: () => Promise<unknown>, reply: (spec: S, result: R) => object): void {
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
