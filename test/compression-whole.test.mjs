// Whole-body compression: a body of known length up to WHOLE_BODY_LIMIT is collected, compressed
// in one call and sent with its exact Content-Length; longer bodies still stream, HEAD answers
// are untouched, and a client or upstream leaving mid-collection gives the memory back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { once } from 'node:events';
import { startOrigin, startProxy, request } from './helpers.mjs';
import { WHOLE_BODY_LIMIT, wholeBodyBytesHeld } from '../dist/filters/compression/writer.js';

/** Compressible, deterministic JSON-ish text. */
function makeText(length) {
  let out = '';
  let seed = 7;
  while (out.length < length) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    out += `{"id":${seed % 100000},"sku":"S-${seed % 977}","tags":["x","y"]},\n`;
  }
  return Buffer.from(out.slice(0, length));
}

function signal() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once `condition()` holds, checking after each short timer; fails after `ms`. */
async function until(condition, ms, what) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let origin;
let proxy;
let timeoutProxy;
const handlers = new Map();

before(async () => {
  origin = await startOrigin((req, res) => {
    const handler = handlers.get(new URL(req.url, 'http://x').pathname);
    if (handler) return handler(req, res);
    res.writeHead(404);
    res.end();
  });
  proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - upstream: app
    compression: { algorithms: [br, gzip] }
`);
  timeoutProxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app: { servers: [{ url: "${origin.url}" }], readTimeout: 300ms }
routes:
  - upstream: app
    compression: { algorithms: [gzip] }
`);
});

after(async () => {
  await proxy?.close();
  await timeoutProxy?.close();
  await origin?.close();
});

