// The benchmark's target app: a plain node:http server on 127.0.0.1:0 that reads the request body and
// answers with a body of the same size (1 KiB by default). Runs as its own process; prints
// {"port": N} on stdout once listening.
import http from 'node:http';
import { listenAndReportPort } from './children.ts';

const size = Number(process.env['BENCH_BODY_BYTES'] ?? 1024);
const answer = Buffer.alloc(size, 'x');
const headers = { 'content-type': 'application/octet-stream', 'content-length': String(size) };

const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, headers);
    res.end(answer);
  });
});
listenAndReportPort(server);
