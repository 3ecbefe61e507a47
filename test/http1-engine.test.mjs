// Switchyard's own HTTP/1.1 connection loop (src/server/http1-engine.ts) through real sockets:
// pipelining (in order, whatever the origin's pace), keep-alive and the idle timeout, the
// headers/request timeouts, half-close, client aborts, request-body backpressure, Expect,
// an HTTP/2 preface and garbage on an HTTP/1.1-only listener, Upgrade with bytes in the same
// write, TLS, HTTP/1.0, and the same bytes as node:http's loop (SWITCHYARD_SERVER_ENGINE=node).
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { startOrigin, startProxy } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** What the origin reports to the tests (request starts, closes), awaited with a bound. */
const originEvents = new EventEmitter();
/** The upload test holds the origin's reading until it has measured the client's progress. */
let releaseUpload = () => undefined;

const sha = (data) => createHash('sha256').update(data).digest('hex');

/** Resolves with `promise`, or fails after `ms` naming what did not happen. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let origin;

async function startTestOrigin() {
  origin = await startOrigin((req, res) => {
    const url = new URL(req.url, 'http://origin');
    const path = url.pathname;
    if (path === '/upload') {
      const hash = createHash('sha256');
      let bytes = 0;
      req.pause();
      const held = new Promise((resolve) => (releaseUpload = resolve));
      originEvents.emit('upload-start');
      void held.then(() => {
        req.on('data', (c) => {
          hash.update(c);
          bytes += c.length;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ bytes, sha: hash.digest('hex') }));
        });
        req.resume();
      });
      return;
    }
    if (path === '/drip') {
      // Streams until the proxy lets go of it (or 10 s, far beyond any test's bound).
      originEvents.emit('drip-start');
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(1024, 0x61);
      const timer = setInterval(() => res.write(chunk), 20);
      const stop = setTimeout(() => res.end(), 10_000);
      res.once('close', () => {
        clearInterval(timer);
        clearTimeout(stop);
        originEvents.emit('drip-closed', res.writableFinished);
      });
      return;
    }
    if (path === '/big') {
      const total = Number(url.searchParams.get('mb') ?? 32) * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      let sent = 0;
      res.writeHead(200, { 'content-length': total });
      res.once('close', () => originEvents.emit('big-closed', sent));
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }
    if (path === '/sink') {
      originEvents.emit('sink-start');
      req.resume();
      req.once('close', () => originEvents.emit('sink-closed', req.complete));
      req.once('end', () => res.end('sunk'));
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const answer = `${req.method} ${req.url} http/${req.httpVersion} len=${body.length} sha=${sha(body).slice(0, 16)} expect=${req.headers.expect ?? '-'} fields=${req.rawHeaders.length / 2}\n`;
      const send = () => {
        if (path === '/chunked') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          for (const part of answer.match(/.{1,7}/gs)) res.write(part);
          res.end();
          return;
        }
        res.writeHead(200, {
          'content-type': 'text/plain',
          'content-length': Buffer.byteLength(answer),
          'x-origin-method': req.method,
        });
        res.end(req.method === 'HEAD' ? undefined : answer);
      };
      const delay = Number(url.searchParams.get('delay') ?? 0);
      if (delay > 0) setTimeout(send, delay);
      else send();
    });
  });
  cleanups.push(origin.close);
}

const routes = () => `
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { match: { pathPrefix: /local }, respond: { status: 200, body: "local answer" } }
  - { upstream: app }
`;

/** The main proxy (the engine is the default); idle keep-alive connections close after 1 s. */
const MAIN_LISTENER = `listeners: [{ name: web, address: "127.0.0.1:0", limits: { idleTimeout: 1s, maxBodySize: 64MiB } }]`;

async function proxy(yaml) {
  const p = await startProxy(yaml);
  cleanups.push(p.close);
  return p;
}

let main;
before(async () => {
  await startTestOrigin();
  assert.notEqual(process.env.SWITCHYARD_SERVER_ENGINE, 'node', 'the engine must be the default');
  main = await proxy(`${MAIN_LISTENER}\n${routes()}`);
});

/**
 * One HTTP/1.x response out of `buf`, framed as a client must (HEAD and 1xx/204/304 without a
 * body, chunked, Content-Length, or until close). null when more bytes are needed.
 */
function parseResponse(buf, method, closed) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const start = end + 4;
  let used;
  let body;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) {
    used = start;
    body = Buffer.alloc(0);
  } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts = [];
    let pos = start;
    for (;;) {
      const eol = buf.indexOf('\r\n', pos);
      if (eol < 0) return null;
      const size = parseInt(buf.subarray(pos, eol).toString('latin1'), 16);
      if (size === 0) {
        const close = buf.indexOf('\r\n', eol + 2) === eol + 2 ? eol + 4 : -1;
        if (close < 0 || close > buf.length) return null;
        used = close;
        break;
      }
      if (buf.length < eol + 2 + size + 2) return null;
      parts.push(buf.subarray(eol + 2, eol + 2 + size));
      pos = eol + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    const length = Number(headers['content-length']);
    if (buf.length < start + length) return null;
    used = start + length;
    body = buf.subarray(start, used);
  } else {
    if (!closed) return null;
    used = buf.length;
    body = buf.subarray(start);
  }
  return {
    status,
    statusLine,
    headers,
    body,
    text: body.toString('latin1'),
    raw: buf.subarray(0, used),
    used,
  };
}

