// Whole bodies compressed on the event loop (the default on a single core): byte-exact output
// for every coding and level, a kept zlib state that leaves no trace from one body to the next,
// the loop handed back between turns, cancelled jobs skipped, and large jobs left to the pool.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { startOrigin, startProxy, request } from './helpers.mjs';
import {
  compressWhole,
  compressesOnLoop,
  setCompressOnLoop,
  LOOP_TURN_BUDGET_MS,
} from '../dist/filters/compression/codecs.js';
import { wholeBodyBytesHeld } from '../dist/filters/compression/writer.js';

/** Compressible, deterministic JSON-ish text. */
function makeText(length, seed = 7) {
  let out = '';
  while (out.length < length) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    out += `{"id":${seed % 100000},"sku":"S-${seed % 977}","tags":["x","y"]},\n`;
  }
  return Buffer.from(out.slice(0, length));
}

/** A job as WholeBody hands it over; resolves with what done() got. */
function job(encoding, level, input, cancelled = false) {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  const j = {
    encoding,
    level,
    hints: { length: input.length, text: true },
    input,
    cancelled,
    done(error, result, skipped) {
      resolve({ error, result, skipped });
    },
  };
  return { job: j, promise };
}

let origin;
let proxy;
let wasOnLoop;
const bodies = new Map();

before(async () => {
  wasOnLoop = compressesOnLoop();
  setCompressOnLoop(true);
  origin = await startOrigin((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const body = bodies.get(path.replace(/^\/cached/, ''));
    if (body === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    const headers = { 'content-type': 'application/json', 'content-length': body.length };
    if (path.startsWith('/cached')) headers['cache-control'] = 'public, max-age=60';
    res.writeHead(200, headers);
    res.end(body);
  });
  proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - upstream: app
    compression:
      algorithms: [br, gzip, deflate]
      level: { br: 4, gzip: 6, deflate: 5 }
      cachedLevel: { br: 5, gzip: 9, deflate: 9 }
`);
});

after(async () => {
  setCompressOnLoop(wasOnLoop);
  await proxy?.close();
  await origin?.close();
});

test('on the loop, gzip and deflate are byte-exact with zlib one-shot output at the same level, body after body', async () => {
  const a = makeText(100 * 1024, 1);
  const b = makeText(60 * 1024, 2);
  bodies.set('/a', a);
  bodies.set('/b', b);
  // Alternating bodies and levels reuse the kept states: each answer must still be exactly
  // what a fresh zlib state produces (no dictionary or header left from the previous body).
  for (let round = 0; round < 3; round++) {
    for (const [path, body] of [
      ['/a', a],
      ['/b', b],
    ]) {
      const gz = await request(`${proxy.url}${path}`, { headers: { 'accept-encoding': 'gzip' } });
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.equal(gz.headers['content-length'], String(gz.body.length));
      assert.ok(gz.body.equals(zlib.gzipSync(body, { level: 6 })));

      const cached = await request(`${proxy.url}/cached${path}`, {
        headers: { 'accept-encoding': 'gzip' },
      });
      assert.ok(cached.body.equals(zlib.gzipSync(body, { level: 9 })));

      const df = await request(`${proxy.url}${path}`, {
        headers: { 'accept-encoding': 'deflate' },
      });
      assert.equal(df.headers['content-encoding'], 'deflate');
      assert.ok(df.body.equals(zlib.deflateSync(body, { level: 5 })));
    }
  }
  assert.equal(wholeBodyBytesHeld(), 0);
});

test('on the loop, brotli round-trips with an exact Content-Length', async () => {
  const body = makeText(100 * 1024, 3);
  bodies.set('/br', body);
  const res = await request(`${proxy.url}/br`, { headers: { 'accept-encoding': 'br' } });
  assert.equal(res.headers['content-encoding'], 'br');
  assert.equal(res.headers['content-length'], String(res.body.length));
  assert.ok(zlib.brotliDecompressSync(res.body).equals(body));
});

test('a body too costly for the loop (1 MiB of gzip 9) still compresses, on the pool', async () => {
  const body = makeText(1024 * 1024, 4);
  bodies.set('/big', body);
  const res = await request(`${proxy.url}/cached/big`, {
    headers: { 'accept-encoding': 'gzip' },
  });
  assert.equal(res.headers['content-length'], String(res.body.length));
  assert.ok(res.body.equals(zlib.gzipSync(body, { level: 9 })));
});

test('many bodies at once on the loop all decode, and nothing stays held', async () => {
  const body = makeText(100 * 1024, 5);
  bodies.set('/many', body);
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      request(`${proxy.url}/many`, { headers: { 'accept-encoding': i % 2 ? 'gzip' : 'br' } }),
    ),
  );
  for (const [i, res] of results.entries()) {
    const decoded = i % 2 ? zlib.gunzipSync(res.body) : zlib.brotliDecompressSync(res.body);
    assert.ok(decoded.equals(body));
  }
  assert.equal(wholeBodyBytesHeld(), 0);
});

test('the loop is handed back between turns: an immediate queued behind many jobs runs before the last one', async () => {
  const input = makeText(100 * 1024, 6);
  // Far more work than one turn's budget, on any machine.
  const count = Math.max(40, LOOP_TURN_BUDGET_MS * 4);
  const jobs = Array.from({ length: count }, () => job('gzip', 6, input));
  for (const { job: j } of jobs) compressWhole(j);
  let lastDone = false;
  void jobs[count - 1].promise.then(() => (lastDone = true));
  // Scheduled after the first drain: it can only run before the last job if the drain yields.
  const ranEarly = await new Promise((resolve) => setImmediate(() => resolve(!lastDone)));
  assert.equal(ranEarly, true);
  const outcomes = await Promise.all(jobs.map((j) => j.promise));
  for (const { error, result, skipped } of outcomes) {
    assert.equal(error, null);
    assert.equal(skipped, false);
    assert.ok(zlib.gunzipSync(result).equals(input));
  }
});

test('a job cancelled before its turn is skipped, not compressed', async () => {
  const input = makeText(10 * 1024, 8);
  const kept = job('gzip', 6, input);
  const dropped = job('gzip', 6, input, true);
  compressWhole(kept.job);
  compressWhole(dropped.job);
  const [a, b] = await Promise.all([kept.promise, dropped.promise]);
  assert.equal(a.skipped, false);
  assert.ok(zlib.gunzipSync(a.result).equals(input));
  assert.deepEqual(b, { error: null, result: null, skipped: true });
});
