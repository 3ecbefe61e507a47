// Responses ended with a serialized head (core/http.ts endWithSerializedHead): the HTTP/1.1
// loop's side (exact bytes, keep-alive and close, 'finish' and 'close', the cases where it
// declines), and the cache's hits that use it, byte for byte on raw sockets, pipelined, HEAD,
// HTTP/1.0, and through node:http's loop (SWITCHYARD_SERVER_ENGINE=node), which lacks it.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { createHttp1Server } from '../dist/server/http1-engine.js';
import { endWithSerializedHead } from '../dist/core/http.js';
import { exchange, startOrigin, startProxy, startProxyTo } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const count = (text, what) => text.split(what).length - 1;

async function engineServer(handler, event = 'request') {
  const server = createHttp1Server({ keepAliveTimeout: 5000 });
  server.on(event, handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return server.address().port;
}

describe('the HTTP/1.1 loop', () => {
  test('writes the status line, the fields, Connection and Keep-Alive, then the body; finish and close follow', async () => {
    const events = [];
    const port = await engineServer((req, res) => {
      res.on('finish', () => events.push('finish'));
      res.on('close', () => events.push('close'));
      const ok = res[endWithSerializedHead](
        201,
        'x-one: 1\r\ncontent-length: 5\r\n',
        Buffer.from('hello'),
      );
      events.push(ok);
      assert.equal(res.headersSent, true);
      assert.equal(res.writableEnded, true);
      assert.equal(res.statusCode, 201);
    });
    const request = 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n';
    const { text } = await exchange(port, request, (t) => t.endsWith('hello'));
    assert.equal(
      text,
      'HTTP/1.1 201 Created\r\nx-one: 1\r\ncontent-length: 5\r\n' +
        'Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello',
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(events, [true, 'finish', 'close']);
  });

  test('a lead of bytes (status line and first fields) goes first, then the rest of the head and the body', async () => {
    const port = await engineServer((req, res) => {
      const lead = Buffer.from('HTTP/1.1 200 OK\r\nx-first: 1\r\n', 'latin1');
      assert.equal(
        res[endWithSerializedHead](200, 'content-length: 2\r\n', Buffer.from('ok'), lead),
        true,
      );
      assert.equal(res.statusCode, 200);
      assert.equal(res.headersSent, true);
    });
    const { text } = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', (t) =>
      t.endsWith('ok'),
    );
    assert.equal(
      text,
      'HTTP/1.1 200 OK\r\nx-first: 1\r\ncontent-length: 2\r\n' +
        'Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok',
    );
  });

  test('a client without keep-alive gets Connection: close and the connection ends', async () => {
    const port = await engineServer((req, res) => {
      res[endWithSerializedHead](200, 'content-length: 2\r\n', Buffer.from('ok'));
    });
    const { text, closed } = await exchange(port, 'GET / HTTP/1.0\r\n\r\n');
    assert.equal(text, 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok');
    assert.equal(closed, true);
  });

  // A pipelined response waiting for the socket declines too: node's own end() queues its bytes.
  test('declines (writing nothing) behind a pipelined response that is not done, and for Expect: 100-continue', async () => {
    const answers = [];
    let first;
    const port = await engineServer((req, res) => {
      if (req.url === '/slow') {
        first = res;
        return;
      }
      const ok = res[endWithSerializedHead](200, 'content-length: 4\r\n', Buffer.from('fast'));
      answers.push([req.url, ok]);
      if (!ok) {
        res.writeHead(200, { 'content-length': 4 });
        res.end('late');
      }
      if (req.url === '/second') setTimeout(() => first.end('slow'), 20);
    });
    const pipelined =
      'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n' + 'GET /second HTTP/1.1\r\nHost: x\r\n\r\n';
    const { text } = await exchange(port, pipelined, (t) => t.endsWith('late'));
    assert.deepEqual(answers, [['/second', false]]);
    assert.ok(text.indexOf('slow') < text.indexOf('late'), text);

    // Without a checkContinue listener the loop has sent 100 Continue already: nothing is owed.
    answers.length = 0;
    const expecting =
      'POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n';
    const second = await exchange(port, expecting, (t) => t.endsWith('fast'));
    assert.deepEqual(answers, [['/e', true]]);
    assert.match(second.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
  });

  test('declines while a 100 Continue is owed (a checkContinue listener answered without one)', async () => {
    const results = [];
    const port = await engineServer((req, res) => {
      const ok = res[endWithSerializedHead](200, 'content-length: 4\r\n', Buffer.from('fast'));
      results.push(ok);
      if (!ok) {
        res.writeHead(417, { 'content-length': 4 });
        res.end('nope');
      }
    }, 'checkContinue');
    const expecting =
      'POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n';
    const { text } = await exchange(port, expecting, (t) => t.endsWith('nope'));
    assert.deepEqual(results, [false]);
    assert.match(text, /^HTTP\/1\.1 417 Expectation Failed\r\n/);
    assert.match(text, /Connection: close/);
  });
});

describe('cache hits', () => {
  async function setUp(env) {
    const origin = await startOrigin((req, res) => {
      const headers = { 'content-type': 'text/plain', 'cache-control': 'max-age=600' };
      if (req.url === '/chunked') {
        res.writeHead(200, headers);
        res.write('part one, ');
        res.end('part two');
        return;
      }
      res.writeHead(200, { ...headers, 'content-length': 6 });
      res.end('stored');
    });
    cleanups.push(origin.close);
    const previous = process.env.SWITCHYARD_SERVER_ENGINE;
    if (env !== undefined) process.env.SWITCHYARD_SERVER_ENGINE = env;
    try {
      const p = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, cache: true }]
`);
      cleanups.push(p.close);
      return p;
    } finally {
      if (previous === undefined) delete process.env.SWITCHYARD_SERVER_ENGINE;
      else process.env.SWITCHYARD_SERVER_ENGINE = previous;
    }
  }

  /** The fields of each response in `text`, lowercased names, in order. */
  function heads(text) {
    return text
      .split('HTTP/1.1 ')
      .slice(1)
      .map((part) => {
        const head = part.slice(0, part.indexOf('\r\n\r\n'));
        const [statusLine, ...lines] = head.split('\r\n');
        return {
          status: Number(statusLine.split(' ')[0]),
          fields: lines.map((l) => [
            l.slice(0, l.indexOf(':')).toLowerCase(),
            l.slice(l.indexOf(':') + 2),
          ]),
          body: part.slice(part.indexOf('\r\n\r\n') + 4),
        };
      });
  }

  for (const engine of ['switchyard', 'node']) {
    test(`pipelined GET, HEAD, GET of stored objects come back whole and in order (${engine} loop)`, async () => {
      const p = await setUp(engine === 'node' ? 'node' : undefined);
      for (const path of ['/plain', '/chunked']) {
        const first = await exchange(p.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, (t) =>
          /part two|stored$/.test(t),
        );
        assert.match(first.text, /cache-status: switchyard; fwd=miss; stored/i);
      }
      const ask = (method, path) => `${method} ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
      const { text } = await exchange(
        p.port,
        ask('GET', '/plain') +
          ask('HEAD', '/chunked') +
          ask('GET', '/chunked') +
          ask('GET', '/plain'),
        (t) => count(t, 'HTTP/1.1 ') === 4 && t.endsWith('stored'),
      );
      const answers = heads(text);
      assert.equal(answers.length, 4, text);
      const bodies = ['stored', '', 'part one, part two', 'stored'];
      answers.forEach((answer, i) => {
        const names = answer.fields.map(([n]) => n);
        const field = (n) => answer.fields.filter(([k]) => k === n).map(([, v]) => v);
        assert.equal(answer.status, 200);
        assert.deepEqual(field('cache-status'), ['switchyard; hit'], text);
        assert.equal(field('content-length').length, 1, text);
        assert.equal(Number(field('content-length')[0]), i === 1 ? 18 : bodies[i].length);
        assert.deepEqual(field('connection'), ['keep-alive']);
        assert.equal(field('age').length, 1);
        assert.match(field('x-request-id')[0] ?? '', /^[0-9a-f-]{36}$/);
        assert.equal(field('date').length, 1);
        assert.equal(new Set(names).size, names.length, `a field twice: ${names}`);
        assert.equal(field('transfer-encoding').length, 0);
        assert.ok(answer.body.startsWith(bodies[i]), `answer ${i}: ${answer.body}`);
      });
    });
  }

  test('an HTTP/1.0 client gets its hit with Connection: close, then the connection ends', async () => {
    const p = await setUp();
    await exchange(p.port, 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n', (t) => t.endsWith('stored'));
    const { text, closed } = await exchange(p.port, 'GET /plain HTTP/1.0\r\nHost: x\r\n\r\n');
    assert.match(text, /cache-status: switchyard; hit\r\n/);
    assert.match(text, /\r\nConnection: close\r\n\r\nstored$/);
    assert.equal(closed, true);
  });
});

describe('proxied responses that arrive whole in one read', () => {
  /** An origin that answers each request head with the bytes `answers[path]` in one write. */
  async function rawOrigin(answers) {
    const server = net.createServer((socket) => {
      let pending = '';
      socket.on('data', async (data) => {
        pending += data.toString('latin1');
        let end;
        while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
          const head = pending.slice(0, end);
          pending = pending.slice(end + 4);
          const path = head.split(' ')[1];
          const answer = answers[path];
          if (typeof answer === 'function') await answer(socket);
          else socket.write(answer ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
        }
      });
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const p = await startProxyTo(`http://127.0.0.1:${server.address().port}`);
    cleanups.push(p.close);
    return p;
  }

  const fieldsOf = (text) =>
    text
      .slice(0, text.indexOf('\r\n\r\n'))
      .split('\r\n')
      .slice(1)
      .map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 2)]);

  test('a chunked answer leaves with Content-Length; hop-by-hop, Server and the upstream request id are dropped; Date is added', async () => {
    const p = await rawOrigin({
      '/chunked':
        'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n' +
        'Keep-Alive: timeout=9\r\nServer: secret/1.0\r\nX-Request-Id: from-upstream\r\nX-Kept: yes\r\n\r\n' +
        '6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n',
    });
    const { text } = await exchange(p.port, 'GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n', (t) =>
      t.endsWith('hello world'),
    );
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    const fields = fieldsOf(text);
    const field = (n) => fields.filter(([k]) => k === n).map(([, v]) => v);
    assert.deepEqual(field('content-length'), ['11']);
    assert.deepEqual(field('transfer-encoding'), []);
    assert.deepEqual(field('server'), []);
    assert.deepEqual(field('x-kept'), ['yes']);
    assert.deepEqual(field('content-type'), ['text/plain']);
    assert.deepEqual(field('keep-alive'), ['timeout=5']);
    assert.deepEqual(field('connection'), ['keep-alive']);
    assert.equal(field('date').length, 1);
    assert.ok(Math.abs(Date.parse(field('date')[0]) - Date.now()) < 5000);
    assert.equal(field('x-request-id').length, 1);
    assert.match(field('x-request-id')[0], /^[0-9a-f-]{36}$/);
    assert.ok(text.endsWith('\r\n\r\nhello world'));
  });

  test('fields named by Connection are still removed; an HTTP/1.0 client gets Connection: close', async () => {
    const p = await rawOrigin({
      '/named':
        'HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n\r\nok',
      '/plain':
        'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nfine',
    });
    const named = await exchange(p.port, 'GET /named HTTP/1.1\r\nHost: x\r\n\r\n', (t) =>
      t.endsWith('ok'),
    );
    assert.doesNotMatch(named.text, /x-secret/i);
    assert.match(named.text, /content-length: 2\r\n/);
    const old = await exchange(p.port, 'GET /plain HTTP/1.0\r\nHost: x\r\n\r\n');
    assert.equal(old.closed, true);
    const fields = fieldsOf(old.text);
    assert.deepEqual(
      fields.filter(([k]) => k === 'date' || k === 'connection').map(([, v]) => v),
      ['Sun, 06 Nov 1994 08:49:37 GMT', 'close'],
    );
    assert.ok(old.text.endsWith('\r\n\r\nfine'));
  });

  test('an answer spread over several reads arrives whole, with its own framing, whatever the split', async () => {
    const pause = () => new Promise((resolve) => setTimeout(resolve, 15));
    const answers = {
      length: 'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello, world',
      chunked:
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n',
    };
    const routes = {};
    for (const [kind, bytes] of Object.entries(answers))
      for (const cut of [10, 30, 45, 52, bytes.length - 3])
        routes[`/${kind}-${cut}`] = async (socket) => {
          socket.write(bytes.slice(0, cut));
          await pause();
          socket.write(bytes.slice(cut));
        };
    const p = await rawOrigin(routes);
    for (const path of Object.keys(routes)) {
      const { text } = await exchange(p.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, (t) =>
        /hello, world$|\r\n0\r\n\r\n$/.test(t),
      );
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/, path);
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      const decoded = /transfer-encoding: chunked/i.test(text)
        ? body.replace(/(?:^|\r\n)[0-9a-f]+\r\n/g, '').replace(/\r\n$/, '')
        : body;
      assert.equal(decoded, 'hello, world', `${path}: ${JSON.stringify(text)}`);
    }
  });

  test('a body that breaks in the read its head came in gets a 502, not a cut 200; the proxy serves on', async () => {
    const p = await rawOrigin({
      '/broken': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n',
      '/fine': 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine',
    });
    const { text } = await exchange(p.port, 'GET /broken HTTP/1.1\r\nHost: x\r\n\r\n', (t) =>
      /\r\n\r\n[\s\S]+/.test(t),
    );
    assert.match(text, /^HTTP\/1\.1 502 /);
    assert.doesNotMatch(text, /hello/);
    const after = await exchange(p.port, 'GET /fine HTTP/1.1\r\nHost: x\r\n\r\n', (t) =>
      t.endsWith('fine'),
    );
    assert.match(after.text, /^HTTP\/1\.1 200 OK\r\n/);
  });

  test('a head whose body is still coming is written at the end of its read, not held for the body', async () => {
    let release;
    const rest = new Promise((resolve) => (release = resolve));
    const p = await rawOrigin({
      '/slow': async (socket) => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst');
        await rest;
        socket.write('-last');
      },
    });
    const early = exchange(p.port, 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', (t) =>
      t.endsWith('first'),
    );
    const { text } = await early;
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 10\r\n[\s\S]*\r\n\r\nfirst$/);
    release();
  });
});
