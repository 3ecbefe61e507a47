// Server-Sent Events pass through unbuffered: each event reaches the client before the origin
// sends the next one, over HTTP/1.1 and HTTP/2, with compression on for the route as well.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { once } from 'node:events';
import zlib from 'node:zlib';
import { startOrigin, startProxy } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

let pki;
let cert;
let origin;
let proxy;
/** The origin sends event N+1 only after the test calls next(); so buffering would hang. */
const pending = [];

before(async () => {
  pki = createPki();
  cert = pki.issue(['sse.test']);
  origin = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let n = 0;
    const send = () => {
      n++;
      res.write(`id: ${n}\ndata: event ${n}\n\n`);
      if (n === 3) res.end();
      else pending.push(send);
    };
    send();
  });
  proxy = await startProxy(`
listeners:
  - name: web
    address: "127.0.0.1:0"
  - name: websecure
    address: "127.0.0.1:0"
    tls:
      certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }]
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - match: { pathPrefix: /compressed }
    upstream: app
    compression: true
  - upstream: app
`);
});

after(async () => {
  await proxy.close();
  await origin.close();
});

/** Compressed event streams must be flushed per event; decode them as a client would. */
function decoded(stream, encoding) {
  if (encoding === undefined) return stream;
  const decoder = encoding === 'br' ? zlib.createBrotliDecompress() : zlib.createGunzip();
  return stream.pipe(decoder);
}

/** Reads events from a text stream; after each one, lets the origin send the next. */
async function readEvents(stream) {
  const events = [];
  let text = '';
  for await (const chunk of stream) {
    text += chunk.toString();
    let end;
    while ((end = text.indexOf('\n\n')) !== -1) {
      events.push(text.slice(0, end));
      text = text.slice(end + 2);
      pending.shift()?.();
    }
  }
  return events;
}

const expected = ['id: 1\ndata: event 1', 'id: 2\ndata: event 2', 'id: 3\ndata: event 3'];

for (const path of ['/events', '/compressed/events']) {
  test(`SSE over HTTP/1.1 is not buffered (${path})`, async () => {
    pending.length = 0;
    const res = await new Promise((resolve, reject) => {
      http
        .get(
          `${proxy.proxy.url('web')}${path}`,
          { headers: { accept: 'text/event-stream', 'accept-encoding': 'gzip, br' } },
          resolve,
        )
        .on('error', reject);
    });
    assert.equal(res.headers['content-type'], 'text/event-stream');
    if (path === '/events') assert.equal(res.headers['content-encoding'], undefined);
    assert.deepEqual(await readEvents(decoded(res, res.headers['content-encoding'])), expected);
  });

  test(`SSE over HTTP/2 is not buffered (${path})`, async () => {
    pending.length = 0;
    const session = http2.connect(proxy.proxy.url('websecure'), {
      ca: pki.ca,
      servername: 'sse.test',
    });
    session.on('error', () => {});
    try {
      const stream = session.request({
        ':path': path,
        accept: 'text/event-stream',
        'accept-encoding': 'gzip, br',
      });
      const [headers] = await once(stream, 'response');
      assert.equal(headers[':status'], 200);
      assert.equal(headers['content-type'], 'text/event-stream');
      assert.deepEqual(await readEvents(decoded(stream, headers['content-encoding'])), expected);
    } finally {
      session.close();
    }
  });
}
