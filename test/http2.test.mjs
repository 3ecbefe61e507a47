// HTTP/2 towards clients: ALPN h2 and http/1.1 on one TLS port, h2c prior knowledge on a plain
// listener, pseudo-headers mapped to Host and path, no connection-specific fields either way,
// request bodies without a length, trailers, backpressure, and RST_STREAM cancelling upstream.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import { once } from 'node:events';
import { startOrigin, startProxy, request } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

let pki;
let cert;
let origin;
let proxy;
let plain;
const seen = [];
const cancelled = [];
const bigSent = { bytes: 0, stalled: null };
const BIG = 16 * 1024 * 1024;

before(async () => {
  pki = createPki();
  cert = pki.issue(['h2.test']);
  origin = await startOrigin((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seen.push({ url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      if (req.url === '/hop') {
        res.writeHead(200, {
          connection: 'x-private, keep-alive',
          'x-private': 'no',
          'keep-alive': 'timeout=5',
          'proxy-connection': 'keep-alive',
          'x-kept': 'yes',
        });
        return res.end('hop');
      }
      if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('body');
        res.addTrailers({ 'x-checksum': 'abc123' });
        return res.end();
      }
      if (req.url === '/slow') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first');
        res.on('close', () => cancelled.push(res.writableFinished ? 'finished' : 'aborted'));
        return; // never ends unless the client goes away
      }
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const chunk = Buffer.alloc(64 * 1024, 7);
        const pump = () => {
          while (bigSent.bytes < BIG) {
            bigSent.bytes += chunk.length;
            if (!res.write(chunk)) {
              bigSent.stalled?.();
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        return pump();
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`echo ${req.method} ${req.url} ${Buffer.concat(chunks).length}`);
    });
  });
  proxy = await startProxy(`
listeners:
  - name: websecure
    address: "127.0.0.1:0"
    tls:
      certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }]
    limits: { maxBodySize: 1MiB }
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - upstream: app
`);
  plain = await startProxy(`
listeners:
  - name: internal
    address: "127.0.0.1:0"
    http2: true
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - upstream: app
`);
});

after(async () => {
  await proxy.close();
  await plain.close();
  await origin.close();
});

function connect(url = `https://127.0.0.1:${proxy.port}`) {
  const session = http2.connect(url, { ca: pki.ca, servername: 'h2.test' });
  session.on('error', () => {});
  return session;
}

/** One HTTP/2 request; resolves { headers, body, trailers }. */
function h2request(session, headers, body) {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let responseHeaders;
    let trailers = {};
    const chunks = [];
    stream.on('response', (h) => (responseHeaders = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () =>
      resolve({ headers: responseHeaders, body: Buffer.concat(chunks).toString(), trailers }),
    );
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

test('ALPN: h2 and http/1.1 on the same TLS port, pseudo-headers mapped to Host and path', async () => {
  const session = connect();
  try {
    const res = await h2request(session, { ':path': '/a/b?c=1', ':authority': 'h2.test' });
    assert.equal(res.headers[':status'], 200);
    assert.equal(res.body, 'echo GET /a/b?c=1 0');
    assert.equal(session.alpnProtocol, 'h2');
    const upstream = seen.at(-1).headers;
    assert.equal(upstream.host, 'h2.test');
    assert.equal(upstream['x-forwarded-proto'], 'https');
    assert.equal(upstream['x-forwarded-host'], 'h2.test');
    for (const name of Object.keys(upstream)) assert.ok(!name.startsWith(':'), name);
    assert.ok(res.headers['x-request-id']);
  } finally {
    session.close();
  }
  const h1 = await new Promise((resolve, reject) => {
    https
      .get(
        `https://127.0.0.1:${proxy.port}/h1`,
        { ca: pki.ca, servername: 'h2.test', agent: false },
        (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ res, body }));
        },
      )
      .on('error', reject);
  });
  assert.equal(h1.res.httpVersion, '1.1');
  assert.equal(h1.body, 'echo GET /h1 0');
});