/** A raw client connection (TCP or TLS) that reads whole responses, in order, as they come. */
class Client {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.closed = false;
    this.wakeUp = null;
    this.all = [];
    this.pending = [];
    socket.on('data', (d) => {
      this.pending.push(d);
      this.all.push(d);
      this.wake();
    });
    socket.on('error', () => undefined);
    this.closing = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        this.closedAt = Date.now();
        this.wake();
        resolve();
      }),
    );
  }

  static async connect(port, tlsOptions) {
    const socket = tlsOptions
      ? tls.connect({ host: '127.0.0.1', port, ...tlsOptions })
      : net.connect(port, '127.0.0.1');
    const client = new Client(socket);
    await within(once(socket, tlsOptions ? 'secureConnect' : 'connect'), 5000, 'connect');
    return client;
  }

  wake() {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  write(bytes) {
    this.socket.write(bytes);
  }

  /** The next whole response (for a HEAD request, pass 'HEAD': it has no body). */
  async response(method = 'GET', timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = parseResponse(this.rest(), method, this.closed);
      if (r !== null) {
        this.buf = this.buf.subarray(r.used);
        return r;
      }
      if (this.closed) {
        throw new Error(`closed before a whole response; got ${JSON.stringify(this.text())}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no whole response in ${timeoutMs} ms: ${this.text()}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The bytes received and not yet taken as a response. */
  rest() {
    if (this.pending.length > 0) {
      this.buf = Buffer.concat([this.buf, ...this.pending]);
      this.pending = [];
    }
    return this.buf;
  }

  /** Everything received so far, as text. */
  text() {
    return Buffer.concat(this.all).toString('latin1');
  }

  /** Resolves once the server closed the connection (fails after `ms`). */
  closes(ms, what = 'the connection closes') {
    return within(this.closing, ms, what);
  }

  destroy() {
    this.socket.destroy();
  }
}

const get = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`;
const head = (path) => `HEAD ${path} HTTP/1.1\r\nHost: a\r\n\r\n`;
const post = (path, body) =>
  `POST ${path} HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

/** The proxy answers a plain GET on a fresh connection (the process still serves). */
async function stillServes(p) {
  const c = await Client.connect(p.port);
  c.write(get('/alive'));
  const r = await c.response();
  c.destroy();
  assert.equal(r.status, 200);
  assert.match(r.text, /^GET \/alive /);
}

describe('pipelining', () => {
  test('GET, HEAD, POST with a body and a chunked answer in one write come back in order, each whole', async () => {
    const c = await Client.connect(main.port);
    const body = 'a body of the third request \u00e9'.repeat(50);
    c.write(get('/one') + head('/two') + post('/three', body) + get('/chunked?four'));
    const r1 = await c.response();
    const r2 = await c.response('HEAD');
    const r3 = await c.response();
    const r4 = await c.response();
    assert.deepEqual([r1.status, r2.status, r3.status, r4.status], [200, 200, 200, 200]);
    assert.match(r1.text, /^GET \/one http\/1\.1 len=0 /);
    assert.equal(r2.headers['x-origin-method'], 'HEAD');
    assert.equal(r2.body.length, 0);
    assert.ok(Number(r2.headers['content-length']) > 0, 'HEAD keeps the length of the GET');
    const bytes = Buffer.from(body);
    assert.match(
      r3.text,
      new RegExp(
        `^POST /three http/1\\.1 len=${bytes.length} sha=${sha(bytes).slice(0, 16)} expect=- fields=\\d+\n$`,
      ),
    );
    // The origin's chunked answer arrives whole in one read, so it leaves with Content-Length
    // (proxy/forward.ts, the serialized head); streamed, it would stay chunked.
    assert.equal(r4.headers['transfer-encoding'], undefined);
    assert.equal(Number(r4.headers['content-length']), r4.body.length);
    assert.match(r4.text, /^GET \/chunked\?four /);
    // Nothing else was sent (no stray bytes after the four answers), and the connection is
    // still usable.
    assert.equal(c.rest().length, 0);
    c.write(get('/five'));
    assert.match((await c.response()).text, /^GET \/five /);
    c.destroy();
  });

  test('answers come back in request order when the origin answers the first one last', async () => {
    const c = await Client.connect(main.port);
    const order = [];
    c.write(
      get('/slow?delay=400&n=1') +
        get('/slow?delay=200&n=2') +
        post('/slow?delay=1&n=3', 'x'.repeat(1000)) +
        get('/slow?n=4'),
    );
    for (let i = 1; i <= 4; i++) {
      const r = await c.response();
      assert.equal(r.status, 200);
      order.push(/n=(\d)/.exec(r.text)[1]);
    }
    assert.deepEqual(order, ['1', '2', '3', '4']);
    assert.equal(c.rest().length, 0);
    c.destroy();
  });

  test('a burst of 100 pipelined requests is answered in order', async () => {
    const c = await Client.connect(main.port);
    let burst = '';
    for (let i = 0; i < 100; i++) burst += get(`/burst?i=${i}&delay=${i % 3 === 0 ? 5 : 0}`);
    c.write(burst);
    for (let i = 0; i < 100; i++) {
      const r = await c.response();
      assert.equal(r.status, 200);
      assert.match(r.text, new RegExp(`^GET /burst\\?i=${i}&`));
    }
    c.destroy();
  });
});

describe('pipelining (more)', () => {
  test('a client that pipelines 64 large answers and reads late gets them all, whole and in order', async () => {
    const c = await Client.connect(main.port);
    c.socket.pause();
    let burst = '';
    for (let i = 0; i < 64; i++) burst += get(`/big?mb=0.125&i=${i}`) + get(`/small?i=${i}`);
    c.write(burst);
    // 8 MiB of answers wait on a client that reads nothing for a while.
    await new Promise((r) => setTimeout(r, 300));
    c.socket.resume();
    for (let i = 0; i < 64; i++) {
      const big = await c.response();
      assert.equal(big.status, 200);
      assert.equal(big.body.length, 128 * 1024);
      const small = await c.response();
      assert.match(small.text, new RegExp(`^GET /small\\?i=${i} `));
    }
    c.destroy();
  });

  test('a head with 60 fields split over several reads, then trailers: the origin sees all of it', async () => {
    const c = await Client.connect(main.port);
    let fields = '';
    for (let i = 0; i < 60; i++) fields += `X-Field-${i}: value-${i}\r\n`;
    const pause = () => new Promise((r) => setTimeout(r, 60));
    const fieldsSeen = (text) => Number(/ fields=(\d+)/.exec(text)[1]);
    c.write(get('/baseline'));
    const baseline = fieldsSeen((await c.response()).text);
    c.write('GET /many-fi');
    await pause();
    c.write(`elds?x=1 HTTP/1.1\r\nHost: a\r\nX-Echo-Count: 1\r\n${fields.slice(0, 700)}`);
    await pause();
    c.write(`${fields.slice(700)}\r\n`);
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.match(r.text, /^GET \/many-fields\?x=1 http\/1\.1 /);
    assert.equal(fieldsSeen(r.text), baseline + 61, 'all 61 added fields reached the origin');
    // A chunked body with a trailer section, and a request pipelined behind it.
    c.write(
      'POST /trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n' +
        get('/after-trailers'),
    );
    assert.match(
      (await c.response()).text,
      new RegExp(`^POST /trailers http/1\\.1 len=5 sha=${sha('abcde').slice(0, 16)}`),
    );
    assert.match((await c.response()).text, /^GET \/after-trailers /);
    c.destroy();
  });

  test('a body the route never reads is skipped: the request pipelined behind it is answered', async () => {
    const c = await Client.connect(main.port);
    const body = 'z'.repeat(200 * 1024);
    c.write(post('/local/unread', body) + get('/after-unread'));
    const r1 = await c.response();
    assert.equal(r1.text, 'local answer');
    const r2 = await c.response();
    assert.match(r2.text, /^GET \/after-unread /);
    c.destroy();
  });
});

describe('keep-alive', () => {
  test('50 sequential requests reuse one connection; idleTimeout then closes it', async () => {
    const c = await Client.connect(main.port);
    for (let i = 0; i < 50; i++) {
      c.write(i % 5 === 4 ? post(`/seq?i=${i}`, `body ${i}`) : get(`/seq?i=${i}`));
      const r = await c.response();
      assert.equal(r.status, 200);
      assert.match(r.text, new RegExp(`/seq\\?i=${i} `));
      assert.equal(r.headers.connection, 'keep-alive');
      assert.equal(c.closed, false);
    }
    const idleFrom = Date.now();
    await c.closes(8000, 'the idle keep-alive connection is closed');
    const idle = c.closedAt - idleFrom;
    assert.ok(idle >= 500, `closed after ${idle} ms idle, idleTimeout is 1 s`);
    assert.equal(c.rest().length, 0, 'closed without sending anything');
  });

  test('a connection that stays busy past idleTimeout is not closed', async () => {
    const c = await Client.connect(main.port);
    // Each answer takes 600 ms, three in a row: well past the 1 s idle limit in total.
    for (let i = 0; i < 3; i++) {
      c.write(get(`/busy?delay=600&i=${i}`));
      const r = await c.response();
      assert.equal(r.status, 200);
    }
    assert.equal(c.closed, false);
    c.destroy();
  });
});

describe('timeouts', { concurrency: true }, () => {
  let slow;
  before(async () => {
    slow = await proxy(`
listeners: [{ address: "127.0.0.1:0", limits: { headersTimeout: 1s, requestTimeout: 2s, idleTimeout: 5s, minBodyRate: 0 } }]
${routes()}`);
  });

  test('headersTimeout: a partial head that stalls gets 408 and the connection closes', async () => {
    const c = await Client.connect(slow.port);
    c.write('GET /partial HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n');
    const started = Date.now();
    await c.closes(8000, 'the stalled head is cut');
    const took = c.closedAt - started;
    assert.ok(took >= 500, `cut after ${took} ms, headersTimeout is 1 s`);
    assert.match(c.text(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
  });

  test('headersTimeout: a head dripping one header at a time is cut too', async () => {
    const c = await Client.connect(slow.port);
    c.write('GET /drip-head HTTP/1.1\r\nHost: a\r\n');
    const drip = setInterval(() => c.socket.writable && c.write('X-A: b\r\n'), 150);
    try {
      await c.closes(8000, 'the dripping head is cut');
    } finally {
      clearInterval(drip);
    }
    assert.match(c.text(), /^HTTP\/1\.1 408 /);
  });

  test('headersTimeout applies to the next head on a kept-alive connection too', async () => {
    const c = await Client.connect(slow.port);
    c.write(get('/first-of-two'));
    assert.equal((await c.response()).status, 200);
    c.write('GET /second-of-two HTTP/1.1\r\nHost: a\r\n');
    await c.closes(8000, 'the stalled second head is cut');
    assert.match(c.text(), /HTTP\/1\.1 408 Request Timeout\r\n/);
  });

  test('a connection that never sends a byte is closed silently', async () => {
    const c = await Client.connect(slow.port);
    const started = Date.now();
    await c.closes(8000, 'the silent connection is closed');
    const took = c.closedAt - started;
    assert.ok(took >= 500, `closed after ${took} ms, headersTimeout is 1 s`);
    assert.equal(c.text(), '');
  });

  test('requestTimeout: a body trickling slower than requestTimeout allows is cut with 408', async () => {
    const c = await Client.connect(slow.port);
    c.write('POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n');
    const drip = setInterval(() => c.socket.writable && c.write('x'), 100);
    const started = Date.now();
    try {
      await c.closes(10_000, 'the trickling body is cut');
    } finally {
      clearInterval(drip);
    }
    const took = c.closedAt - started;
    // minBodyRate is off: only requestTimeout (2 s) can cut it; the head took no time at all.
    assert.ok(took >= 1000, `cut after ${took} ms, requestTimeout is 2 s`);
    assert.match(c.text(), /^HTTP\/1\.1 408 /);
  });

  test('the timeouts do not touch a connection that keeps asking', async () => {
    const c = await Client.connect(slow.port);
    // 5 requests 400 ms apart: 2 s in all, past both headersTimeout and requestTimeout.
    for (let i = 0; i < 5; i++) {
      c.write(get(`/steady?i=${i}`));
      assert.equal((await c.response()).status, 200);
      await new Promise((r) => setTimeout(r, 400));
    }
    assert.equal(c.closed, false);
    c.destroy();
  });
});

describe('half-close', () => {
  test('a client that ends its side after the request still gets the whole answer', async () => {
    const c = await Client.connect(main.port);
    c.write(get('/half?delay=200'));
    c.socket.end();
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.match(r.text, /^GET \/half\?delay=200 /);
    await c.closes(5000, 'the server closes after the last answer');
  });

  test('pipelined requests then FIN: every answer comes back, then the server closes', async () => {
    const c = await Client.connect(main.port);
    c.write(get('/h1?delay=300') + post('/h2', 'posted') + head('/h3'));
    c.socket.end();
    const r1 = await c.response();
    const r2 = await c.response();
    const r3 = await c.response('HEAD');
    assert.match(r1.text, /^GET \/h1\?delay=300 /);
    assert.match(r2.text, /^POST \/h2 http\/1\.1 len=6 /);
    assert.equal(r3.headers['x-origin-method'], 'HEAD');
    await c.closes(5000, 'the server closes after the last answer');
    assert.equal(c.rest().length, 0);
  });
});

describe('client aborts', () => {
  test('a client gone mid-way through a large answer: the origin is let go, the proxy serves on', async () => {
    const c = await Client.connect(main.port);
    const closed = once(originEvents, 'big-closed');
    c.write(get('/big?mb=32'));
    // Read a little over 1 MiB, then vanish.
    while (Buffer.concat(c.all).length < 1024 * 1024) {
      await within(once(c.socket, 'data'), 5000, 'the answer flows');
    }
    c.destroy();
    const [sent] = await within(closed, 5000, 'the origin response is closed');
    assert.ok(sent < 32 * 1024 * 1024, `the origin stopped early (${sent} bytes sent)`);
    await stillServes(main);
  });

  test('a client gone during a slow stream with a pipelined answer queued behind it', async () => {
    const c = await Client.connect(main.port);
    const dripStarted = once(originEvents, 'drip-start');
    const dripClosed = once(originEvents, 'drip-closed');
    // The stream has the socket; the second answer waits in the queue behind it.
    c.write(get('/drip') + get('/queued?delay=50'));
    await within(dripStarted, 5000, 'the origin starts streaming');
    await within(once(c.socket, 'data'), 5000, 'bytes of the stream arrive');
    c.destroy();
    const [finished] = await within(dripClosed, 5000, 'the origin stream is let go');
    assert.equal(finished, false, 'cut, not ended by its own 10 s timer');
    await stillServes(main);
  });

  test('a client gone while its first answer is still awaited, with more pipelined', async () => {
    const c = await Client.connect(main.port);
    const dripStarted = once(originEvents, 'drip-start');
    const dripClosed = once(originEvents, 'drip-closed');
    // The drip is queued behind a slow answer and never gets the socket.
    c.write(get('/first?delay=300') + get('/drip'));
    await within(dripStarted, 5000, 'the origin starts streaming');
    c.destroy();
    const [finished] = await within(dripClosed, 5000, 'the queued stream is let go');
    assert.equal(finished, false);
    await stillServes(main);
    assert.deepEqual(
      main.logs.filter((l) => l.level === 'error'),
      [],
      'no error was logged by the proxy',
    );
  });
});

describe('client aborts (upload) and draining', () => {
  test('a client gone mid-upload: the origin request is aborted, the proxy serves on', async () => {
    const c = await Client.connect(main.port);
    const started = once(originEvents, 'sink-start');
    const closed = once(originEvents, 'sink-closed');
    c.write(
      `POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n${'u'.repeat(50_000)}`,
    );
    await within(started, 5000, 'the upload reaches the origin');
    c.destroy();
    const [complete] = await within(closed, 5000, 'the origin request is closed');
    assert.equal(complete, false, 'the origin saw an incomplete body, not a finished one');
    await stillServes(main);
  });

  test('stopping the proxy: an idle keep-alive connection closes at once, a request in flight finishes', async () => {
    const p = await startProxy(`${MAIN_LISTENER}\n${routes()}`);
    let stopping = false;
    cleanups.push(() => (stopping ? undefined : p.close()));
    const idle = await Client.connect(p.port);
    idle.write(get('/idle-before-stop'));
    assert.equal((await idle.response()).status, 200);
    const busy = await Client.connect(p.port);
    busy.write(get('/busy-at-stop?delay=500'));
    // The request is in flight once the origin has it; then stop.
    await new Promise((r) => setTimeout(r, 100));
    stopping = true;
    const stopped = p.close();
    await idle.closes(2000, 'the idle connection is closed by the stop');
    const r = await busy.response();
    assert.equal(r.status, 200);
    assert.match(r.text, /^GET \/busy-at-stop/);
    await busy.closes(3000, 'the busy connection closes after its answer');
    await within(stopped, 5000, 'the proxy stops');
  });
});

describe('request body backpressure', () => {
  test('a 48 MiB upload to an origin that holds its reading arrives whole, without the proxy buffering it', async () => {
    const total = 48 * 1024 * 1024;
    const chunkSize = 64 * 1024;
    // Pre-made distinct chunks, reused: the client itself holds no more than these.
    const pool = Array.from({ length: 7 }, (_, i) =>
      createHash('sha512')
        .update(String(i))
        .digest()
        .toString('hex')
        .repeat(Math.ceil(chunkSize / 128))
        .slice(0, chunkSize),
    ).map((s) => Buffer.from(s, 'latin1'));
    const c = await Client.connect(main.port);
    const uploadStarted = once(originEvents, 'upload-start');
    c.write(
      `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`,
    );
    const hash = createHash('sha256');
    let written = 0;
    let blockedSince = 0;
    let writing = true;
    const pump = () => {
      while (written < total) {
        const chunk = pool[(written / chunkSize) % pool.length];
        hash.update(chunk);
        written += chunk.length;
        if (!c.socket.write(chunk)) {
          blockedSince = Date.now();
          c.socket.once('drain', () => {
            blockedSince = 0;
            pump();
          });
          return;
        }
      }
      writing = false;
    };
    pump();
    await within(uploadStarted, 5000, 'the origin gets the request');
    // While the origin reads nothing: either the client is held back (backpressure all the
    // way), or it could write everything (the proxy buffered it).
    const deadline = Date.now() + 10_000;
    while (writing && !(blockedSince !== 0 && Date.now() - blockedSince >= 500)) {
      assert.ok(Date.now() < deadline, 'the client neither finished nor was held back');
      await new Promise((r) => setTimeout(r, 50));
    }
    const writtenWhileHeld = written;
    releaseUpload();
    const r = await c.response('POST', 20_000);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.text), { bytes: total, sha: hash.digest('hex') });
    assert.ok(
      writtenWhileHeld < total - 8 * 1024 * 1024,
      `the client got ${writtenWhileHeld} of ${total} bytes out while the origin read nothing`,
    );
    c.destroy();
  });
});

describe('Expect', () => {
  test('Expect: 100-continue gets 100 Continue, then the answer to the body', async () => {
    const c = await Client.connect(main.port);
    c.write(
      'POST /continue HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n',
    );
    const interim = await c.response();
    assert.equal(interim.status, 100);
    c.write('hello');
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.match(
      r.text,
      new RegExp(`^POST /continue http/1\\.1 len=5 sha=${sha('hello').slice(0, 16)}`),
    );
    // The connection carries on.
    c.write(get('/after-continue'));
    assert.match((await c.response()).text, /^GET \/after-continue /);
    c.destroy();
  });

  test('an unknown expectation gets 417 and reaches no origin; the connection carries on', async () => {
    const c = await Client.connect(main.port);
    c.write(
      'POST /expect-other HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: something-else\r\n\r\nabc',
    );
    const r = await c.response();
    assert.equal(r.status, 417);
    assert.doesNotMatch(r.text, /expect-other/);
    c.write(get('/after-417'));
    const next = await c.response();
    assert.equal(next.status, 200);
    assert.match(next.text, /^GET \/after-417 /);
    c.destroy();
  });
});

describe('not HTTP/1.1', () => {
  test('an HTTP/2 preface on an HTTP/1.1-only listener is closed; the proxy serves on', async () => {
    const c = await Client.connect(main.port);
    // The preface and an empty SETTINGS frame, as an h2c prior-knowledge client sends them.
    c.write(
      Buffer.concat([
        Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
        Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
      ]),
    );
    await c.closes(5000, 'the HTTP/2 connection is closed');
    const answer = c.text();
    assert.ok(answer === '' || /^HTTP\/1\.1 4\d\d /.test(answer), answer);
    assert.doesNotMatch(answer, /^HTTP\/1\.1 2/);
    await stillServes(main);
  });

  test('a garbage request line gets 400 and the connection closes; the proxy serves on', async () => {
    const c = await Client.connect(main.port);
    c.write('\x16\x03\x01 this is not http\r\n\r\n');
    await c.closes(5000, 'the garbage connection is closed');
    assert.match(c.text(), /^HTTP\/1\.1 400 Bad Request\r\n/);
    await stillServes(main);
  });

  test('garbage right after a good pipelined request: 400, the connection closes, the proxy serves on', async () => {
    const c = await Client.connect(main.port);
    c.write(`${get('/good')}GARBAGE\r\n\r\n`);
    await c.closes(5000, 'the connection is closed after the 400');
    assert.match(c.text(), /HTTP\/1\.1 400 Bad Request\r\n/);
    await stillServes(main);
  });

  // Bad bytes behind complete requests: the loop answers those first, then lets the listener
  // answer the error (before the fix the 400 replaced or spliced into the pending answer).
  test('garbage pipelined behind a slow answer: the answer comes first, then 400', async () => {
    const c = await Client.connect(main.port);
    c.write(`${get('/good?delay=100')}GARBAGE\r\n\r\n`);
    await c.closes(5000, 'the connection is closed after the 400');
    const first = await c.response();
    assert.equal(first.status, 200);
    assert.match(first.text, /^GET \/good\?delay=100 /);
  });

  test('garbage arriving while an answer is streamed never lands inside that answer', async () => {
    const c = await Client.connect(main.port);
    c.write(get('/big?mb=16'));
    await within(once(c.socket, 'data'), 5000, 'the answer starts');
    c.socket.pause();
    c.write('GARBAGE\r\n\r\n');
    // Give the proxy time to parse the garbage while the body is still being sent.
    await new Promise((r) => setTimeout(r, 200));
    c.socket.resume();
    await c.closes(10_000, 'the connection is closed');
    const text = c.text();
    const bodyStart = text.indexOf('\r\n\r\n') + 4;
    const length = Number(/content-length: (\d+)/i.exec(text.slice(0, bodyStart))?.[1]);
    const body = text.slice(bodyStart, bodyStart + length);
    assert.equal(body.length, length, 'the whole answer arrived');
    assert.doesNotMatch(body, /HTTP\/1\.1 400/, 'a 400 head inside the 16 MiB body');
    // Then, and only then, the answer to the garbage.
    const after = text.slice(bodyStart + length);
    assert.ok(after === '' || after.startsWith('HTTP/1.1 400 '), after.slice(0, 80));
  });

  test('CONNECT is refused with 405', async () => {
    const c = await Client.connect(main.port);
    c.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    await c.closes(5000, 'the CONNECT connection is closed');
    assert.match(c.text(), /^HTTP\/1\.1 405 /);
  });
});

describe('Upgrade', () => {
  test('bytes written right after the upgrade head, in the same write, reach the upstream', async () => {
    const received = [];
    const upstreamSockets = new Set();
    const upstream = net.createServer((socket) => {
      upstreamSockets.add(socket);
      socket.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      let upgraded = false;
      socket.on('data', (d) => {
        if (upgraded) {
          received.push(d);
          socket.write(Buffer.concat([Buffer.from('echo:'), d]));
          return;
        }
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        upgraded = true;
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
        );
        const rest = buf.subarray(end + 4);
        if (rest.length > 0) {
          received.push(rest);
          socket.write(Buffer.concat([Buffer.from('echo:'), rest]));
        }
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { ws: { servers: [{ url: "http://127.0.0.1:${upstream.address().port}" }] } }
routes: [{ upstream: ws }]
`);
    const c = await Client.connect(p.port);
    const early = 'EARLY-BYTES-IN-THE-SAME-WRITE';
    c.write(
      'GET /socket HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' +
        early,
    );
    const switched = await c.response();
    assert.equal(switched.status, 101);
    while (!c.rest().toString('latin1').includes(`echo:${early}`)) {
      await within(
        once(c.socket, 'data'),
        5000,
        `the upstream echoes the early bytes (got ${c.text()})`,
      );
    }
    c.rest();
    c.buf = Buffer.alloc(0);
    c.write('later');
    while (!c.rest().toString('latin1').includes('echo:later')) {
      await within(once(c.socket, 'data'), 5000, 'the tunnel carries later bytes');
    }
    assert.equal(Buffer.concat(received).toString('latin1'), `${early}later`);
    c.destroy();
    for (const s of upstreamSockets) s.destroy();
    await new Promise((r) => upstream.close(r));
  });
});

