import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startOrigin, startRawOrigin, startProxy, request, rawRequest } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function proxyTo(url, extra = '') {
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0", limits: { maxBodySize: 1000, headersTimeout: 1s, requestTimeout: 3s } }]
upstreams:
  app: { servers: [{ url: "${url}" }], readTimeout: 500ms, connectTimeout: 1s ${extra} }
routes:
  - upstream: app
`);
  cleanups.push(() => p.close());
  return p;
}

function assertNoLeak(res) {
  assert.doesNotMatch(res.text, /127\.0\.0\.1|:\d{4,5}|app|ECONN|undici/i);
}

test('502 when the upstream refuses the connection', async () => {
  const free = net.createServer();
  await new Promise((r) => free.listen(0, '127.0.0.1', r));
  const port = free.address().port;
  await new Promise((r) => free.close(r));
  const p = await proxyTo(`http://127.0.0.1:${port}`);
  const res = await request(`${p.url}/`);
  assert.equal(res.status, 502);
  assertNoLeak(res);
  assert.ok(res.headers['x-request-id']);
});

test('502 when the upstream answers garbage', async () => {
  const origin = await startRawOrigin((socket) => socket.end('NOT HTTP AT ALL\r\n\r\n'));
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const res = await request(`${p.url}/`);
  assert.equal(res.status, 502);
  assertNoLeak(res);
});

test('502 when the upstream resets the connection', async () => {
  const origin = await startRawOrigin((socket) => socket.resetAndDestroy());
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const res = await request(`${p.url}/`);
  assert.equal(res.status, 502);
});

test('504 when the upstream is too slow to answer', async () => {
  const origin = await startOrigin((req, res) => setTimeout(() => res.end('late'), 2000));
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const started = Date.now();
  const res = await request(`${p.url}/`);
  assert.equal(res.status, 504);
  assert.ok(Date.now() - started < 1900);
  assertNoLeak(res);
});

test('upstream abort mid-body ends the client response (truncated, not hung)', async () => {
  const origin = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-length': '100000' });
    res.write(Buffer.alloc(1000));
    setTimeout(() => res.destroy(), 50);
  });
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  await assert.rejects(
    request(`${p.url}/`, { timeout: 3000 }),
    (err) => err.message !== 'client timeout',
  );
});

test('client abort cancels the upstream request', async () => {
  let upstreamClosed;
  const closed = new Promise((r) => (upstreamClosed = r));
  const origin = await startOrigin((req, res) => {
    res.writeHead(200);
    res.write('start');
    res.on('close', () => upstreamClosed());
  });
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const socket = net.connect(p.port, '127.0.0.1');
  socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((r) => socket.once('data', r));
  socket.destroy();
  await closed;
});

test('413 for a declared body over maxBodySize, and for a chunked one while streaming', async () => {
  let received = 0;
  const origin = await startOrigin((req, res) => {
    req.on('data', (c) => (received += c.length));
    req.on('end', () => res.end('ok'));
    req.on('error', () => {});
  });
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const declared = await request(`${p.url}/`, { method: 'POST', body: Buffer.alloc(5000) });
  assert.equal(declared.status, 413);
  const chunked = await request(`${p.url}/`, {
    method: 'POST',
    body: Buffer.alloc(5000),
    headers: { 'transfer-encoding': 'chunked' },
  }).catch((err) => ({ status: 'reset', err }));
  assert.ok(chunked.status === 413 || chunked.status === 'reset', `got ${chunked.status}`);
  const ok = await request(`${p.url}/`, { method: 'POST', body: Buffer.alloc(900) });
  assert.equal(ok.status, 200);
  assert.ok(received < 5000 + 900);
});

test('400 for malformed requests, and the process keeps serving', async () => {
  const origin = await startOrigin((req, res) => res.end('fine'));
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const bad = await rawRequest(
    p.port,
    'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
  );
  assert.match(bad, /^HTTP\/1\.1 400/);
  const noHost = await rawRequest(p.port, 'GET / HTTP/1.1\r\n\r\n');
  assert.match(noHost, /^HTTP\/1\.1 400/);
  const garbage = await rawRequest(p.port, '\x00\x01\x02 nonsense\r\n\r\n');
  assert.match(garbage, /^HTTP\/1\.1 400/);
  const res = await request(`${p.url}/`);
  assert.equal(res.text, 'fine');
});

test('431 for oversized headers', async () => {
  const origin = await startOrigin((req, res) => res.end('fine'));
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const out = await rawRequest(
    p.port,
    `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40000)}\r\n\r\n`,
  );
  assert.match(out, /^HTTP\/1\.1 431/);
});

test('slowloris: a client that never finishes its headers is cut after headersTimeout', async () => {
  const origin = await startOrigin((req, res) => res.end('fine'));
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  const started = Date.now();
  const out = await rawRequest(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ', { timeout: 8000 });
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 7000, `connection held ${elapsed} ms`);
  assert.match(out, /^(HTTP\/1\.1 408|)/);
});

test('503 when every server is draining', async () => {
  const origin = await startOrigin((req, res) => res.end('fine'));
  cleanups.push(origin.close);
  const p = await proxyTo(origin.url);
  for (const host of p.proxy.runtime.groups.get('app').hosts) host.draining = true;
  const res = await request(`${p.url}/`);
  assert.equal(res.status, 503);
  assertNoLeak(res);
});

test('errorPages: a configured page replaces the built-in error body; a missing file fails the load', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-pages-'));
  const page = join(dir, '404.html');
  writeFileSync(page, '<h1>Nothing here</h1>');
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
errorPages: { "404": ${JSON.stringify(page)} }
routes: [{ match: { path: /only }, respond: { body: "x" } }]
`);
  cleanups.push(() => p.close());
  const res = await request(`${p.url}/missing`);
  assert.equal(res.status, 404);
  assert.equal(res.text, '<h1>Nothing here</h1>');
  assert.match(res.headers['content-type'], /text\/html/);
  await assert.rejects(
    startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
errorPages: { "502": ${JSON.stringify(join(dir, 'absent.html'))} }
routes: [{ respond: { body: "x" } }]
`),
    /errorPages\["502"\]: cannot read/,
  );
});
