// Close hooks (core/http.ts onceClosed): a response of Switchyard's HTTP/1.1 loop runs up to
// three watchers from slots, once each, before its 'close' listeners; more watchers, and
// responses of other loops, fall back to 'close' listeners. Checked when a response finishes,
// when the client goes away while it is pending, for a pipelined response queued behind it, on
// node:http's own loop, and end to end: a client that resets the connection during a proxied
// request still gets its access-log line (499), the active-requests gauge goes back to 0 and
// the upstream request is cancelled. And the loop's request ending: a request with nothing left
// on the wire (no body, or its body parsed) is not dumped after its answer, as node:http does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHttp1Server } from '../dist/server/http1-engine.js';
import { onceClosed } from '../dist/core/http.js';
import { request, startOrigin, startProxy } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function listen(server) {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  return server.address().port;
}

/** Registers a plain 'close' listener, then four watchers; resolves with the calls in order. */
function watch(res) {
  const calls = [];
  let resolveDone;
  const done = new Promise((resolve) => (resolveDone = resolve));
  res.on('close', () => calls.push('listener'));
  for (const name of ['a', 'b', 'c', 'd']) {
    onceClosed(res, function () {
      assert.equal(this, res);
      calls.push(name);
      if (name === 'd') setImmediate(() => resolveDone(calls));
    });
  }
  return done;
}

test('three watchers run from slots before the listeners, a fourth as a listener, once each', async () => {
  let watched;
  const server = createHttp1Server({});
  server.on('request', (req, res) => {
    watched = watch(res);
    res.end('ok');
  });
  const port = await listen(server);
  const res = await request(`http://127.0.0.1:${port}/`);
  assert.equal(res.body.toString(), 'ok');
  assert.deepEqual(await watched, ['a', 'b', 'c', 'listener', 'd']);
});

test('a pending response and a pipelined one queued behind it close with the connection', async () => {
  const watched = [];
  let seen = 0;
  let bothSeen;
  const ready = new Promise((resolve) => (bothSeen = resolve));
  const server = createHttp1Server({});
  server.on('request', (req, res) => {
    watched.push(watch(res));
    if (++seen === 2) bothSeen();
    // Never answered: the client goes away first.
  });
  const port = await listen(server);
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
  await ready;
  socket.destroy();
  const [first, second] = await Promise.all(watched);
  assert.deepEqual(first, ['a', 'b', 'c', 'listener', 'd']);
  assert.deepEqual(second, ['a', 'b', 'c', 'listener', 'd']);
});

test("node:http's responses take every watcher as a listener", async () => {
  let watched;
  const server = http.createServer((req, res) => {
    watched = watch(res);
    res.end('ok');
  });
  const port = await listen(server);
  await request(`http://127.0.0.1:${port}/`);
  assert.deepEqual(await watched, ['listener', 'a', 'b', 'c', 'd']);
});

test('a request with nothing left on the wire is not dumped after its answer', async () => {
  const requests = {};
  let answered;
  const allAnswered = new Promise((resolve) => (answered = resolve));
  const server = createHttp1Server({});
  server.on('request', (req, res) => {
    requests[req.url] = req;
    // /body answers once its body is in (parsed, never read); the others at once.
    if (req.url === '/body') setTimeout(() => res.end('body'), 20);
    else res.end(req.url);
    if (req.url === '/last') res.on('finish', () => setImmediate(answered));
  });
  const port = await listen(server);
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let text = '';
  socket.on('data', (chunk) => (text += chunk.toString('latin1')));
  socket.write(
    'GET /get HTTP/1.1\r\nHost: x\r\n\r\n' +
      'POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
      'GET /last HTTP/1.1\r\nHost: x\r\n\r\n',
  );
  await allAnswered;
  // node:http would have dumped both (resumed to their end, destroyed): work for nothing.
  for (const url of ['/get', '/body']) {
    const req = requests[url];
    assert.equal(req.complete, true, url);
    assert.equal(req.readableEnded, false, url);
    assert.equal(req.destroyed, false, url);
  }
  assert.equal(requests['/body'].read()?.toString(), 'hello');
  assert.match(text, /\r\n\r\n\/get.*\r\n\r\nbody.*\r\n\r\n\/last$/s);
  socket.destroy();
});

test('a client that resets during a proxied request: 499 logged, gauge back to 0, upstream cancelled', async () => {
  let upstreamClosed;
  const cancelled = new Promise((resolve) => (upstreamClosed = resolve));
  const origin = await startOrigin((req, res) => {
    res.on('close', () => upstreamClosed());
    // No answer: the client gives up first.
  });
  cleanups.push(origin.close);
  const logPath = join(mkdtempSync(join(tmpdir(), 'sy-close-')), 'access.log');
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
admin: { address: "127.0.0.1:0" }
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
accessLog: { format: json, output: ${JSON.stringify(logPath)} }
`);
  cleanups.push(p.close);
  const admin = p.proxy.adminUrl();
  const socket = net.connect(p.port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
  // The request is with the origin once the gauge reads 1.
  const gauge = async () => {
    const text = (await request(`${admin}/metrics`)).body.toString();
    return Number(/^switchyard_active_requests (\d+)/m.exec(text)?.[1]);
  };
  while ((await gauge()) !== 1) await new Promise((resolve) => setTimeout(resolve, 20));
  // A reset, not a FIN: a FIN alone is a half-close, which Switchyard answers (docs/compression.md).
  socket.resetAndDestroy();
  await cancelled;
  while ((await gauge()) !== 0) await new Promise((resolve) => setTimeout(resolve, 20));
  await p.close();
  cleanups.pop();
  const lines = readFileSync(logPath, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const slow = lines.filter((l) => l.path === '/slow');
  assert.equal(slow.length, 1);
  assert.equal(slow[0].status, 499);
});
