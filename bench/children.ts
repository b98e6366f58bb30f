// Child processes of the bench: starting one that prints {"port": N} once it listens (the app, the
// plain Node proxies), the child's side of that, two proxies chained like the two sidecars, stopping
// any of them, and starting some with extra environment variables.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';

export interface ListeningChild {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** Runs `file` with Node and these extra environment variables; resolves once it printed its port. */
export async function startListeningChild(file: string, env: Record<string, string>, what: string): Promise<ListeningChild> {
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${what} exited early (code ${code})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });
  child.removeAllListeners('exit');
  return { pid: child.pid!, port, stop: () => stopChild(child) };
}

/** SIGTERM, then SIGKILL if it has not exited within `timeoutMs`. */
export function stopChild(child: ChildProcess, timeoutMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
    child.kill('SIGTERM');
  });
}

/** The child's side: listen on 127.0.0.1:0, print {"port": N}, and close down on SIGTERM. */
export function listenAndReportPort(server: Server): void {
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  });
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

export interface ProxyChain<P extends { port: number; stop(): Promise<void> }> {
  /** Where the generator sends: the first proxy. */
  port: number;
  /** The proxy next to the generator, and the one next to the app. */
  first: P;
  second: P;
  stop(): Promise<void>;
}

/** generator → first → second → app on 127.0.0.1:`appPort`; `startHop(port)` starts one proxy in front of `port`. */
export async function startChain<P extends { port: number; stop(): Promise<void> }>(appPort: number, startHop: (nextPort: number, position: 1 | 2) => Promise<P>): Promise<ProxyChain<P>> {
  const second = await startHop(appPort, 2);
  let first: P;
  try {
    first = await startHop(second.port, 1);
  } catch (err) {
    await second.stop();
    throw err;
  }
  return {
    port: first.port, first, second,
    stop: async () => {
      await first.stop();
      await second.stop();
    },
  };
}
