// WebSocket pass-through: HTTP/1.1 Upgrade over http and https, both directions streaming,
// subprotocols, clean close from either side, refusals and errors as normal responses, idle
// timeout, draining, and RFC 8441 (WebSocket over HTTP/2) towards an HTTP/1.1 upstream.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { once } from 'node:events';
import { WebSocket, WebSocketServer } from 'ws';
import { startProxy } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

let pki;
let cert;
let originServer;
let originUrl;
let wss;
const upgrades = [];
const serverCloses = [];
let proxy;
let secure;

before(async () => {
  pki = createPki();
  cert = pki.issue(['ws.test']);
  originServer = http.createServer((req, res) => res.end('plain'));
  wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
  });
  originServer.on('upgrade', (req, socket, head) => {
    upgrades.push(req.headers);
    if (req.url === '/forbidden') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (req.url === '/server-closes') {
        ws.close(4001, 'server says bye');
        return;
      }
      ws.on('message', (data, isBinary) => {
        ws.send(isBinary ? data : `echo ${data}`, { binary: isBinary });
      });
      ws.on('close', (code, reason) => serverCloses.push({ code, reason: reason.toString() }));
    });
  });
  originServer.listen(0, '127.0.0.1');
  await once(originServer, 'listening');
  originUrl = `http://127.0.0.1:${originServer.address().port}`;
  const routes = `
upstreams:
  app: { servers: [{ url: "${originUrl}" }] }
  down: { servers: [{ url: "http://127.0.0.1:1" }] }
routes:
  - match: { pathPrefix: /idle }
    upstream: app
    timeouts: { read: 300ms }
  - match: { pathPrefix: /down }
    upstream: down
  - match: { pathPrefix: /local }
    respond: { status: 200, body: "local" }
  - match: { pathPrefix: /missing }
    respond: { status: 404, body: "none" }
  - upstream: app
`;
  proxy = await startProxy(`listeners: [{ name: web, address: "127.0.0.1:0" }]\n${routes}`);
  secure = await startProxy(`
listeners:
  - name: websecure
    address: "127.0.0.1:0"
    tls:
      certificates: [{ cert: "${cert.certPath}", key: "${cert.keyPath}" }]
${routes}`);
});

after(async () => {
  await proxy.close();
  await secure.close();
  for (const client of wss.clients) client.terminate();
  originServer.closeAllConnections();
  await new Promise((r) => originServer.close(r));
});

function open(url, options = {}) {
  const ws = new WebSocket(url, options.protocols ?? [], { ca: pki.ca, ...options });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () =>
        reject(Object.assign(new Error('refused'), { status: res.statusCode, body })),
      );
    });
    ws.once('error', reject);
  });
}

function nextMessage(ws) {
  return new Promise((resolve) =>
    ws.once('message', (data, isBinary) => resolve({ data, isBinary })),
  );
}

test('messages flow both ways through the proxy, with the subprotocol and forwarded headers', async () => {
  const ws = await open(`ws://127.0.0.1:${proxy.port}/chat`, { protocols: ['chat'] });
  assert.equal(ws.protocol, 'chat');
  const seen = upgrades.at(-1);
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.equal(seen.upgrade, 'websocket');
  assert.ok(seen['x-request-id']);
  ws.send('hello');
  assert.equal((await nextMessage(ws)).data.toString(), 'echo hello');
  const big = Buffer.alloc(1024 * 1024, 3);
  ws.send(big);
  const echoed = await nextMessage(ws);
  assert.equal(echoed.isBinary, true);
  assert.ok(echoed.data.equals(big));
  // A clean close from the client reaches the server with its code and reason.
  const before = serverCloses.length;
  ws.close(1000, 'client done');
  const [code] = await once(ws, 'close');
  assert.equal(code, 1000);
  while (serverCloses.length === before) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(serverCloses.at(-1), { code: 1000, reason: 'client done' });
});

test('a close from the server reaches the client with its code', async () => {
  const ws = await open(`ws://127.0.0.1:${proxy.port}/server-closes`);
  const [code, reason] = await once(ws, 'close');
  assert.equal(code, 4001);
  assert.equal(reason.toString(), 'server says bye');
});

test('WebSocket over https (TLS listener)', async () => {
  const ws = await open(`wss://127.0.0.1:${secure.port}/chat`, { servername: 'ws.test' });
  assert.equal(upgrades.at(-1)['x-forwarded-proto'], 'https');
  ws.send('secure');
  assert.equal((await nextMessage(ws)).data.toString(), 'echo secure');
  ws.close();
  await once(ws, 'close');
});

test('refusals are plain responses: upstream 403, no route 404, local answer, upstream down 502', async () => {
  await assert.rejects(open(`ws://127.0.0.1:${proxy.port}/forbidden`), (err) => {
    assert.equal(err.status, 403);
    assert.equal(err.body, 'nope');
    return true;
  });
  await assert.rejects(open(`ws://127.0.0.1:${proxy.port}/missing`), { status: 404 });
  await assert.rejects(open(`ws://127.0.0.1:${proxy.port}/local`), { status: 200, body: 'local' });
  await assert.rejects(open(`ws://127.0.0.1:${proxy.port}/down`), (err) => {
    assert.equal(err.status, 502);
    assert.doesNotMatch(err.body, /127\.0\.0\.1|:1\b/);
    return true;
  });
});

test('an idle tunnel is closed after the route read timeout', async () => {
  const ws = await open(`ws://127.0.0.1:${proxy.port}/idle`);
  ws.send('ping');
  await nextMessage(ws);
  const [code] = await once(ws, 'close');
  assert.equal(code, 1006, 'closed by the proxy without a close frame');
});

test('stopping the proxy closes open tunnels', async () => {
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app: { servers: [{ url: "${originUrl}" }] }
routes:
  - upstream: app
`);
  const ws = await open(`ws://127.0.0.1:${p.port}/chat`);
  const closed = once(ws, 'close');
  await p.close();
  await closed;
});

// Minimal RFC 6455 framing for the HTTP/2 test (node's http2 client has no WebSocket layer).
function clientTextFrame(text) {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

function readServerTextFrame(stream) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && buf.length >= 2 + (buf[1] & 0x7f)) {
        stream.off('data', onData);
        resolve({ opcode: buf[0] & 0x0f, text: buf.subarray(2, 2 + (buf[1] & 0x7f)).toString() });
      }
    };
    stream.on('data', onData);
    stream.once('error', reject);
  });
}

test('WebSocket over HTTP/2 (RFC 8441 extended CONNECT) to an HTTP/1.1 upstream', async () => {
  const session = http2.connect(`https://127.0.0.1:${secure.port}`, {
    ca: pki.ca,
    servername: 'ws.test',
  });
  session.on('error', () => {});
  try {
    await once(session, 'remoteSettings');
    assert.equal(session.remoteSettings.enableConnectProtocol, true);
    const stream = session.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':path': '/chat',
        ':scheme': 'https',
        ':authority': 'ws.test',
        'sec-websocket-version': '13',
        'sec-websocket-protocol': 'chat',
      },
      { endStream: false },
    );
    const [headers] = await once(stream, 'response');
    assert.equal(headers[':status'], 200);
    assert.equal(headers['sec-websocket-protocol'], 'chat');
    assert.equal(upgrades.at(-1).host, 'ws.test');
    const reply = readServerTextFrame(stream);
    stream.write(clientTextFrame('over h2'));
    assert.deepEqual(await reply, { opcode: 1, text: 'echo over h2' });
    stream.close();
  } finally {
    session.close();
  }
});
