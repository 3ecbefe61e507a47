// In-process micro-benchmark of the per-request observability path (issue 8): publishes
// requestStart/requestEnd for fake requests through src/observability with everything on (JSON
// access log to a file, admin metrics and live stats, tracing) and with nothing subscribed, and
// prints CPU microseconds per request for each and the difference.
//
//   npx tsc -p tsconfig.build.json && node bench/obs-micro.mjs [iterations]
//   DIST=/tmp/before/dist node bench/obs-micro.mjs   # another build, for before/after
//
// The fake request carries what a real one does (headers, a socket with byte counters, a
// ServerResponse-like emitter) and, like src/runtime.ts, subscribes one `close` listener per
// request when requestEnd has subscribers.
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// DIST=<dir> measures another build (e.g. an older commit's, for a before/after comparison).
const dist = process.env.DIST ?? new URL('../dist', import.meta.url).pathname;
const { RequestContext } = await import(join(dist, 'core/context.js'));
const { channels } = await import(join(dist, 'core/events.js'));
const { Observability } = await import(join(dist, 'observability/index.js'));

const N = Number(process.argv[2] ?? 200_000);
// BURST: requests finished per event-loop turn (a server under load finishes a few to a few dozen).
const BURST = Number(process.env.BURST ?? 256);
const dir = mkdtempSync(join(tmpdir(), 'obs-micro-'));
const listener = { name: 'bench', scheme: 'http', maxBodySize: 1 << 20 };
const routes = ['api', 'static', 'default'].map((name) => ({ name, features: {} }));

// OBS picks what "on" turns on (default all): admin (metrics, live stats), log, trace.
const parts = new Set((process.env.OBS ?? 'admin,log,trace').split(','));
function config(on) {
  return {
    admin: on && parts.has('admin') ? { address: '127.0.0.1:0' } : undefined,
    accessLog:
      on && parts.has('log')
        ? { format: 'json', output: join(dir, 'access.log'), sampleRatio: 1 }
        : undefined,
    routes,
    features: on && parts.has('trace') ? {} : { tracing: { enabled: false } },
  };
}

const socket = { bytesRead: 0, bytesWritten: 0, remoteAddress: '127.0.0.1', encrypted: false };
const headers = {
  host: 'bench.example',
  'user-agent': 'wrk/4.2.0',
  accept: '*/*',
};

function fakeRequest(i) {
  const req = {
    method: 'GET',
    url: i % 4 === 0 ? '/1k?x=1' : '/1k',
    headers,
    httpVersion: '1.1',
    httpVersionMajor: 1,
    socket,
  };
  const res = new EventEmitter();
  res.headersSent = true;
  res.statusCode = 200;
  return { req, res };
}

async function run(n) {
  const start = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    // Let the event loop run now and then, as a server does: the access log's writes happen there.
    if (i % BURST === BURST - 1) await new Promise(setImmediate);
    const { req, res } = fakeRequest(i);
    const ctx = new RequestContext(req, res, listener, '127.0.0.1', `id-${i}`);
    if (channels.requestStart.hasSubscribers) channels.requestStart.publish(ctx);
    if (channels.requestEnd.hasSubscribers)
      res.once('close', () => channels.requestEnd.publish(ctx));
    ctx.routeName = routes[i % 3].name;
    ctx.upstreamName = 'origin';
    ctx.upstreamServer = 'http://127.0.0.1:9000';
    ctx.upstreamStartTime = ctx.startTime;
    ctx.upstreamHeadersTime = ctx.startTime + 0.2;
    ctx.status = i % 50 === 0 ? 404 : 200;
    socket.bytesRead += 80;
    socket.bytesWritten += 1200;
    res.emit('close');
  }
  const used = process.cpuUsage(start);
  return ((used.user + used.system) / n) * 1;
}

async function measure(on) {
  const obs = new Observability(config(on), {
    version: 'bench',
    servers: () => [],
    log: () => undefined,
  });
  const server = new EventEmitter();
  server.getConnections = (cb) => cb(null, 0);
  obs.addListener('bench', listener, server);
  await run(Math.min(N, 50_000)); // warm-up (JIT)
  const samples = [];
  for (let r = 0; r < 7; r++) samples.push(await run(N));
  samples.sort((a, b) => a - b);
  return { obs, us: samples[0] };
}

const off = await measure(false);
await off.obs.close();
const on = await measure(true);
const text = (await on.obs.metrics?.text()) ?? '';
await on.obs.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  `per request (best of 7 x ${N}): off ${off.us.toFixed(2)} us, on ${on.us.toFixed(2)} us, ` +
    `observability ${(on.us - off.us).toFixed(2)} us`,
);
const requests = text.split('\n').filter((l) => l.startsWith('switchyard_requests_total{'));
console.log(`scrape check: ${requests.length} switchyard_requests_total series`);