function fixed(body, type = 'application/json') {
  return (req, res) => {
    res.writeHead(200, { 'content-type': type, 'content-length': body.length, etag: '"v1"' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

test('a fixed-length body is compressed whole and sent with its exact Content-Length', async () => {
  const body = makeText(300 * 1024);
  handlers.set('/doc', fixed(body));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (const [coding, decode] of [
      ['gzip', zlib.gunzipSync],
      ['br', zlib.brotliDecompressSync],
      ['gzip', zlib.gunzipSync],
    ]) {
      const res = await request(`${proxy.url}/doc`, {
        headers: { 'accept-encoding': coding },
        agent,
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-encoding'], coding);
      assert.equal(res.headers['transfer-encoding'], undefined);
      assert.equal(res.headers['content-length'], String(res.body.length));
      assert.ok(res.body.length < body.length / 3);
      assert.equal(res.headers.etag, 'W/"v1"');
      assert.equal(res.headers.vary, 'Accept-Encoding');
      assert.ok(decode(res.body).equals(body), `${coding} decodes to the upstream bytes`);
    }
  } finally {
    agent.destroy();
  }
  assert.equal(wholeBodyBytesHeld(), 0);
});

test('a body longer than the whole-body limit still streams (chunked, before it ends)', async () => {
  const total = WHOLE_BODY_LIMIT + 512 * 1024;
  const first = makeText(WHOLE_BODY_LIMIT);
  const rest = makeText(total - first.length);
  const go = signal();
  handlers.set('/big', async (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': total });
    res.write(first);
    await go.promise;
    res.end(rest);
  });
  const req = http.get(`${proxy.url}/big`, {
    agent: false,
    headers: { 'accept-encoding': 'gzip' },
  });
  const [res] = await within(once(req, 'response'), 5000, 'the response head');
  assert.equal(res.headers['content-encoding'], 'gzip');
  assert.equal(res.headers['content-length'], undefined);
  assert.equal(res.headers['transfer-encoding'], 'chunked');
  const gunzip = zlib.createGunzip();
  const chunks = [];
  let decoded = 0;
  const someDecoded = signal();
  gunzip.on('data', (d) => {
    chunks.push(d);
    decoded += d.length;
    if (decoded > 0) someDecoded.resolve();
  });
  res.pipe(gunzip);
  // The origin holds the rest back: only a streamed body can be decoded this far.
  await within(someDecoded.promise, 5000, 'decoded bytes before the upstream finished');
  assert.equal(wholeBodyBytesHeld(), 0, 'nothing collected for a body over the limit');
  go.resolve();
  await within(once(gunzip, 'end'), 10000, 'the whole body');
  assert.ok(Buffer.concat(chunks).equals(Buffer.concat([first, rest])));
});

test('a client leaving while the body is collected: memory freed, the proxy keeps serving', async () => {
  // A client's FIN alone cannot be told from a half-close (listeners answer those), so a gone
  // client is noticed when the answer is written: the collected body is dropped then.
  const length = 512 * 1024;
  const body = makeText(length);
  const go = signal();
  const originDone = signal();
  handlers.set('/slow', async (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
    res.write(body.subarray(0, length / 2));
    await go.promise;
    res.end(body.subarray(length / 2), () => originDone.resolve());
  });
  const req = http.get(`${proxy.url}/slow`, {
    agent: false,
    headers: { 'accept-encoding': 'br' },
  });
  req.on('error', () => {});
  let gotResponse = false;
  req.on('response', () => (gotResponse = true));
  await until(() => wholeBodyBytesHeld() >= length, 5000, 'the proxy to collect the body');
  assert.equal(gotResponse, false, 'the head waits for the compressed body');
  req.destroy();
  go.resolve();
  await within(originDone.promise, 5000, 'the origin to finish');
  await until(() => wholeBodyBytesHeld() === 0, 5000, 'the collected body to be released');
  const next = await request(`${proxy.url}/slow`, { headers: { 'accept-encoding': 'gzip' } });
  assert.ok(zlib.gunzipSync(next.body).equals(body));
});

test('an upstream stalling while the body is collected: the read timeout frees the memory', async () => {
  const length = 256 * 1024;
  const body = makeText(length);
  const upstreamClosed = signal();
  handlers.set('/stall', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
    res.write(body.subarray(0, length / 2));
    res.on('close', () => upstreamClosed.resolve());
  });
  const outcome = await within(
    request(`${timeoutProxy.url}/stall`, { headers: { 'accept-encoding': 'gzip' } }).then(
      (res) => ({ res }),
      (error) => ({ error }),
    ),
    10000,
    'the client to learn the outcome',
  );
  // The caller believed the head was out, so the connection is cut: never a truncated body.
  assert.ok(outcome.error !== undefined || outcome.res.status >= 500);
  await within(upstreamClosed.promise, 5000, 'the upstream request to be cancelled');
  await until(() => wholeBodyBytesHeld() === 0, 5000, 'the collected body to be released');
});

test('an upstream failing while the body is collected cuts the response and frees the memory', async () => {
  const length = 256 * 1024;
  const body = makeText(length);
  handlers.set('/broken', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
    res.write(body.subarray(0, length / 2), () => setImmediate(() => res.socket.destroy()));
  });
  const outcome = await within(
    request(`${proxy.url}/broken`, { headers: { 'accept-encoding': 'gzip' } }).then(
      (res) => ({ res }),
      (error) => ({ error }),
    ),
    5000,
    'the client to learn the outcome',
  );
  // Either the connection is cut or an error status arrives; never a truncated coded body
  // presented as complete.
  if (outcome.res !== undefined) assert.ok(outcome.res.status >= 500, `got ${outcome.res.status}`);
  await until(() => wholeBodyBytesHeld() === 0, 5000, 'the collected body to be released');
});

test('HEAD: the upstream head passes through uncoded with its own length', async () => {
  const body = makeText(64 * 1024);
  handlers.set('/head', fixed(body));
  const res = await request(`${proxy.url}/head`, {
    method: 'HEAD',
    headers: { 'accept-encoding': 'gzip, br' },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-encoding'], undefined);
  assert.equal(res.headers['content-length'], String(body.length));
  assert.equal(res.headers.vary, 'Accept-Encoding');
  assert.equal(res.body.length, 0);
  assert.equal(wholeBodyBytesHeld(), 0);
});

test('whole bodies under load: many at once all decode, and nothing stays held', async () => {
  const body = makeText(100 * 1024);
  handlers.set('/many', fixed(body));
  const results = await Promise.all(
    Array.from({ length: 40 }, () =>
      request(`${proxy.url}/many`, { headers: { 'accept-encoding': 'gzip' } }),
    ),
  );
  for (const res of results) {
    assert.equal(res.headers['content-length'], String(res.body.length));
    assert.ok(zlib.gunzipSync(res.body).equals(body));
  }
  assert.equal(wholeBodyBytesHeld(), 0);
});
