#!/usr/bin/env node
// In-process micro-benchmark of a cache hit (issue 5): the cache filter's hit path for a 1 KiB
// object in the memory store, without sockets or kernel, so it is steady on a shared machine.
// Three cases: `fake` (records nothing: the filter's own cost) and `http` (a real node
// ServerResponse on a stream that discards bytes: the filter plus node's header serialization) and `bare` (node writing
// an equivalent response with no Switchyard code: the floor for `http`).
// Each iteration builds a RequestContext as the server does. Usage:
//   node bench/cache-hit.mjs [ITERATIONS=200000] [ROUNDS=5]     (after npx tsc -p tsconfig.build.json)
import http from 'node:http';
import { Writable } from 'node:stream';
import { RequestContext } from '../dist/core/context.js';
import { cacheFeature } from '../dist/filters/cache/index.js';

const N = Number(process.argv[2] ?? 200_000);
const ROUNDS = Number(process.argv[3] ?? 5);
const BODY = Buffer.alloc(1024, 'a');
const listener = { name: 'bench', scheme: 'http', maxBodySize: 1 << 20 };
// What wrk sends, as node parses it.
const REQ_HEADERS = { host: '127.0.0.1:18320' };
const RAW = ['Host', '127.0.0.1:18320'];

const shared = new Map();
const filter = cacheFeature.create(
  true,
  {
    log: () => {},
    shared: (k, make) => (shared.has(k) ? shared.get(k) : shared.set(k, make()).get(k)),
    globals: { cache: { store: 'memory', maxSize: '256MiB' } },
  },
  { name: 'bench' },
);

/** The origin's answer (what the nginx origin of `npm run bench` sends for /cache/1k). */
const origin = (ctx) => {
  ctx.writeHead(200, {
    server: 'nginx/1.22.1',
    date: new Date().toUTCString(),
    'content-type': 'text/html',
    'content-length': String(BODY.length),
    'last-modified': 'Sat, 28 Nov 2026 20:00:00 GMT',
    connection: 'keep-alive',
    etag: '"6938a0a0-400"',
    'cache-control': 'public, max-age=3600',
    'accept-ranges': 'bytes',
  });
  ctx.res.end(BODY);
};

function fakeReq() {
  return {
    method: 'GET',
    url: '/cache/1k',
    headers: { ...REQ_HEADERS },
    rawHeaders: RAW.slice(),
    httpVersion: '1.1',
    httpVersionMajor: 1,
    socket: { remoteAddress: '127.0.0.1' },
  };
}

let sink = 0;
const fakeRes = () => ({
  headersSent: false,
  writableEnded: false,
  destroyed: false,
  writeHead(status, headers) {
    sink += status + (headers === undefined ? 0 : 1);
    this.headersSent = true;
  },
  write: () => true,
  end(chunk) {
    sink += chunk === undefined ? 0 : chunk.length;
    this.writableEnded = true;
  },
  addTrailers() {},
  once() {},
  destroy() {},
});

let written = 0;
const discardOptions = {
  write(c, _e, cb) {
    written += c.length;
    cb();
  },
  writev(cs, cb) {
    written += cs.length;
    cb();
  },
};
/** A real ServerResponse on a fresh stream that discards the bytes (as a socket would take them). */
function httpRes(req) {
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = true;
  res.assignSocket(new Writable(discardOptions));
  return res;
}
/** The same response written directly by node: the floor for the `http` writer. */
const BARE_HEADERS = {
  server: 'nginx/1.22.1',
  date: new Date().toUTCString(),
  'content-type': 'text/html',
  'content-length': String(BODY.length),
  'last-modified': 'Sat, 28 Nov 2026 20:00:00 GMT',
  etag: '"6938a0a0-400"',
  'cache-control': 'public, max-age=3600',
  'accept-ranges': 'bytes',
};

async function once(kind) {
  const req = fakeReq();
  const res = kind === 'http' ? httpRes(req) : fakeRes();
  const ctx = new RequestContext(req, res, listener, '127.0.0.1', 'req-id-0123456789');
  await filter.handle(ctx, origin);
  return ctx;
}

// Store the object (a miss), then check the next request is a hit.
await once('fake');
await new Promise((r) => setImmediate(r));
{
  const req = fakeReq();
  let status = '';
  const res = fakeRes();
  res.writeHead = (_s, h) => {
    status = String(h['cache-status'] ?? h[h.indexOf?.('cache-status') + 1]);
  };
  await filter.handle(new RequestContext(req, res, listener, '127.0.0.1', 'x'), origin);
  if (!status.startsWith('switchyard; hit')) throw new Error(`expected a hit, got ${status}`);
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Batches of 100 with a turn of the event loop between them, as a server under load runs. */
async function run(kind) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    if (i % 100 === 0) await tick();
    const req = fakeReq();
    const res = kind === 'fake' ? fakeRes() : httpRes(req);
    const ctx = new RequestContext(req, res, listener, '127.0.0.1', 'req-id-0123456789');
    if (kind === 'bare') {
      res.writeHead(200, {
        ...BARE_HEADERS,
        age: '1',
        'cache-status': 'switchyard; hit',
        'x-request-id': ctx.requestId,
      });
      res.end(BODY);
    } else {
      filter.handle(ctx, origin);
    }
  }
  return Number(process.hrtime.bigint() - t0) / N;
}

const KINDS = (process.env.KINDS ?? 'fake http bare').split(' ');
for (const kind of KINDS) {
  const results = [];
  const before = written;
  for (let r = 0; r < ROUNDS; r++) results.push(await run(kind));
  const perHit = (written - before) / (N * ROUNDS);
  results.sort((a, b) => a - b);
  const median = results[Math.floor(results.length / 2)];
  console.log(
    `${kind.padEnd(5)} ns/hit median ${median.toFixed(0)} (rounds: ${results.map((x) => x.toFixed(0)).join(' ')}) written/hit ${perHit.toFixed(0)}`,
  );
}
if (sink === -1 || written === -1) console.log(sink);
await filter.close();
