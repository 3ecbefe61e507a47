// The ceiling experiment (not product code): the least a node:http + undici proxy can do per
// request, with Switchyard's engine choices (node:http server, undici Pool.dispatch with the
// raw-header handler, streaming with backpressure) and none of its features. Whatever this
// reaches on one core is the most Switchyard can hope for without changing engine.
// Env: PORT, UPSTREAM (host:port), HEADERS=array|object (how the response head is handed to
// node: a flat raw array skips building an object), XFF=1 (add the four X-Forwarded-*/X-Request-Id
// headers Switchyard adds, with a UUID per request, to price them), HWM=bytes (onData keeps
// undici reading while the client socket holds less than this, instead of pausing at node's
// 16 KiB high-water mark), CLIENT=http (upstream through node:http's keep-alive Agent and
// pipe() instead of undici: the node-http anchor's engine, for comparison).
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';

const PORT = Number(process.env.PORT ?? 18300);
const UPSTREAM = process.env.UPSTREAM ?? '127.0.0.1:18001';
const ARRAY_HEADERS = (process.env.HEADERS ?? 'array') === 'array';
const XFF = process.env.XFF === '1';
const HWM = Number(process.env.HWM ?? 0);
const CLIENT = process.env.CLIENT ?? 'undici';
const [UP_HOST, UP_PORT] = UPSTREAM.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 64 });
const pool = new Pool(`http://${UPSTREAM}`, {
  pipelining: 1,
  keepAliveTimeout: 60_000,
  keepAliveMaxTimeout: 600_000,
});

const HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

class Exchange {
  constructor(res) {
    this.res = res;
    this.resume = null;
    this.onDrain = () => this.resume?.();
  }
  onConnect() {}
  onHeaders(status, raw, resume) {
    if (status < 200) return true;
    this.resume = resume;
    if (ARRAY_HEADERS) {
      const out = [];
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toString('latin1');
        if (HOP.has(name.toLowerCase())) continue;
        out.push(name, raw[i + 1].toString('latin1'));
      }
      this.res.writeHead(status, out);
    } else {
      const out = {};
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toString('latin1').toLowerCase();
        if (HOP.has(name)) continue;
        out[name] = raw[i + 1].toString('latin1');
      }
      this.res.writeHead(status, out);
    }
    return true;
  }
  onData(chunk) {
    const ok = this.res.write(chunk) || (HWM > 0 && this.res.writableLength < HWM);
    if (!ok) this.res.once('drain', this.onDrain);
    return ok;
  }
  onComplete() {
    this.res.end();
  }
  onError() {
    if (!this.res.headersSent) {
      this.res.writeHead(502, { 'content-length': 0 });
      this.res.end();
    } else this.res.destroy();
  }
}

const server = http.createServer({ noDelay: true, keepAliveTimeout: 75_000 }, (req, res) => {
  const raw = req.rawHeaders;
  const headers = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1]);
  }
  if (XFF) {
    headers.push(
      'x-forwarded-for',
      req.socket.remoteAddress,
      'x-forwarded-proto',
      'http',
      'x-forwarded-host',
      req.headers.host ?? '',
      'x-request-id',
      randomUUID(),
    );
  }
  if (CLIENT === 'http') {
    const up = http.request(
      { host: UP_HOST, port: Number(UP_PORT), method: req.method, path: req.url, headers, agent },
      (ur) => {
        const out = [];
        const r = ur.rawHeaders;
        for (let i = 0; i < r.length; i += 2)
          if (!HOP.has(r[i].toLowerCase())) out.push(r[i], r[i + 1]);
        res.writeHead(ur.statusCode, out);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
    return;
  }
  const hasBody =
    req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.dispatch(
    { path: req.url, method: req.method, headers, body: hasBody ? req : null },
    new Exchange(res),
  );
});
server.listen(PORT, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