describe('Upgrade pipelined behind a plain request', () => {
  // The loop hands the socket over only once the response before it is done (node:http's loop
  // hands it over at once, and the listener's assignSocket then throws ERR_HTTP_SOCKET_ASSIGNED).
  test('the first request is answered before the upgrade is handled', async () => {
    const p = await proxy(`${MAIN_LISTENER}\n${routes()}`);
    const c = await Client.connect(p.port);
    c.write(
      get('/before-upgrade?delay=100') +
        'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    try {
      const r = await c.response('GET', 3000);
      assert.equal(r.status, 200);
      assert.match(r.text, /^GET \/before-upgrade/);
    } finally {
      c.destroy();
    }
    assert.deepEqual(
      p.logs.filter((l) => l.level === 'error').map((l) => l.error),
      [],
    );
  });

  test('plain request, pipelined upgrade, then FIN: both answered, and the server lets go', async () => {
    const p = await proxy(`${MAIN_LISTENER}\n${routes()}`);
    const c = await Client.connect(p.port);
    c.socket.end(
      get('/before-upgrade?delay=50') +
        'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    await c.closes(5000, 'the connection is closed after both answers');
    assert.match(c.text(), /^HTTP\/1\.1 200 /);
    assert.equal(c.text().match(/^HTTP\/1\.1 \d{3} /gm)?.length, 2, c.text().slice(0, 300));
    // The handle stopped reading while the upgrade waited; it must read the FIN afterwards.
    const server = p.proxy.listeners.values().next().value.server;
    let open = -1;
    for (let i = 0; i < 50 && open !== 0; i++) {
      open = await new Promise((r) => server.getConnections((_, n) => r(n)));
      if (open !== 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(open, 0, 'server-side connections left open');
  });
});

describe('TLS listener (HTTP/1.1 only)', () => {
  let secure;
  let pki;
  before(async () => {
    pki = createPki();
    const cert = pki.issue(['engine.test']);
    secure = await proxy(`
listeners:
  - address: "127.0.0.1:0"
    http2: false
    # 2 s: node's agent does not reuse a connection whose Keep-Alive hint is 1 s or less.
    limits: { idleTimeout: 2s }
    tls:
      certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }]
${routes()}`);
  });

  test('keep-alive requests and a pipelined pair over one TLS connection', async () => {
    const c = await Client.connect(secure.port, { ca: pki.ca, servername: 'engine.test' });
    assert.equal(c.socket.alpnProtocol, false, 'no ALPN h2 on an http2: false listener');
    for (let i = 0; i < 5; i++) {
      c.write(i === 2 ? post(`/tls?i=${i}`, 'over tls') : get(`/tls?i=${i}`));
      const r = await c.response();
      assert.equal(r.status, 200);
      assert.match(r.text, new RegExp(`/tls\\?i=${i} http/1\\.1`));
    }
    c.write(get('/tls-pipe?delay=200&n=1') + head('/tls-pipe?n=2') + get('/tls-pipe?n=3'));
    assert.match((await c.response()).text, /n=1 /);
    assert.equal((await c.response('HEAD')).headers['x-origin-method'], 'HEAD');
    assert.match((await c.response()).text, /n=3 /);
    assert.equal(c.closed, false);
    await c.closes(8000, 'the idle TLS connection is closed');
  });

  test('TLS half-close: pipelined requests then close_notify/FIN still get both answers', async () => {
    // (node:http's https loop, SWITCHYARD_SERVER_ENGINE=node, drops both: its TLS server is not
    // half-open.)
    const c = await Client.connect(secure.port, { ca: pki.ca, servername: 'engine.test' });
    c.write(get('/tls-half?delay=200&n=1') + get('/tls-half?n=2'));
    c.socket.end();
    assert.match((await c.response()).text, /n=1 /);
    assert.match((await c.response()).text, /n=2 /);
    await c.closes(5000, 'the server closes after the last answer');
  });

  test('node https client with a keep-alive agent reuses its one TLS connection', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: pki.ca });
    const reused = [];
    try {
      for (let i = 0; i < 5; i++) {
        const r = await new Promise((resolve, reject) => {
          const req = https.request(
            {
              host: '127.0.0.1',
              port: secure.port,
              path: `/agent?i=${i}`,
              servername: 'engine.test',
              agent,
            },
            (res) => {
              reused.push(req.reusedSocket);
              let text = '';
              res.setEncoding('latin1');
              res.on('data', (d) => (text += d));
              res.on('end', () => resolve({ status: res.statusCode, text }));
            },
          );
          req.on('error', reject);
          req.end();
        });
        assert.equal(r.status, 200);
        assert.match(r.text, new RegExp(`/agent\\?i=${i} `));
      }
      assert.deepEqual(reused, [false, true, true, true, true]);
    } finally {
      agent.destroy();
    }
  });
});

