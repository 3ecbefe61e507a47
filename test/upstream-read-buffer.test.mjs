// The built-in HTTP/1.1 upstream client reads into one reused buffer per connection and reuses
// it only when the client socket took the last chunk whole. These tests make every other case
// happen (slow clients with data queued, filters that keep chunks, heads and chunk-size lines
// split across reads, pipelined clients) and check every body byte for byte.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { gunzipSync } from 'node:zlib';
import { startOrigin, startProxy, startProxyTo } from './helpers.mjs';

/** Deterministic bytes for a request id: the client knows what the body must be. */
function bodyFor(id, size) {
  const out = Buffer.allocUnsafe(size);
  let x = (id * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const sha = (b) => createHash('sha256').update(b).digest('hex');
const SIZES = [700, 20_000, 65_536, 70_000, 102_400, 300_000, 1_100_000];

let origin;
let proxy;
const cleanups = [];
before(async () => {
  origin = await startOrigin((req, res) => {
    const url = new URL(req.url, 'http://x');
    const id = Number(url.searchParams.get('id'));
    const size = Number(url.searchParams.get('size'));
    const body = bodyFor(id, size);
    const chunked = url.searchParams.get('chunked') === '1';
    const drip = url.searchParams.get('drip') === '1';
    const headers = { 'content-type': 'application/octet-stream', 'x-id': String(id) };
    if (url.pathname.startsWith('/cached')) headers['cache-control'] = 'public, max-age=60';
    if (!chunked) headers['content-length'] = String(size);
    res.writeHead(200, headers);
    if (!drip) {
      res.end(body);
      return;
    }
    // Odd-sized pieces with pauses: heads, chunk-size lines and bodies split across reads.
    let at = 0;
    const step = () => {
      if (at >= body.length) return res.end();
      const n = Math.min(body.length - at, 1 + ((at * 7919) % 9000));
      res.write(body.subarray(at, at + n));
      at += n;
      setImmediate(step);
    };
    step();
  });
  cleanups.push(origin.close);
  proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }], keepAlive: { maxIdle: 8 } } }
routes:
  - { match: { pathPrefix: /gz/ }, upstream: app, compression: { types: ["application/octet-stream"] } }
  - { match: { pathPrefix: /cached/ }, upstream: app, cache: true }
  - { upstream: app }
`);
  cleanups.push(proxy.close);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** GET through the proxy; a slow client stops reading for a while after the head. */
function get(path, { agent, slowMs = 0, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${proxy.url}${path}`, { agent, headers }, (res) => {
      const chunks = [];
      if (slowMs > 0) {
        res.pause();
        setTimeout(() => res.resume(), slowMs);
      }
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ res, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

test("200 concurrent bodies of many sizes, fast and slow clients: every byte is the origin's", async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 40 });
  let id = 1;
  const jobs = [];
  for (let round = 0; round < 200; round++) {
    const size = SIZES[round % SIZES.length];
    const n = id++;
    const chunked = round % 3 === 0 ? 1 : 0;
    const drip = round % 5 === 0 ? 1 : 0;
    const slowMs = round % 4 === 0 ? 30 : 0;
    jobs.push(
      get(`/plain?id=${n}&size=${size}&chunked=${chunked}&drip=${drip}`, { agent, slowMs }).then(
        ({ res, body }) => {
          assert.equal(res.statusCode, 200);
          assert.equal(res.headers['x-id'], String(n));
          assert.equal(body.length, size, `id ${n}: length`);
          assert.equal(sha(body), sha(bodyFor(n, size)), `id ${n}: bytes differ (size ${size})`);
        },
      ),
    );
  }
  await Promise.all(jobs);
  agent.destroy();
});

test('compression and the cache keep chunks: their bodies are intact too', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  const jobs = [];
  for (let i = 0; i < 40; i++) {
    const size = SIZES[i % SIZES.length];
    const n = 10_000 + i;
    jobs.push(
      get(`/gz/x?id=${n}&size=${size}&drip=${i % 2}`, {
        agent,
        headers: { 'accept-encoding': 'gzip' },
        slowMs: i % 3 === 0 ? 20 : 0,
      }).then(({ res, body }) => {
        const plain = res.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
        assert.equal(sha(plain), sha(bodyFor(n, size)), `gz id ${n}`);
      }),
    );
  }
  await Promise.all(jobs);
  for (let i = 0; i < 14; i++) {
    const size = SIZES[i % SIZES.length];
    const n = 20_000 + (i % 7);
    const { body } = await get(`/cached/x?id=${n}&size=${size}&chunked=${i % 2}`, { agent });
    assert.equal(sha(body), sha(bodyFor(n, size)), `cached id ${n}, pass ${Math.floor(i / 7)}`);
  }
  agent.destroy();
});

