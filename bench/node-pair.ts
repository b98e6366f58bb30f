// The floor for a Node.js proxy: two of the plainest reverse proxies Node can run, chained like the two
// sidecars (generator → node 1 → node 2 → app). Each is a `node:http` server that reads the request
// body and sends it on with an undici Pool (keep-alive, the same client the sidecar uses for its app),
// then answers with the reply. No policy, no metrics, no tracing, no logs, no batching, no gRPC, and
// Node's default flags: what a hand-written Node proxy costs on this machine before it does anything.
// The mesh's figures are read against it as well as against HAProxy's.
//
// `node bench/node-pair.ts` runs one proxy (NODE_PAIR_TARGET = the next hop's origin) and prints
// {"port": N} once listening; `startNodePair()` starts the chain.
import http, { type IncomingHttpHeaders } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { listenAndReportPort, startChain, startListeningChild, type ListeningChild, type ProxyChain } from './children.ts';

/** Headers that belong to one connection, not to the request (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** The request's headers as the next hop should get them. */
export function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function serve(target: string): void {
  const pool = new Pool(target, { connections: 16 });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      pool.request({ path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers: forwardedHeaders(req.headers), body })
        .then(async (answer) => {
          const payload = Buffer.from(await answer.body.arrayBuffer());
          const type = answer.headers['content-type'];
          res.writeHead(answer.statusCode, typeof type === 'string' ? { 'content-length': payload.length, 'content-type': type } : { 'content-length': payload.length });
          res.end(payload);
        })
        .catch(() => {
          if (!res.headersSent) res.writeHead(502, { 'content-length': 0 });
          res.end();
        });
    });
  });
  listenAndReportPort(server);
}

/** One proxy process forwarding to `target` (an origin). */
function startNodeProxy(target: string): Promise<ListeningChild> {
  return startListeningChild(fileURLToPath(import.meta.url), { NODE_PAIR_TARGET: target }, 'node proxy');
}

export type NodePair = ProxyChain<ListeningChild>;

/** generator → node 1 → node 2 → app on 127.0.0.1:`appPort`. */
export function startNodePair(appPort: number): Promise<NodePair> {
  return startChain(appPort, (next) => startNodeProxy(`http://127.0.0.1:${next}`));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const target = process.env['NODE_PAIR_TARGET'];
  if (!target) {
    process.stderr.write('node-pair: set NODE_PAIR_TARGET to the next hop (http://127.0.0.1:PORT)\n');
    process.exit(2);
  }
  serve(target);
}