describe('listeners whose first bytes pass through JS (h2c sniffing, PROXY protocol)', () => {
  for (const [name, listener, prefix] of [
    ['http2: true (h2c sniffing)', 'http2: true', ''],
    ['proxyProtocol: true', 'proxyProtocol: true', 'PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n'],
  ]) {
    test(`${name}: pipelining, HEAD and half-close`, async () => {
      const p = await proxy(`
listeners: [{ address: "127.0.0.1:0", ${listener}, limits: { idleTimeout: 1s } }]
${routes()}`);
      const c = await Client.connect(p.port);
      c.write(`${prefix}${get('/js?delay=150&n=1')}${head('/js?n=2')}${post('/js?n=3', 'body')}`);
      c.socket.end();
      assert.match((await c.response()).text, /n=1 /);
      assert.equal((await c.response('HEAD')).headers['x-origin-method'], 'HEAD');
      assert.match((await c.response()).text, /^POST \/js\?n=3 http\/1\.1 len=4 /);
      await c.closes(5000, 'the server closes after the last answer');
    });
  }
});

describe('HTTP/1.0 clients', () => {
  test('without keep-alive the connection closes after the answer', async () => {
    const c = await Client.connect(main.port);
    c.write('GET /ten HTTP/1.0\r\nHost: a\r\n\r\n');
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.match(r.statusLine, /^HTTP\/1\.1 200/);
    assert.match(r.text, /^GET \/ten /);
    await c.closes(5000, 'the HTTP/1.0 connection closes after the answer');
  });

  test('with Connection: keep-alive it stays open for a second request', async () => {
    const c = await Client.connect(main.port);
    c.write('GET /ten-a HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n');
    const r1 = await c.response();
    assert.equal(r1.status, 200);
    assert.match(r1.headers.connection, /keep-alive/i);
    assert.match(r1.text, /^GET \/ten-a /);
    c.write('GET /ten-b HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n');
    const r2 = await c.response();
    assert.match(r2.text, /^GET \/ten-b /);
    assert.equal(c.closed, false);
    // A last one without keep-alive ends it.
    c.write('GET /ten-c HTTP/1.0\r\nHost: a\r\n\r\n');
    assert.match((await c.response()).text, /^GET \/ten-c /);
    await c.closes(5000, 'closed after the request without keep-alive');
  });
});