test('pipelined clients and a client that never reads: the others get intact bodies', async () => {
  // A client that asks for 1 MiB and never reads keeps data queued on its socket.
  const stuck = net.connect(proxy.port, '127.0.0.1');
  stuck.on('error', () => undefined);
  stuck.pause();
  stuck.write(`GET /plain?id=777&size=1100000 HTTP/1.1\r\nHost: a\r\n\r\n`);
  const pipelined = await new Promise((resolve, reject) => {
    const socket = net.connect(proxy.port, '127.0.0.1');
    const parts = [];
    socket.on('data', (d) => parts.push(d));
    socket.on('end', () => resolve(Buffer.concat(parts)));
    socket.on('error', reject);
    let text = '';
    for (let i = 0; i < 6; i++)
      text += `GET /plain?id=${900 + i}&size=${SIZES[i]} HTTP/1.1\r\nHost: a\r\n${i === 5 ? 'Connection: close\r\n' : ''}\r\n`;
    socket.end(text);
  });
  let at = 0;
  for (let i = 0; i < 6; i++) {
    const headEnd = pipelined.indexOf('\r\n\r\n', at);
    const head = pipelined.subarray(at, headEnd).toString('latin1');
    const length = Number(/content-length: (\d+)/i.exec(head)?.[1]);
    assert.equal(length, SIZES[i], head);
    const body = pipelined.subarray(headEnd + 4, headEnd + 4 + length);
    assert.equal(sha(body), sha(bodyFor(900 + i, SIZES[i])), `pipelined ${i}`);
    at = headEnd + 4 + length;
  }
  stuck.destroy();
});

test('a client that stops reading an 8 MiB answer for a while still gets every byte', async () => {
  const size = 8 * 1024 * 1024;
  const body = await new Promise((resolve, reject) => {
    const socket = net.connect(proxy.port, '127.0.0.1');
    const parts = [];
    socket.on('error', reject);
    socket.pause();
    socket.write(
      `GET /plain?id=4242&size=${size} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
    );
    // Long enough for the kernel buffers to fill and the proxy to queue and pause.
    setTimeout(() => {
      socket.on('data', (d) => parts.push(d));
      socket.resume();
    }, 400);
    socket.on('end', () => resolve(Buffer.concat(parts)));
  });
  const headEnd = body.indexOf('\r\n\r\n');
  const payload = body.subarray(headEnd + 4);
  assert.equal(payload.length, size);
  assert.equal(sha(payload), sha(bodyFor(4242, size)));
});

test('a response trickled a few bytes per read (head and chunk lines split) parses intact', async () => {
  const payload = bodyFor(99, 6000);
  const raw = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => {
      let wire = 'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n';
      wire += 'X-Long: ' + 'v'.repeat(300) + '\r\nTransfer-Encoding: chunked\r\n\r\n';
      const pieces = [Buffer.from(wire, 'latin1')];
      for (let at = 0; at < payload.length; at += 1000) {
        const part = payload.subarray(at, at + 1000);
        pieces.push(
          Buffer.from(`${part.length.toString(16)}\r\n`, 'latin1'),
          part,
          Buffer.from('\r\n'),
        );
      }
      pieces.push(Buffer.from('0\r\nX-Trailer: t\r\n\r\n', 'latin1'));
      const all = Buffer.concat(pieces);
      let at = 0;
      const step = () => {
        if (at >= all.length) return;
        const n = 1 + (at % 7);
        socket.write(all.subarray(at, at + n));
        at += n;
        setTimeout(step, 0);
      };
      step();
    });
  });
  await new Promise((r) => raw.listen(0, '127.0.0.1', r));
  const p = await startProxyTo(`http://127.0.0.1:${raw.address().port}`);
  try {
    const { res, body } = await new Promise((resolve, reject) => {
      http
        .get(`${p.url}/t`, (r) => {
          const chunks = [];
          r.on('data', (c) => chunks.push(c));
          r.on('end', () => resolve({ res: r, body: Buffer.concat(chunks) }));
        })
        .on('error', reject);
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-long'], 'v'.repeat(300));
    assert.equal(sha(body), sha(payload));
  } finally {
    await p.close();
    raw.close();
  }
});
