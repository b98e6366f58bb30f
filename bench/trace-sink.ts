// An OTLP/HTTP trace endpoint for the bench: the sidecars' exports (run.ts) and the tracing observer's
// micro-benchmark (micro.ts) send their spans here, on loopback.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An OTLP/HTTP endpoint that accepts every export and counts requests and bytes. */
export class TraceSink {
  exports = 0;
  bytes = 0;
  readonly #server: Server;
  readonly url: string;

  private constructor(server: Server) {
    this.#server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  static async start(): Promise<TraceSink> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const sink = new TraceSink(server);
    server.on('request', (req, res) => {
      req.on('data', (chunk: Buffer) => { sink.bytes += chunk.length; });
      req.on('end', () => {
        sink.exports++;
        res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/x-protobuf' }).end();
      });
    });
    return sink;
  }

  stop(): Promise<unknown> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(resolve));
  }
}
