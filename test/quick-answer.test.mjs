// Quick answers (core/quick-answer.ts): a fresh cache hit held in memory is answered inside the
// HTTP/1.1 loop, before node's IncomingMessage and ServerResponse exist. These tests count the
// requests that became an IncomingMessage on the proxy's port, so each one fails if hits take
// the usual path, or if a request that must take it (a conditional, a Range, a pipelined hit
// behind a slow miss, another filter first, a disk store) does not. Answers are compared byte
// for byte with the usual path's, and the access log and metrics must see quick hits too.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  countIncomingMessages,
  endsWith,
  exchange,
  headField as field,
  maskVolatileFields,
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

const get = (path, fields = '', version = '1.1', method = 'GET') =>
  `${method} ${path} HTTP/${version}\r\nHost: x\r\n${fields}\r\n`;

let originRequests = 0;
async function origin() {
  const o = await startOrigin((req, res) => {
    originRequests++;
    if (req.url === '/slow') {
      setTimeout(() => res.writeHead(200, { 'cache-control': 'no-store' }).end('slow'), 150);
      return;
    }
    if (req.url === '/lang') {
      const lang = req.headers['accept-language'] ?? 'none';
      res.writeHead(200, {
        'cache-control': 'max-age=600',
        vary: 'Accept-Language',
        'content-length': lang.length,
      });
      res.end(lang);
      return;
    }
    const headers = {
      'content-type': 'text/plain',
      'cache-control': 'max-age=600',
      etag: '"v1"',
      'content-length': 6,
    };
    if (req.headers['if-none-match'] === '"v1"') {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, headers).end('stored');
  });
  cleanups.push(o.close);
  return o;
}

