// gRPC through the proxy: HTTP/2 clients (TLS with ALPN h2, and h2c) to an h2c upstream,
// unary and bidirectional streaming calls, grpc-status trailers passed through. The gRPC wire
// format (5-byte message prefix, application/grpc, trailers) is spoken directly with node:http2,
// since @grpc/grpc-js is not among the project's dependencies.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { once } from 'node:events';
import { startProxy } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

let pki;
let cert;
let origin;
let originUrl;
let proxy;
let plain;
const seenHeaders = [];

function frame(text) {
  const payload = Buffer.from(text);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/** Splits gRPC length-prefixed messages out of a byte stream. */
function messageReader(onMessage) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const len = buf.readUInt32BE(1);
      onMessage(buf.subarray(5, 5 + len).toString());
      buf = buf.subarray(5 + len);
    }
  };
}

before(async () => {
  pki = createPki();
  cert = pki.issue(['grpc.test']);
  origin = http2.createServer();
  origin.on('stream', (stream, headers) => {
    seenHeaders.push(headers);
    const path = headers[':path'];
    if (path === '/demo.Echo/Fail') {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': '5',
          'grpc-message': 'not found',
        },
        { endStream: true },
      );
      return;
    }
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc' },
      { waitForTrailers: true },
    );
    stream.on('wantTrailers', () =>
      stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }),
    );
    if (path === '/demo.Echo/Unary') {
      const messages = [];
      stream.on(
        'data',
        messageReader((m) => messages.push(m)),
      );
      stream.on('end', () => stream.end(frame(`unary:${messages.join(',')}`)));
      return;
    }
    // Bidirectional streaming: answer each message as soon as it arrives.
    stream.on(
      'data',
      messageReader((m) => stream.write(frame(`echo:${m}`))),
    );
    stream.on('end', () => stream.end());
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  originUrl = `http://127.0.0.1:${origin.address().port}`;
  const rest = `
upstreams:
  grpc: { servers: [{ url: "${originUrl}" }], protocol: h2c }
routes:
  - match: { headers: { content-type: application/grpc } }
    upstream: grpc
`;
  proxy = await startProxy(`
listeners:
  - name: websecure
    address: "127.0.0.1:0"
    tls:
      certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }]
${rest}`);
  plain = await startProxy(`
listeners: [{ name: internal, address: "127.0.0.1:0", http2: true }]
${rest}`);
});

after(async () => {
  await proxy.close();
  await plain.close();
  origin.close();
});

function call(session, method, messages, { endAfter = true } = {}) {
  const stream = session.request({
    ':method': 'POST',
    ':path': `/demo.Echo/${method}`,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  const received = [];
  let headers;
  let trailers = {};
  stream.on('response', (h) => (headers = h));
  stream.on('trailers', (t) => (trailers = t));
  stream.on(
    'data',
    messageReader((m) => received.push(m)),
  );
  for (const m of messages) stream.write(frame(m));
  if (endAfter) stream.end();
  const done = once(stream, 'close').then(() => ({ headers, trailers, received }));
  return { stream, received, done };
}

for (const [label, connect] of [
  [
    'TLS (ALPN h2)',
    () => http2.connect(`https://127.0.0.1:${proxy.port}`, { ca: pki.ca, servername: 'grpc.test' }),
  ],
  ['h2c', () => http2.connect(plain.url)],
]) {
  test(`unary call with trailers over ${label}`, async () => {
    const session = connect();
    session.on('error', () => {});
    try {
      const { done } = call(session, 'Unary', ['a', 'b']);
      const res = await done;
      assert.equal(res.headers[':status'], 200);
      assert.equal(res.headers['content-type'], 'application/grpc');
      assert.deepEqual(res.received, ['unary:a,b']);
      assert.equal(res.trailers['grpc-status'], '0');
      assert.equal(res.trailers['grpc-message'], 'ok');
      const upstream = seenHeaders.at(-1);
      assert.equal(upstream.te, 'trailers');
      assert.equal(upstream[':path'], '/demo.Echo/Unary');
    } finally {
      session.close();
    }
  });

  test(`bidirectional streaming over ${label}: replies arrive while the call is open`, async () => {
    const session = connect();
    session.on('error', () => {});
    try {
      const { stream, received, done } = call(session, 'Chat', ['one'], { endAfter: false });
      const waitFor = async (n) => {
        while (received.length < n) await once(stream, 'data');
      };
      await waitFor(1);
      assert.deepEqual(received, ['echo:one']);
      stream.write(frame('two'));
      await waitFor(2);
      assert.deepEqual(received, ['echo:one', 'echo:two']);
      stream.end();
      const res = await done;
      assert.equal(res.trailers['grpc-status'], '0');
    } finally {
      session.close();
    }
  });

  test(`an error status reaches the client over ${label}`, async () => {
    const session = connect();
    session.on('error', () => {});
    try {
      const res = await call(session, 'Fail', ['x']).done;
      const status = res.trailers['grpc-status'] ?? res.headers['grpc-status'];
      const message = res.trailers['grpc-message'] ?? res.headers['grpc-message'];
      assert.equal(status, '5');
      assert.equal(message, 'not found');
    } finally {
      session.close();
    }
  });
}
