// gRPC through the proxy with @grpc/grpc-js on both ends: grpc-js clients connect over TLS
// (ALPN h2, the test CA through credentials.createSsl) and over cleartext h2c
// (credentials.createInsecure), and the proxy reaches grpc-js servers over h2c
// (`protocol: h2c`) and over TLS (`protocol: h2` with the test CA). Services are defined without
// protobuf files: JSON messages with our own serialize/deserialize. Every combination runs
// unary, server-, client- and bidirectional streaming calls, an error status with details and
// trailing metadata, a deadline, and a client cancellation the upstream server sees.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import grpc from '@grpc/grpc-js';
import { startProxy } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

const serialize = (value) => Buffer.from(JSON.stringify(value));
const deserialize = (buffer) => JSON.parse(buffer.toString());

/** A generic service definition; `pkg` keeps the h2c and TLS upstreams apart by path. */
function echoService(pkg) {
  const method = (name, requestStream, responseStream) => ({
    path: `/${pkg}.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  });
  return {
    unary: method('Unary', false, false),
    fail: method('Fail', false, false),
    slow: method('Slow', false, false),
    list: method('List', false, true),
    hang: method('Hang', false, true),
    sum: method('Sum', true, false),
    chat: method('Chat', true, true),
  };
}

/** What each upstream server saw, for assertions about the server side of a call. */
const seen = { cancelled: new Map(), metadata: [] };

function waitCancelled(id) {
  let entry = seen.cancelled.get(id);
  if (entry === undefined) {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    entry = { promise, resolve };
    seen.cancelled.set(id, entry);
  }
  return entry;
}

const implementation = (label) => ({
  unary(call, callback) {
    seen.metadata.push(call.metadata.get('x-user')[0]);
    const trailer = new grpc.Metadata();
    trailer.set('x-served-by', label);
    callback(null, { echo: call.request.text, user: call.metadata.get('x-user')[0] }, trailer);
  },
  fail(call, callback) {
    const metadata = new grpc.Metadata();
    metadata.set('x-reason', 'no-such-item');
    metadata.set('x-detail-bin', Buffer.from([0, 1, 2, 255]));
    callback({ code: grpc.status.NOT_FOUND, details: `item ${call.request.id} missing`, metadata });
  },
  slow(call) {
    // Never answers: the client's deadline ends the call.
    call.on('cancelled', () => waitCancelled(call.request.id).resolve());
  },
  list(call) {
    for (let i = 0; i < call.request.count; i++) call.write({ n: i });
    call.end();
  },
  hang(call) {
    call.on('cancelled', () => waitCancelled(call.request.id).resolve());
    call.write({ started: true });
  },
  sum(call, callback) {
    let total = 0;
    let count = 0;
    call.on('data', (m) => {
      total += m.n;
      count++;
    });
    call.on('end', () => callback(null, { total, count }));
  },
  chat(call) {
    call.on('data', (m) => call.write({ echo: m.text }));
    call.on('end', () => call.end());
  },
});

let pki;
const servers = [];
let tlsProxy;
let plainProxy;

function bind(server, credentials) {
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (err, port) =>
      err ? reject(err) : resolve(port),
    );
  });
}

before(async () => {
  pki = createPki();
  const proxyCert = pki.issue(['grpc.test']);
  const backendCert = pki.issue(['backend.test']);

  const h2cServer = new grpc.Server();
  h2cServer.addService(echoService('h2c'), implementation('h2c'));
  const h2cPort = await bind(h2cServer, grpc.ServerCredentials.createInsecure());
  servers.push(h2cServer);

  const tlsServer = new grpc.Server();
  tlsServer.addService(echoService('tls'), implementation('tls'));
  const tlsPort = await bind(
    tlsServer,
    grpc.ServerCredentials.createSsl(
      null,
      [{ private_key: Buffer.from(backendCert.key), cert_chain: Buffer.from(backendCert.cert) }],
      false,
    ),
  );
  servers.push(tlsServer);

  const rest = `
upstreams:
  plain: { servers: [{ url: "http://127.0.0.1:${h2cPort}" }], protocol: h2c }
  secure:
    servers: [{ url: "https://127.0.0.1:${tlsPort}" }]
    protocol: h2
    tls: { ca: "${pki.caPath}", serverName: backend.test }
routes:
  - match: { pathPrefix: /h2c.Echo/, headers: { content-type: application/grpc } }
    upstream: plain
  - match: { pathPrefix: /tls.Echo/, headers: { content-type: application/grpc } }
    upstream: secure
`;
  tlsProxy = await startProxy(`
listeners:
  - name: websecure
    address: "127.0.0.1:0"
    tls:
      certificates: [{ cert: "${proxyCert.certPath}", key: "${proxyCert.keyPath}" }]
${rest}`);
  plainProxy = await startProxy(`
listeners: [{ name: internal, address: "127.0.0.1:0", http2: true }]
${rest}`);
});

after(async () => {
  await tlsProxy?.close();
  await plainProxy?.close();
  for (const server of servers) server.forceShutdown();
});

const clientKinds = {
  'TLS client (ALPN h2)': () => ({
    target: `127.0.0.1:${tlsProxy.port}`,
    credentials: grpc.credentials.createSsl(Buffer.from(pki.ca)),
    options: {
      'grpc.ssl_target_name_override': 'grpc.test',
      'grpc.default_authority': 'grpc.test',
    },
  }),
  'h2c client': () => ({
    target: `127.0.0.1:${plainProxy.port}`,
    credentials: grpc.credentials.createInsecure(),
    options: {},
  }),
};

function makeClient(kind, pkg) {
  const { target, credentials, options } = clientKinds[kind]();
  const Client = grpc.makeGenericClientConstructor(echoService(pkg), 'Echo');
  return new Client(target, credentials, options);
}

/** A unary call as a promise of { value, status } (status carries the trailing metadata). */
function unary(client, method, request, metadata = new grpc.Metadata(), options = {}) {
  return new Promise((resolve, reject) => {
    let value;
    let error;
    const call = client[method](request, metadata, options, (err, v) => {
      error = err;
      value = v;
    });
    call.on('status', (status) => (error ? reject(error) : resolve({ value, status })));
  });
}

function collect(stream) {
  return new Promise((resolve, reject) => {
    const items = [];
    stream.on('data', (m) => items.push(m));
    stream.on('error', reject);
    stream.on('status', (status) => {
      if (status.code === grpc.status.OK) resolve({ items, status });
    });
  });
}

let callIds = 0;

for (const kind of Object.keys(clientKinds)) {
  for (const pkg of ['h2c', 'tls']) {
    const label = `${kind} -> ${pkg === 'h2c' ? 'h2c upstream' : 'h2 TLS upstream'}`;

    test(`unary call with metadata and trailers: ${label}`, async () => {
      const client = makeClient(kind, pkg);
      try {
        const metadata = new grpc.Metadata();
        metadata.set('x-user', 'alice');
        const { value, status } = await unary(client, 'unary', { text: 'hi' }, metadata);
        assert.deepEqual(value, { echo: 'hi', user: 'alice' });
        assert.equal(status.code, grpc.status.OK);
        assert.deepEqual(status.metadata.get('x-served-by'), [pkg]);
      } finally {
        client.close();
      }
    });

    test(`server streaming: ${label}`, async () => {
      const client = makeClient(kind, pkg);
      try {
        const { items } = await collect(client.list({ count: 5 }));
        assert.deepEqual(
          items.map((m) => m.n),
          [0, 1, 2, 3, 4],
        );
      } finally {
        client.close();
      }
    });

    test(`client streaming: ${label}`, async () => {
      const client = makeClient(kind, pkg);
      try {
        const result = await new Promise((resolve, reject) => {
          const call = client.sum((err, value) => (err ? reject(err) : resolve(value)));
          for (const n of [1, 2, 3, 4]) call.write({ n });
          call.end();
        });
        assert.deepEqual(result, { total: 10, count: 4 });
      } finally {
        client.close();
      }
    });

    test(`bidirectional streaming, replies while the call is open: ${label}`, async () => {
      const client = makeClient(kind, pkg);
      try {
        const call = client.chat();
        const replies = [];
        const next = () =>
          new Promise((resolve, reject) => {
            call.once('data', (m) => {
              replies.push(m.echo);
              resolve();
            });
            call.once('error', reject);
          });
        let arrived = next();
        call.write({ text: 'one' });
        await arrived;
        // The second message is sent only after the first reply came back through the proxy.
        arrived = next();
        call.write({ text: 'two' });
        await arrived;
        const status = new Promise((resolve) => call.on('status', resolve));
        call.end();
        assert.equal((await status).code, grpc.status.OK);
        assert.deepEqual(replies, ['one', 'two']);
      } finally {
        client.close();
      }
    });

    test(`an error status with details and trailing metadata: ${label}`, async () => {
      const client = makeClient(kind, pkg);
      try {
        const err = await unary(client, 'fail', { id: 42 }).then(
          () => assert.fail('the call should fail'),
          (e) => e,
        );
        assert.equal(err.code, grpc.status.NOT_FOUND, err.details);
        assert.equal(err.details, 'item 42 missing');
        assert.deepEqual(err.metadata.get('x-reason'), ['no-such-item']);
        assert.deepEqual(err.metadata.get('x-detail-bin'), [Buffer.from([0, 1, 2, 255])]);
      } finally {
        client.close();
      }
    });

    test(`a deadline ends the call with DEADLINE_EXCEEDED upstream too: ${label}`, async () => {
      const client = makeClient(kind, pkg);
      try {
        const id = `deadline-${++callIds}`;
        const cancelled = waitCancelled(id).promise;
        const err = await unary(client, 'slow', { id }, new grpc.Metadata(), {
          deadline: Date.now() + 500,
        }).then(
          () => assert.fail('the call should time out'),
          (e) => e,
        );
        assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
        await cancelled; // the server's call ended as well (grpc-timeout or the stream's reset)
      } finally {
        client.close();
      }
    });

    test(`client cancellation cancels the upstream call: ${label}`, async () => {
      const client = makeClient(kind, pkg);
      try {
        const id = `cancel-${++callIds}`;
        const cancelled = waitCancelled(id).promise;
        const call = client.hang({ id });
        const status = new Promise((resolve) => call.on('status', resolve));
        call.on('error', () => {});
        // Cancel only once the upstream call is running (its first message came back).
        await new Promise((resolve) => call.once('data', resolve));
        call.cancel();
        assert.equal((await status).code, grpc.status.CANCELLED);
        // grpc-js's server emits 'cancelled' only when the proxy reset the upstream stream.
        await cancelled;
      } finally {
        client.close();
      }
    });
  }
}
