// Kept quick requests (core/quick-answer.ts, server/quick-response.ts): a plain GET to a route
// that only proxies is taken before node's IncomingMessage and ServerResponse exist, and an
// upstream answer that arrives whole leaves as one serialized write. These tests count the
// requests that became an IncomingMessage on the proxy's port, so the first fails if such
// requests take the usual path; the others fail if a kept request loses its place, its answer,
// its upstream cancellation or its bookkeeping whenever node's objects have to be made after all
// (streaming, errors, pipelining, a FIN, bad bytes) or the connection ends first.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import net from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  countIncomingMessages,
  endsWith,
  exchange,
  headField as field,
  maskVolatileFields,
  rawRequest,
  request,
  startOrigin,
  startProxy,
  withQuickAnswersOff,
} from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

// Requests that became node's IncomingMessage, by the local port they arrived on.
const usual = countIncomingMessages();

const get = (path, fields = '', method = 'GET') =>
  `${method} ${path} HTTP/1.1\r\nHost: x\r\n${fields}\r\n`;

async function until(check, message) {
  for (let i = 0; i < 150 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(check(), message);
}

const BIG = Buffer.alloc(200 * 1024, 'b');
const aborted = [];

async function origin() {
  const o = await startOrigin((req, res) => {
    const path = req.url;
    if (path.startsWith('/slow')) {
      const ms = Number(new URL(path, 'http://x').searchParams.get('ms') ?? 150);
      const timer = setTimeout(() => res.writeHead(200, { 'content-length': 4 }).end('slow'), ms);
      res.on('close', () => {
        if (!res.writableFinished) {
          clearTimeout(timer);
          aborted.push(path);
        }
      });
      return;
    }
    if (path === '/big') return void res.writeHead(200, { 'content-length': BIG.length }).end(BIG);
    if (path === '/drip') {
      // Chunked, in two parts a while apart: the head leaves before the body is complete.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first,');
      setTimeout(() => res.end('second'), 60);
      return;
    }
    if (path === '/broken') return void req.socket.destroy();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 }).end('hello');
  });
  cleanups.push(o.close);
  return o;
}

async function proxy(o, { listener = '', extra = '', env } = {}) {
  const p = await startProxy(
    `
listeners: [{ name: web, address: "127.0.0.1:0"${listener} }]
upstreams: { app: { servers: [{ url: "${o.url}" }] } }
routes: [{ name: app, upstream: app }]
${extra}
`,
    env,
  );
  cleanups.push(p.close);
  return p;
}

