#!/usr/bin/env node
// In-process benchmark of a whole cache hit (issue 5) as the listener hands it over: the
// runtime's dispatch (request id, RequestContext, observability start, routing, the route's
// filter chain), the cache filter and node's ServerResponse writing head and body to a stream
// that discards them. No sockets, parser or kernel, so it is steady on a shared machine; run
// alternately against two builds to compare. `bare` is node writing an equivalent response
// (the floor). Usage (after npx tsc -p tsconfig.build.json):
//   node bench/cache-hit-full.mjs [ITERATIONS=100000] [ROUNDS=7]
import http from 'node:http';
import { Writable } from 'node:stream';
import { Switchyard } from '../dist/main.js';
import { loadConfigText } from '../dist/config/load.js';

const N = Number(process.argv[2] ?? 100_000);
const ROUNDS = Number(process.argv[3] ?? 7);
const BODY = Buffer.alloc(1024, 'a');

const origin = http.createServer((req, res) => {
  res.writeHead(200, {
    'content-type': 'text/plain',
    'content-length': BODY.length,
    'last-modified': 'Sat, 28 Nov 2026 20:00:00 GMT',
    etag: '"6938a0a0-400"',
    'cache-control': 'public, max-age=3600',
    'accept-ranges': 'bytes',
  });
  res.end(BODY);
});
await new Promise((r) => origin.listen(0, '127.0.0.1', r));
const yaml = `
listeners:
  - name: bench
    address: 127.0.0.1:0
upstreams:
  origin:
    servers:
      - url: http://127.0.0.1:${origin.address().port}
routes:
  - upstream: origin
    cache: true
cache: { store: memory, maxSize: 256MiB }
${process.env.EXTRA ?? ''}
`;
const loaded = loadConfigText(yaml);
if (loaded.config === undefined) throw new Error(JSON.stringify(loaded.issues));
const proxy = await Switchyard.start(loaded.config, { announce: false, log: () => {} });
const url = `${proxy.url()}/cache/1k`;
// Store the object, then check that the next request is a hit.
await fetch(url).then((r) => r.arrayBuffer());
await new Promise((r) => setTimeout(r, 50));
const check = await fetch(url);
await check.arrayBuffer();
if (!String(check.headers.get('cache-status')).startsWith('switchyard; hit'))
  throw new Error(`expected a hit, got ${check.headers.get('cache-status')}`);

const listener = [...proxy.listeners.values()][0];
const info = listener.info;
const host = new URL(proxy.url()).host;
let written = 0;
const sink = {
  write(c, _e, cb) {
    written += c.length;
    cb();
  },
  writev(cs, cb) {
    for (const c of cs) written += c.chunk.length;
    cb();
  },
};
const socket = new Writable(sink);
socket.remoteAddress = '127.0.0.1';
socket.remotePort = 40000;
socket.encrypted = undefined;

function fakeReq() {
  const req = new http.IncomingMessage(socket);
  req.method = 'GET';
  req.url = '/cache/1k';
  req.headers = { host };
  req.rawHeaders = ['Host', host];
  req.httpVersion = '1.1';
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  req.complete = true;
  return req;
}
function fakeRes(req) {
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = true;
  res.assignSocket(new Writable(sink));
  return res;
}
const HEAD = [
  'date',
  new Date().toUTCString(),
  'content-type',
  'text/plain',
  'content-length',
  '1024',
  'last-modified',
  'Sat, 28 Nov 2026 20:00:00 GMT',
  'etag',
  '"6938a0a0-400"',
  'cache-control',
  'public, max-age=3600',
  'accept-ranges',
  'bytes',
];
const tick = () => new Promise((resolve) => setImmediate(resolve));
const runtime = () => proxy.runtime;

async function run(kind) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    if (i % 50 === 0) await tick();
    const req = fakeReq();
    const res = fakeRes(req);
    if (kind === 'bare') {
      res.writeHead(200, [
        ...HEAD,
        'age',
        '1',
        'cache-status',
        'switchyard; hit',
        'x-request-id',
        'x',
      ]);
      res.end(BODY);
    } else {
      runtime().handle(req, res, info);
    }
  }
  await tick();
  // CPU time, not wall time: on a shared machine being descheduled must not count.
  const used = process.cpuUsage(t0);
  return ((used.user + used.system) * 1000) / N;
}

const KINDS = (process.env.KINDS ?? 'full bare').split(' ');
for (const kind of KINDS) await run(kind); // warm-up
const results = Object.fromEntries(KINDS.map((k) => [k, []]));
for (let r = 0; r < ROUNDS; r++) for (const kind of KINDS) results[kind].push(await run(kind));
for (const kind of KINDS) {
  const before = written;
  await run(kind);
  const perHit = (written - before) / N;
  const xs = results[kind].sort((a, b) => a - b);
  console.log(
    `${kind.padEnd(5)} CPU ns/hit median ${xs[Math.floor(xs.length / 2)].toFixed(0)} (rounds: ${xs.map((x) => x.toFixed(0)).join(' ')}) bytes written/hit ${perHit.toFixed(0)}`,
  );
}
await proxy.stop(100);
origin.close();
