// Compression on streams: event streams and trickling bodies are flushed as they go, the
// compressor applies backpressure, and a client leaving mid-stream frees everything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { once } from 'node:events';
import { startOrigin, startProxy } from './helpers.mjs';

const HAS_ZSTD = typeof zlib.createZstdDecompress === 'function';
const DECODERS = {
  gzip: () => zlib.createGunzip(),
  br: () => zlib.createBrotliDecompress(),
  deflate: () => zlib.createInflate(),
  ...(HAS_ZSTD ? { zstd: () => zlib.createZstdDecompress() } : {}),
};

/** A promise with its resolve function, for "the test says go" signals to the origin. */
function signal() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** Fails instead of hanging when `promise` does not settle in time. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Pseudo-random bytes: they do not compress, so backpressure reaches the origin. */
function noise(length, seed) {
  const out = Buffer.alloc(length);
  let s = seed >>> 0;
  for (let i = 0; i < length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

let origin;
let proxy;
/** Per-path behaviour, set by each test. */
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
  - match: { pathPrefix: /fast/ }
    upstream: app
    compression: { algorithms: [gzip], level: { gzip: 1 } }
  - upstream: app
    compression: { algorithms: [br, zstd, gzip, deflate] }
`);
});

after(async () => {
  await proxy?.close();
  await origin?.close();
});

/**
 * Opens a streaming request and decodes the body as it arrives. `text()` is what has been
 * decoded so far; `until(s)` resolves once the decoded text contains `s`.
 */
async function openDecoded(path, coding) {
  const req = http.get(`${proxy.url}${path}`, {
    agent: false,
    headers: { 'accept-encoding': coding },
  });
  const [res] = await once(req, 'response');
  assert.equal(res.headers['content-encoding'], coding);
  const decoder = DECODERS[coding]();
  let text = '';
  const waiters = [];
  decoder.on('data', (chunk) => {
    text += chunk.toString();
    for (const w of [...waiters]) {
      if (text.includes(w.needle)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  res.pipe(decoder);
  const ended = once(decoder, 'end');
  return {
    res,
    ended,
    text: () => text,
    until(needle) {
      if (text.includes(needle)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ needle, resolve }));
    },
  };
}

for (const coding of ['gzip', 'br', 'deflate', 'zstd']) {
  test(
    `SSE over ${coding}: each event reaches the client before the upstream sends the next`,
    { skip: coding === 'zstd' && !HAS_ZSTD ? 'no zstd in this Node.js' : false },
    async () => {
      const go = signal();
      handlers.set(`/sse-${coding}`, async (req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('event: hello\ndata: first\n\n');
        await go.promise;
        res.write('data: second\n\n');
        res.end();
      });
      const stream = await openDecoded(`/sse-${coding}`, coding);
      assert.equal(stream.res.headers['content-length'], undefined);
      // Without a flush per chunk the first event sits in the compressor until the end.
      await within(stream.until('data: first\n\n'), 5000, 'the first event');
      assert.ok(!stream.text().includes('second'));
      go.resolve();
      await within(stream.ended, 5000, 'the end of the stream');
      assert.equal(stream.text(), 'event: hello\ndata: first\n\ndata: second\n\n');
    },
  );
}

test('a chunked JSON stream is flushed whenever the upstream pauses', async () => {
  const go = signal();
  handlers.set('/ndjson', async (req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ n: 1, pad: 'x'.repeat(2000) })}\n`);
    await go.promise;
    res.end(`${JSON.stringify({ n: 2 })}\n`);
  });
  const stream = await openDecoded('/ndjson', 'gzip');
  await within(stream.until('"n":1'), 5000, 'the first record');
  go.resolve();
  await within(stream.ended, 5000, 'the end of the stream');
  assert.match(stream.text(), /"n":2/);
});

test('a long poll answered late with a fixed length arrives whole', async () => {
  const go = signal();
  handlers.set('/poll', async (req, res) => {
    await go.promise;
    const body = JSON.stringify({ messages: Array.from({ length: 200 }, (_, i) => `m${i}`) });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
  const pending = openDecoded('/poll', 'br');
  go.resolve();
  const stream = await pending;
  await within(stream.ended, 5000, 'the answer');
  assert.equal(JSON.parse(stream.text()).messages.length, 200);
});

test('backpressure: a client that stops reading stops the upstream, and nothing is lost', async () => {
  // Loopback socket buffers hold a few MiB on each hop; 32 MiB is well past all of them.
  const total = 32 * 1024 * 1024;
  const chunk = noise(256 * 1024, 42);
  let written = 0;
  const originDone = signal();
  handlers.set('/fast/big', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const pump = () => {
      while (written < total) {
        written += chunk.length;
        if (!res.write(chunk)) return res.once('drain', pump);
      }
      res.end();
      originDone.resolve();
    };
    pump();
  });
  const req = http.get(`${proxy.url}/fast/big`, {
    agent: false,
    headers: { 'accept-encoding': 'gzip' },
  });
  const [res] = await once(req, 'response');
  assert.equal(res.headers['content-encoding'], 'gzip');
  res.pause();
  // Wait until the origin makes no more progress: with backpressure it stalls well short of the
  // end; without it, the proxy would swallow the whole body and the origin would finish.
  let last = -1;
  let still = 0;
  while (still < 4 && written < total) {
    await new Promise((r) => setTimeout(r, 50));
    still = written === last ? still + 1 : 0;
    last = written;
  }
  assert.ok(written < total, `origin wrote ${written} of ${total} bytes with the client paused`);
  // Now read everything and check it byte for byte.
  const gunzip = zlib.createGunzip();
  let received = 0;
  let mismatch = false;
  gunzip.on('data', (data) => {
    for (let i = 0; i < data.length; i += 4096) {
      const at = (received + i) % chunk.length;
      const end = Math.min(i + 4096, data.length);
      if (!data.subarray(i, end).equals(chunk.subarray(at, at + (end - i)))) mismatch = true;
    }
    received += data.length;
  });
  res.pipe(gunzip);
  res.resume();
  await within(once(gunzip, 'end'), 20000, 'the whole body');
  await originDone.promise;
  assert.equal(received, total);
  assert.ok(!mismatch, 'decoded bytes match what the origin sent');
});

test('a client leaving mid-stream cancels the upstream and the proxy keeps serving', async () => {
  const upstreamClosed = signal();
  handlers.set('/endless', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const timer = setInterval(() => res.write(`data: ${Date.now()}\n\n`), 5);
    res.on('close', () => {
      clearInterval(timer);
      upstreamClosed.resolve();
    });
  });
  const stream = await openDecoded('/endless', 'br');
  await within(stream.until('data: '), 5000, 'the first event');
  stream.res.destroy();
  await within(upstreamClosed.promise, 5000, 'the upstream request to be cancelled');
  handlers.set('/after', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('still here '.repeat(200));
  });
  const after = await openDecoded('/after', 'br');
  await within(after.ended, 5000, 'a later response');
  assert.equal(after.text(), 'still here '.repeat(200));
});