describe('kept quick requests (a route that only proxies)', () => {
  test('a whole upstream answer leaves without an IncomingMessage, byte for byte the usual path’s', async () => {
    const o = await origin();
    const p = await proxy(o);
    const kept = await exchange(p.port, get('/hello'), endsWith('hello'));
    const kept2 = await exchange(p.port, get('/hello?x=1', 'Accept: */*\r\n'), endsWith('hello'));
    assert.equal(usual(p.port), 0, 'the proxied GET took the usual path');
    assert.match(kept.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(kept2.text, /\r\n\r\nhello$/);
    assert.match(field(kept.text, 'x-request-id'), /^[0-9a-f-]{36}$/);

    const off = await withQuickAnswersOff(() => proxy(o));
    const slow = await exchange(off.port, get('/hello'), endsWith('hello'));
    assert.equal(usual(off.port), 1);
    assert.equal(maskVolatileFields(kept.text), maskVolatileFields(slow.text));

    // Connection: close is kept too; the connection ends once the answer is out.
    const last = await exchange(p.port, get('/hello', 'Connection: close\r\n'));
    assert.equal(last.closed, true);
    assert.match(last.text, /\r\nConnection: close\r\n\r\nhello$/);
    assert.equal(usual(p.port), 0);

    // HEAD answers with a head only: node's objects write it.
    const head = await exchange(p.port, get('/hello', '', 'HEAD'), endsWith('\r\n\r\n'));
    assert.equal(field(head.text, 'content-length'), '5');
    assert.equal(usual(p.port), 1);
  });

  test('routes with filters keep requests too, and their filters still decide', async () => {
    const o = await origin();
    const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${o.url}" }] } }
routes:
  - { match: { path: /limited }, upstream: app, rateLimit: { rate: 1/m, burst: 1 } }
  - { match: { path: /denied }, upstream: app, ipFilter: { deny: [127.0.0.0/8] } }
  - match: { path: /shaped }
    upstream: app
    responseHeaders: { set: { x-shaped: "{request_id}" }, remove: [content-type] }
  - { upstream: app, ipFilter: { allow: [127.0.0.0/8] } }
`);
    cleanups.push(p.close);
    const allowed = await exchange(p.port, get('/hello'), endsWith('hello'));
    assert.match(allowed.text, /^HTTP\/1\.1 200 /);
    assert.equal(usual(p.port), 0, 'a request that passed its filter took the usual path');
    // Head hooks (responseHeaders, rateLimit's fields) shape the one-write answer too.
    const shaped = await exchange(p.port, get('/shaped'), endsWith('hello'));
    assert.equal(field(shaped.text, 'x-shaped'), field(shaped.text, 'x-request-id'));
    assert.equal(field(shaped.text, 'content-type'), null);
    assert.equal(field(shaped.text, 'content-length'), '5');
    const texts = [];
    for (let i = 0; i < 3; i++) {
      const { text } = await exchange(p.port, get('/limited'), (t) => /\r\n\r\n/.test(t));
      texts.push(text);
    }
    const statuses = texts.map((t) => Number(t.slice(9, 12)));
    assert.equal(statuses[0], 200);
    assert.match(field(texts[0], 'ratelimit'), /;r=\d+;t=\d+$/);
    assert.ok(statuses.includes(429), `no 429 among ${statuses}`);
    // Only the refusals (written by node's objects, as error answers are) made them.
    assert.equal(
      usual(p.port),
      statuses.filter((s) => s === 429).length,
      'an answer shaped by head hooks took the usual path',
    );
    const denied = await exchange(p.port, get('/denied'), (t) => /\r\n\r\n/.test(t));
    assert.match(denied.text, /^HTTP\/1\.1 403 /);
  });

  test('answers that stream or fail go on through node’s objects, made on the way', async () => {
    const p = await proxy(await origin());
    const big = await request(`${p.url}/big`);
    assert.equal(big.status, 200);
    assert.ok(big.body.equals(BIG));
    const drip = await request(`${p.url}/drip`);
    assert.equal(drip.status, 200);
    assert.equal(drip.text, 'first,second');
    const broken = await request(`${p.url}/broken`);
    assert.equal(broken.status, 502);
    assert.match(broken.headers['x-request-id'], /^[0-9a-f-]{36}$/);
    assert.equal(usual(p.port), 3);
  });

  test('a request pipelined behind a kept one is answered after it, in order', async () => {
    const p = await proxy(await origin());
    const { text } = await exchange(
      p.port,
      get('/slow?ms=150') + get('/hello') + get('/slow?ms=10'),
      (t) => t.split('HTTP/1.1 200').length === 4,
    );
    const bodies = [...text.matchAll(/\r\n\r\n(slow|hello)/g)].map((m) => m[1]);
    assert.deepEqual(bodies, ['slow', 'hello', 'slow']);
    // The first was kept; the ones behind it made it take its place in line with node's objects.
    assert.equal(usual(p.port), 3);
  });

  test('a client that leaves cancels the upstream request, and the log and gauges see it end', async () => {
    const logPath = join(mkdtempSync(join(tmpdir(), 'switchyard-kept-')), 'access.log');
    const p = await proxy(await origin(), {
      extra: `accessLog: { format: json, output: ${JSON.stringify(logPath)} }\nadmin: { address: "127.0.0.1:0" }`,
    });
    const socket = net.connect(p.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(get('/slow?ms=2000&gone'));
    await new Promise((r) => setTimeout(r, 100));
    // A reset: a FIN alone is a half-close, which still gets its answer (below).
    socket.resetAndDestroy();
    await until(() => aborted.includes('/slow?ms=2000&gone'), 'the upstream request went on');
    assert.equal(usual(p.port), 0);
    const metrics = (await request(`${p.proxy.adminUrl()}/metrics`)).text;
    assert.match(metrics, /switchyard_active_requests 0\n/);
    await p.close();
    const line = JSON.parse(readFileSync(logPath, 'utf8').trim());
    assert.equal(line.status, 499);
    assert.equal(line.route, 'app');
  });

  test('kept answers are logged like any other request, bytes exact', async () => {
    const logPath = join(mkdtempSync(join(tmpdir(), 'switchyard-kept-')), 'access.log');
    const p = await proxy(await origin(), {
      extra: `accessLog: { format: json, output: ${JSON.stringify(logPath)} }`,
    });
    const socket = net.connect(p.port, '127.0.0.1');
    await once(socket, 'connect');
    let text = '';
    socket.on('data', (c) => (text += c.toString('latin1')));
    const answers = [];
    for (let i = 0; i < 2; i++) {
      const start = text.length;
      socket.write(get('/hello'));
      while (!text.endsWith('hello') || text.length === start) await once(socket, 'data');
      answers.push(text.slice(start));
    }
    socket.destroy();
    assert.equal(usual(p.port), 0);
    await p.close();
    const lines = readFileSync(logPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    lines.forEach((line, i) => {
      assert.equal(line.status, 200);
      assert.equal(line.bytesIn, Buffer.byteLength(get('/hello')));
      assert.equal(line.bytesOut, answers[i].length);
      assert.equal(line.requestId, field(answers[i], 'x-request-id'));
    });
  });

  test('an upstream slower than the idle timeout does not make the connection idle', async () => {
    const p = await proxy(await origin(), { listener: ', limits: { idleTimeout: 1s }' });
    const { text, closed } = await exchange(p.port, get('/slow?ms=2600'), endsWith('slow'));
    assert.equal(closed, false, 'the connection was closed as idle while its answer was due');
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  });

  test('a FIN after the request, or bad bytes behind it, wait for its answer', async () => {
    const p = await proxy(await origin());
    const half = await rawRequest(p.port, get('/slow?ms=100'), { half: true });
    assert.match(half, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nslow$/);
    const bad = await rawRequest(p.port, `${get('/slow?ms=100')}\x01\x02 nonsense\r\n\r\n`);
    assert.match(bad, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nslowHTTP\/1\.1 400 /);
  });

  test('a stop that runs out of time closes a kept request’s connection and cancels it upstream', async () => {
    const p = await proxy(await origin());
    const answer = exchange(p.port, get('/slow?ms=3000&stopped'), endsWith('slow'));
    await new Promise((r) => setTimeout(r, 100));
    await p.proxy.stop(200);
    const { text, closed } = await answer;
    assert.equal(closed, true);
    assert.equal(text, '');
    await until(() => aborted.includes('/slow?ms=3000&stopped'), 'the upstream request went on');
    assert.equal(usual(p.port), 0);
  });

  test('a graceful stop waits for a kept request and delivers its answer', async () => {
    const p = await proxy(await origin());
    const answer = exchange(p.port, get('/slow?ms=300'), endsWith('slow'));
    await new Promise((r) => setTimeout(r, 100));
    const stopped = p.proxy.stop(5000);
    const { text } = await answer;
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nslow$/);
    await stopped;
  });

  test('over TLS, HTTP/1.1 proxied requests are kept too', async () => {
    const pki = createPki();
    const cert = pki.issue(['kept.test']);
    const p = await proxy(await origin(), {
      listener: `, tls: { certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }] }`,
    });
    const agent = new https.Agent({ keepAlive: true, ca: pki.ca, servername: 'kept.test' });
    cleanups.push(() => agent.destroy());
    for (let i = 0; i < 3; i++) {
      const body = await new Promise((resolve, reject) => {
        https
          .get(`https://127.0.0.1:${p.port}/hello`, { agent }, (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve(b));
          })
          .on('error', reject);
      });
      assert.equal(body, 'hello');
    }
    assert.equal(usual(p.port), 0);
  });
});
