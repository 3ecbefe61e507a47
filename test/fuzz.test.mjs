// Fuzz-style robustness: thousands of malformed requests and upstream responses within a bounded
// time. The proxy must answer or close every one (never hang), keep serving, and leak no socket.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startOrigin, startRawOrigin, startProxy, request } from './helpers.mjs';

// A small seeded PRNG so a failure can be replayed.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.FUZZ_SEED ?? 1234);
const rand = rng(SEED);
const pick = (arr) => arr[Math.floor(rand() * arr.length)];
const NASTY = [
  '\r',
  '\n',
  '\0',
  '\r\n',
  ' ',
  '\t',
  ':',
  '\x7f',
  '\xff',
  '%',
  '%00',
  '../',
  '\r\n\r\n',
  'é',
  '"',
  '\x01',
];

function mutate(text) {
  const bytes = [...text];
  const edits = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(rand() * (bytes.length + 1));
    switch (Math.floor(rand() * 5)) {
      case 0:
        bytes.splice(at, 0, pick(NASTY));
        break;
      case 1:
        bytes.splice(at, 1);
        break;
      case 2:
        bytes[at] = String.fromCharCode(Math.floor(rand() * 256));
        break;
      case 3:
        bytes.splice(at, 0, 'A'.repeat(Math.floor(rand() * 20000)));
        break;
      default:
        bytes.length = Math.max(1, at);
    }
  }
  return bytes.join('');
}

const REQUESTS = [
  'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST /p?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
  'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET /k HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /k2 HTTP/1.1\r\nHost: a\r\n\r\n',
  'HEAD / HTTP/1.0\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
];

/** Sends bytes, half-closes, and resolves when the proxy closes (or after `ms`: a hang). */
function send(port, bytes, ms) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ hung: true, got });
    }, ms);
    socket.setEncoding('latin1');
    socket.on('data', (d) => (got += d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ hung: false, got });
    });
    socket.on('connect', () => socket.end(bytes, 'latin1'));
  });
}

async function inBatches(items, size, fn) {
  const results = [];
  for (let i = 0; i < items.length; i += size)
    results.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return results;
}

let origin;
let proxy;
before(async () => {
  origin = await startOrigin((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
    req.on('error', () => {});
  });
  proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0", limits: { headersTimeout: 2s, requestTimeout: 3s, idleTimeout: 1s } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }], readTimeout: 2s } }
routes: [{ upstream: app }]
`);
});
after(async () => {
  await proxy.close();
  await origin.close();
});

test(`2000 malformed requests: every one answered or closed, none hangs (seed ${SEED})`, async () => {
  const inputs = Array.from({ length: 2000 }, () => mutate(pick(REQUESTS)));
  const results = await inBatches(inputs, 100, (bytes) => send(proxy.port, bytes, 6000));
  const hung = results.filter((r) => r.hung);
  assert.equal(hung.length, 0, `hung connections: ${hung.length}`);
  for (const r of results) {
    if (r.got !== '') assert.match(r.got, /^HTTP\/1\.[01] \d{3} /);
  }
  const res = await request(`${proxy.url}/after`);
  assert.equal(res.text, 'ok');
  const open = await new Promise((r) =>
    proxy.proxy.listeners.get('web').server.getConnections((_, n) => r(n)),
  );
  assert.ok(open <= 1, `${open} client connections left open`);
});

test(`1000 malformed requests to a cache route answered at once: none hangs, hits stay right (seed ${SEED})`, async () => {
  // The quick-answer path (core/quick-answer.ts) sees every plain GET and HEAD first.
  const cached = await startOrigin((req, res) => {
    req.resume();
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': 6 }).end('cached');
  });
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0", limits: { headersTimeout: 2s, requestTimeout: 3s, idleTimeout: 1s } }]
upstreams: { app: { servers: [{ url: "${cached.url}" }], readTimeout: 2s } }
routes: [{ upstream: app, cache: true }]
`);
  try {
    const plain = [
      'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /k?q=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n',
      'HEAD / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\n\r\n',
      'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET / HTTP/1.0\r\n\r\n',
    ];
    // Store each target first, so that the mutated requests meet hits.
    for (const bytes of plain) await send(p.port, bytes, 6000);
    const inputs = Array.from({ length: 1000 }, () => mutate(pick(plain)));
    const results = await inBatches(inputs, 100, (bytes) => send(p.port, bytes, 6000));
    assert.equal(results.filter((r) => r.hung).length, 0);
    for (const r of results) if (r.got !== '') assert.match(r.got, /^HTTP\/1\.[01] \d{3} /);
    for (const bytes of plain) {
      const { got } = await send(p.port, bytes, 6000);
      assert.match(got, /^HTTP\/1\.1 200 OK\r\n[\s\S]*cache-status: switchyard; hit\r\n/, bytes);
    }
  } finally {
    await p.close();
    await cached.close();
  }
});

const RESPONSES = [
  'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
  'HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1/x\r\nContent-Length: 0\r\n\r\n',
  'HTTP/1.1 204 No Content\r\n\r\n',
  'HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Domain=127.0.0.1\r\nConnection: close\r\n\r\nbody until close',
];

test(`1000 malformed upstream responses: clients get a status or a closed connection (seed ${SEED})`, async () => {
  const raw = await startRawOrigin((socket) => {
    const text = rand() < 0.15 ? pick(RESPONSES) : mutate(pick(RESPONSES));
    socket.end(text, 'latin1');
  });
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${raw.url}" }], readTimeout: 1s } }
routes: [{ upstream: app }]
`);
  try {
    const results = await inBatches(Array.from({ length: 1000 }), 50, () =>
      send(p.port, 'GET /fuzz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 6000),
    );
    assert.equal(results.filter((r) => r.hung).length, 0);
    const statuses = new Set(
      results.map((r) => /^HTTP\/1\.1 (\d{3})/.exec(r.got)?.[1] ?? 'closed'),
    );
    for (const s of statuses)
      assert.ok(s === 'closed' || (Number(s) >= 100 && Number(s) < 600), `status ${s}`);
    assert.ok(statuses.has('502'), `garbage upstream answers become 502 (saw ${[...statuses]})`);
    for (const r of results)
      assert.doesNotMatch(r.got, /127\.0\.0\.1:\d+/, 'no upstream address leaks');
  } finally {
    await p.close();
    await raw.close();
  }
});