async function proxy(o, extra = '', routeExtra = '') {
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${o.url}" }] } }
routes: [{ name: cached, upstream: app, cache: true${routeExtra} }]
${extra}
`);
  cleanups.push(p.close);
  return p;
}

describe('quick answers', () => {
  test('a fresh hit never becomes an IncomingMessage and is byte for byte the usual path’s answer', async () => {
    const p = await proxy(await origin());
    const miss = await exchange(p.port, get('/plain'), endsWith('stored'));
    assert.match(miss.text, /cache-status: switchyard; fwd=miss; stored/);
    assert.equal(usual(p.port), 1);

    const quick = await exchange(p.port, get('/plain'), endsWith('stored'));
    assert.equal(usual(p.port), 1, 'the hit took the usual path');
    // A repeated field is left to node's rules for joining it: the usual path, same answer.
    const slow = await exchange(p.port, get('/plain', 'X-A: 1\r\nX-A: 2\r\n'), endsWith('stored'));
    assert.equal(usual(p.port), 2);
    assert.equal(maskVolatileFields(quick.text), maskVolatileFields(slow.text));
    assert.match(quick.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(
      quick.text,
      /\r\ncache-status: switchyard; hit\r\nage: \d+\r\nx-request-id: [0-9a-f-]{36}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=\d+\r\n\r\nstored$/,
    );

    const head = await exchange(p.port, get('/plain', '', '1.1', 'HEAD'), endsWith('\r\n\r\n'));
    assert.equal(usual(p.port), 2, 'HEAD of a stored GET took the usual path');
    assert.equal(field(head.text, 'content-length'), '6');
    assert.match(head.text, /\r\n\r\n$/);
  });

  test('Connection: close and HTTP/1.0 get their hit, then the connection ends', async () => {
    const p = await proxy(await origin());
    await exchange(p.port, get('/plain'), endsWith('stored'));
    const before = usual(p.port);
    for (const bytes of [get('/plain', 'Connection: close\r\n'), get('/plain', '', '1.0')]) {
      const { text, closed } = await exchange(p.port, bytes);
      assert.match(
        text,
        /cache-status: switchyard; hit\r\n[\s\S]*\r\nConnection: close\r\n\r\nstored$/,
      );
      assert.equal(closed, true);
    }
    assert.equal(usual(p.port), before);
  });

  test('requests that could change the answer take the usual path and get it', async () => {
    const p = await proxy(await origin());
    await exchange(p.port, get('/plain'), endsWith('stored'));
    const cases = [
      ['Range: bytes=0-1\r\n', /^HTTP\/1\.1 206 [\s\S]*\r\n\r\nst$/, (t) => t.endsWith('st')],
      ['If-None-Match: "v1"\r\n', /^HTTP\/1\.1 304 /, endsWith('\r\n\r\n')],
      ['Cache-Control: no-cache\r\n', /^HTTP\/1\.1 200 [\s\S]*stored$/, endsWith('stored')],
      ['Pragma: no-cache\r\n', /^HTTP\/1\.1 200 [\s\S]*stored$/, endsWith('stored')],
      ['Content-Length: 3\r\n\r\nabc', /^HTTP\/1\.1 200 [\s\S]*stored$/, endsWith('stored')],
      // Names an object already has are not stored as fields by the offer (node's rules apply).
      [
        '__proto__: x\r\nConstructor: y\r\n',
        /^HTTP\/1\.1 200 [\s\S]*hit[\s\S]*stored$/,
        endsWith('stored'),
      ],
    ];
    for (const [fields, expected, done] of cases) {
      const before = usual(p.port);
      const bytes = fields.includes('\r\n\r\n')
        ? `GET /plain HTTP/1.1\r\nHost: x\r\n${fields}`
        : get('/plain', fields);
      const { text } = await exchange(p.port, bytes, done);
      assert.match(text, expected, fields);
      assert.equal(usual(p.port), before + 1, `${fields.trim()} did not take the usual path`);
    }
  });

  test('a hit pipelined behind a response still on its way waits for it', async () => {
    const p = await proxy(await origin());
    await exchange(p.port, get('/plain'), endsWith('stored'));
    const before = usual(p.port);
    const { text } = await exchange(p.port, get('/slow') + get('/plain'), endsWith('stored'));
    assert.match(
      text,
      /^HTTP\/1\.1 200 [\s\S]*\r\nslow\r\n0\r\n\r\nHTTP\/1\.1 200 [\s\S]*hit[\s\S]*stored$/,
    );
    assert.equal(usual(p.port), before + 2);
  });

  test('targets are normalised first: dot segments and absolute-form find the stored hit', async () => {
    const p = await proxy(await origin());
    await exchange(p.port, get('/plain'), endsWith('stored'));
    const before = usual(p.port);
    const asked = originRequests;
    for (const bytes of [get('/x/../plain'), 'GET http://x/plain HTTP/1.1\r\nHost: y\r\n\r\n']) {
      const { text } = await exchange(p.port, bytes, endsWith('stored'));
      assert.match(text, /cache-status: switchyard; hit\r\n/, bytes);
    }
    assert.equal(usual(p.port), before);
    assert.equal(originRequests, asked);
  });

  test('Vary: each request gets its own variant', async () => {
    const p = await proxy(await origin());
    for (const lang of ['en', 'fr'])
      await exchange(p.port, get('/lang', `Accept-Language: ${lang}\r\n`), endsWith(lang));
    const before = usual(p.port);
    for (const lang of ['fr', 'en', 'fr']) {
      const { text } = await exchange(
        p.port,
        get('/lang', `Accept-Language: ${lang}\r\n`),
        endsWith(lang),
      );
      assert.match(
        text,
        new RegExp(`cache-status: switchyard; hit\\r\\n[\\s\\S]*\\r\\n\\r\\n${lang}$`),
      );
    }
    assert.equal(usual(p.port), before);
  });

  test('a trusted proxy’s X-Request-Id is kept on a quick hit', async () => {
    const p = await proxy(await origin(), 'trustedProxies: [127.0.0.1]');
    await exchange(p.port, get('/plain'), endsWith('stored'));
    const before = usual(p.port);
    const { text } = await exchange(
      p.port,
      get('/plain', 'X-Request-Id: from-edge-7\r\n'),
      endsWith('stored'),
    );
    assert.equal(field(text, 'x-request-id'), 'from-edge-7');
    assert.equal(usual(p.port), before);
  });

  test('another filter first, or a store that reads from disk: hits come through the route’s chain', async () => {
    const o = await origin();
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-quick-'));
    // A filter in front of the cache must see hits too: here its header must be on them.
    const filtered = await proxy(o, '', ', responseHeaders: { set: { x-in-front: "yes" } }');
    const disk = await proxy(o, `cache: { store: disk, path: ${JSON.stringify(dir)} }`);
    for (const p of [filtered, disk]) {
      await exchange(p.port, get('/plain'), endsWith('stored'));
      const before = usual(p.port);
      const { text } = await exchange(p.port, get('/plain'), endsWith('stored'));
      assert.match(text, /cache-status: switchyard; hit\r\n/);
      if (p === filtered) {
        assert.match(text, /\r\nx-in-front: yes\r\n/);
      } else {
        // Not answered at once but kept (test/quick-proxy.test.mjs): the chain read the disk
        // and wrote the hit without node's request objects.
        assert.equal(usual(p.port), before);
      }
    }
  });

  test('SWITCHYARD_QUICK_ANSWERS=0 sends every hit the usual way, with the same answer', async () => {
    const o = await origin();
    const quickProxy = await proxy(o);
    const p = await withQuickAnswersOff(() => proxy(o));
    const answers = [];
    for (const port of [quickProxy.port, p.port]) {
      await exchange(port, get('/plain'), endsWith('stored'));
      const before = usual(port);
      answers.push((await exchange(port, get('/plain'), endsWith('stored'))).text);
      answers.push(usual(port) - before);
    }
    assert.equal(answers[1], 0);
    assert.equal(answers[3], 1);
    // Each proxy filled its cache with its own fetch: the origin's Date may differ by a second.
    assert.equal(maskVolatileFields(answers[0]), maskVolatileFields(answers[2]));
  });

  test('over TLS, HTTP/1.1 hits are quick too; HTTP/2 hits take node’s HTTP/2 path', async () => {
    const o = await origin();
    const pki = createPki();
    const cert = pki.issue(['quick.test']);
    const p = await startProxy(`
listeners:
  - address: "127.0.0.1:0"
    http2: true
    tls: { certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }] }
