// The floor for any Node.js server on this machine: node:http or node:https answering a fixed
// 1 KiB body itself, with no proxying and no features. What Switchyard's TLS numbers are read
// against (see docs/performance.md): a proxy cannot be cheaper per request than this.
// Env: PORT, TLS_CERT and TLS_KEY (both set: https).
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';

const body = Buffer.alloc(1024, 'x');
const head = ['content-type', 'text/plain', 'content-length', String(body.length)];
const handler = (_req, res) => {
  res.writeHead(200, head);
  res.end(body);
};
const { PORT = '18250', TLS_CERT, TLS_KEY } = process.env;
const server =
  TLS_CERT && TLS_KEY
    ? https.createServer({ cert: readFileSync(TLS_CERT), key: readFileSync(TLS_KEY) }, handler)
    : http.createServer(handler);
server.keepAliveTimeout = 75_000;
server.listen(Number(PORT), '127.0.0.1', () => process.stderr.write(`listening on ${PORT}\n`));