describe('same bytes as node:http (SWITCHYARD_SERVER_ENGINE=node)', () => {
  let nodeLoop;
  before(async () => {
    // startProxy runs the proxy in this process: the listener reads the variable when it is
    // created, so it is set only around this start.
    const saved = process.env.SWITCHYARD_SERVER_ENGINE;
    process.env.SWITCHYARD_SERVER_ENGINE = 'node';
    try {
      nodeLoop = await proxy(`${MAIN_LISTENER}\n${routes()}`);
    } finally {
      if (saved === undefined) delete process.env.SWITCHYARD_SERVER_ENGINE;
      else process.env.SWITCHYARD_SERVER_ENGINE = saved;
    }
  });

  /** Pipelined GET, HEAD, POST, chunked, slow first, then FIN: all bytes until close. */
  async function scenario(port) {
    const c = await Client.connect(port);
    c.write(
      get('/same?delay=150') +
        head('/same-head') +
        post('/same-post', 'payload') +
        get('/chunked?same') +
        'GET /same-10 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok',
    );
    c.socket.end();
    await c.closes(8000, 'the server closes after the last answer');
    return c
      .text()
      .replace(/^Date: .*\r\n/gim, 'Date: -\r\n')
      .replace(/^X-Request-Id: .*\r\n/gim, 'X-Request-Id: -\r\n');
  }

  test('the switch is real: node:http serves one proxy, the engine the other', () => {
    const serverOf = (p) => p.proxy.listeners.get('web').server;
    assert.ok(serverOf(nodeLoop) instanceof http.Server);
    assert.ok(!(serverOf(main) instanceof http.Server));
  });

  test('pipelining and half-close: both loops send the same bytes', async () => {
    const [ours, nodes] = await Promise.all([scenario(main.port), scenario(nodeLoop.port)]);
    assert.match(ours, /POST \/same-post http\/1\.1 len=7 /);
    assert.equal((ours.match(/^HTTP\/1\.1 200 /gm) ?? []).length, 5);
    assert.equal(ours, nodes);
  });

  test('both loops answer the error cases the same way', async () => {
    for (const bytes of [
      'GARBAGE\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n',
      'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: nope\r\n\r\nz',
      `GET /${'a'.repeat(20000)} HTTP/1.1\r\nHost: a\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(20000)}\r\n\r\n`,
    ]) {
      const run = async (port) => {
        const c = await Client.connect(port);
        c.write(bytes);
        c.socket.end();
        await c.closes(5000, `closed after ${JSON.stringify(bytes.slice(0, 40))}`);
        return c.text().replace(/^Date: .*\r\n/gim, 'Date: -\r\n');
      };
      const [ours, nodes] = await Promise.all([run(main.port), run(nodeLoop.port)]);
      assert.equal(ours, nodes, `answers differ for ${JSON.stringify(bytes.slice(0, 40))}`);
      assert.match(ours, /^HTTP\/1\.1 4\d\d /);
    }
  });
});