upstreams: { app: { servers: [{ url: "${o.url}" }] } }
routes: [{ upstream: app, cache: true }]
`);
    cleanups.push(p.close);
    const overTls = async (bytes) => {
      const socket = tls.connect({
        port: p.port,
        host: '127.0.0.1',
        servername: 'quick.test',
        ca: pki.ca,
        ALPNProtocols: ['http/1.1'],
      });
      await once(socket, 'secureConnect');
      let text = '';
      socket.on('data', (c) => (text += c.toString('latin1')));
      socket.write(bytes);
      while (!text.endsWith('stored')) await once(socket, 'data');
      socket.destroy();
      return text;
    };
    assert.match(await overTls(get('/plain')), /fwd=miss; stored/);
    const before = usual(p.port);
    const hit = await overTls(get('/plain'));
    assert.match(
      hit,
      /^HTTP\/1\.1 200 OK\r\n[\s\S]*cache-status: switchyard; hit\r\n[\s\S]*\r\n\r\nstored$/,
    );
    assert.equal(usual(p.port), before);

    const session = http2.connect(`https://127.0.0.1:${p.port}`, {
      ca: pki.ca,
      servername: 'quick.test',
    });
    const stream = session.request({ ':path': '/plain', ':authority': 'x' });
    const [headers] = await once(stream, 'response');
    let body = '';
    stream.on('data', (c) => (body += c));
    await once(stream, 'end');
    session.close();
    assert.equal(headers[':status'], 200);
    assert.equal(headers['cache-status'], 'switchyard; hit');
    assert.equal(body, 'stored');
  });

  test('quick hits are logged and counted like any other request, bytes exact', async () => {
    const o = await origin();
    const logPath = join(mkdtempSync(join(tmpdir(), 'switchyard-quick-')), 'access.log');
    const p = await proxy(
      o,
      `accessLog: { format: json, output: ${JSON.stringify(logPath)} }\nadmin: { address: "127.0.0.1:0" }`,
    );
    // One kept-alive connection: a miss, then two hits.
    const socket = net.connect(p.port, '127.0.0.1');
    await once(socket, 'connect');
    let text = '';
    socket.on('data', (c) => (text += c.toString('latin1')));
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const start = text.length;
      socket.write(get('/plain'));
      while (!text.endsWith('stored') || text.length === start) await once(socket, 'data');
      answers.push(text.slice(start));
    }
    socket.destroy();
    assert.equal(usual(p.port), 1);
    const metrics = (await request(`${p.proxy.adminUrl()}/metrics`)).text;
    assert.match(metrics, /switchyard_cache_requests_total\{result="hit"\} 2\n/);
    assert.match(metrics, /switchyard_active_requests 0\n/);
    await p.close();
    const lines = readFileSync(logPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    lines.forEach((line, i) => {
      assert.equal(line.status, 200);
      assert.equal(line.route, 'cached');
      assert.equal(line.cache, i === 0 ? 'miss' : 'hit');
      assert.equal(line.bytesIn, Buffer.byteLength(get('/plain')));
      assert.equal(line.bytesOut, answers[i].length);
      assert.equal(line.requestId, field(answers[i], 'x-request-id'));
    });
  });
});