test('connection-specific response fields never reach an HTTP/2 client', async () => {
  const session = connect();
  try {
    const res = await h2request(session, { ':path': '/hop' });
    assert.equal(res.headers[':status'], 200);
    assert.equal(res.headers['x-kept'], 'yes');
    for (const name of ['connection', 'keep-alive', 'proxy-connection', 'x-private'])
      assert.equal(res.headers[name], undefined, name);
  } finally {
    session.close();
  }
});

test('an HTTP/2 request body without content-length is streamed upstream; too large is 413', async () => {
  const session = connect();
  try {
    const res = await h2request(
      session,
      { ':method': 'POST', ':path': '/upload' },
      'x'.repeat(5000),
    );
    assert.equal(res.body, 'echo POST /upload 5000');
    const tooBig = await h2request(
      session,
      { ':method': 'POST', ':path': '/upload', 'content-length': String(2 * 1024 * 1024) },
      Buffer.alloc(10),
    ).catch((err) => ({ error: err }));
    if (!tooBig.error) {
      assert.equal(tooBig.headers[':status'], 413);
      assert.equal(tooBig.headers.connection, undefined);
    }
    // Chunked past the limit without a declared length is cut too.
    const streamed = await h2request(
      session,
      { ':method': 'POST', ':path': '/upload' },
      Buffer.alloc(2 * 1024 * 1024),
    ).catch((err) => ({ error: err }));
    assert.ok(streamed.error || streamed.headers[':status'] === 413);
  } finally {
    session.close();
  }
});

test('upstream trailers reach an HTTP/2 client', async () => {
  const session = connect();
  try {
    const res = await h2request(session, { ':path': '/trailers' });
    assert.equal(res.body, 'body');
    assert.equal(res.trailers['x-checksum'], 'abc123');
  } finally {
    session.close();
  }
});

test('RST_STREAM from the client cancels the upstream request; the session keeps working', async () => {
  const session = connect();
  try {
    const stream = session.request({ ':path': '/slow' });
    await once(stream, 'data');
    const before = cancelled.length;
    stream.close(http2.constants.NGHTTP2_CANCEL);
    const deadline = Date.now() + 5000;
    while (cancelled.length === before) {
      if (Date.now() > deadline) throw new Error('upstream request was not cancelled');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(cancelled.at(-1), 'aborted');
    const again = await h2request(session, { ':path': '/after' });
    assert.equal(again.body, 'echo GET /after 0');
  } finally {
    session.close();
  }
});

test('flow control: a client that stops reading stalls the upstream instead of buffering it all', async () => {
  const session = connect();
  try {
    bigSent.bytes = 0;
    const stalled = new Promise((resolve) => (bigSent.stalled = resolve));
    const stream = session.request({ ':path': '/big' });
    stream.pause();
    await stalled;
    // Give the pipeline time to move whatever it would buffer, then check it did not take it all.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(bigSent.bytes < BIG / 2, `only ${bigSent.bytes} of ${BIG} bytes left the origin`);
    bigSent.stalled = null;
    let received = 0;
    stream.on('data', (c) => (received += c.length));
    stream.resume();
    await once(stream, 'end');
    assert.equal(received, BIG);
  } finally {
    session.close();
  }
});

test('h2c prior knowledge and HTTP/1.1 share a plain listener with http2: true', async () => {
  const session = http2.connect(plain.url);
  session.on('error', () => {});
  try {
    const res = await h2request(session, { ':path': '/h2c' });
    assert.equal(res.body, 'echo GET /h2c 0');
    assert.equal(seen.at(-1).headers['x-forwarded-proto'], 'http');
  } finally {
    session.close();
  }
  const h1 = await request(`${plain.url}/h1`);
  assert.equal(h1.text, 'echo GET /h1 0');
});

test('stopping the proxy sends GOAWAY to HTTP/2 clients', async () => {
  const p = await startProxy(`
listeners:
  - name: s
    address: "127.0.0.1:0"
    tls:
      certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }]
routes:
  - respond: { status: 200, body: "hi" }
`);
  const session = connect(`https://127.0.0.1:${p.port}`);
  const res = await h2request(session, { ':path': '/' });
  assert.equal(res.body, 'hi');
  const closed = once(session, 'close');
  await p.close();
  await closed;
});
