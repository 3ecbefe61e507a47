import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, startProxy, request, startProxyTo } from './helpers.mjs';

let origin;
let proxy;
const seen = [];

before(async () => {
  origin = await startOrigin((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({
        url: req.url,
        method: req.method,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body,
      });
      if (req.url.startsWith('/redirect')) {
        res.writeHead(302, { location: `http://127.0.0.1:${origin.port}/landed?x=1` });
        return res.end();
      }
      if (req.url.startsWith('/cookie')) {
        res.setHeader('set-cookie', [
          'a=1; Domain=127.0.0.1; Path=/',
          'b=2; Domain=other.example; Path=/',
        ]);
        return res.end('ok');
      }
      if (req.url.startsWith('/hop')) {
        res.writeHead(200, {
          connection: 'x-secret',
          'x-secret': 'hidden',
          'keep-alive': 'timeout=5',
          server: 'origin/1.0',
          'x-powered-by': 'php',
          'x-kept': 'yes',
        });
        return res.end('hop');
      }
      if (req.url.startsWith('/trailers')) {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part1');
        res.addTrailers({ 'x-checksum': 'abc' });
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-origin': 'yes' });
      res.end(req.method === 'HEAD' ? undefined : body.length ? body : 'hello');
    });
  });
  proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
  fixedhost: { servers: [{ url: "${origin.url}" }], hostHeader: "backend.internal" }
routes:
  - name: ping
    match: { path: /ping }
    respond: { status: 200, body: "pong {literal}\\n", headers: { X-Who: "{client_ip}", X-Uri: "{method} {uri}" } }
  - name: moved
    match: { pathPrefix: /old/ }
    redirect: { location: "https://{host}/new{uri}", status: 308 }
  - name: api
    match: { pathPrefix: /api/ }
    upstream: app
    rewrite: { stripPrefix: /api, addPrefix: /v2 }
    requestHeaders: { set: { X-Env: prod, X-Client: "{client_ip}" }, add: { X-Multi: two }, remove: [Cookie] }
    responseHeaders: { set: { X-Frame-Options: DENY }, add: { X-Added: "{request_id}" }, remove: [X-Origin] }
  - name: fixed
    match: { pathPrefix: /fixed }
    upstream: fixedhost
  - name: only-post
    match: { pathPrefix: /post-only, methods: [POST] }
    upstream: app
  - name: default
    match: { host: [example.com, "*.example.org"] }
    upstream: app
`);
});

after(async () => {
  await proxy.close();
  await origin.close();
});

const last = () => seen[seen.length - 1];

test('proxies a GET and passes the Host header through', async () => {
  const res = await request(`${proxy.url}/hello?a=1&b=%20x`, {
    headers: { host: 'Example.com:8080' },
  });
  assert.equal(res.status, 200);
  assert.equal(res.text, 'hello');
  assert.equal(last().url, '/hello?a=1&b=%20x');
  assert.equal(last().headers.host, 'Example.com:8080');
});

test('sets X-Forwarded-* and X-Request-Id, and returns the request id', async () => {
  const res = await request(`${proxy.url}/x`, {
    headers: {
      host: 'example.com',
      'x-forwarded-for': '6.6.6.6',
      'x-request-id': 'spoofed',
      'x-forwarded-host': 'evil',
    },
  });
  const h = last().headers;
  assert.equal(h['x-forwarded-for'], '127.0.0.1', 'untrusted peer: XFF is reset, not appended');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], 'example.com');
  assert.match(h['x-request-id'], /^[0-9a-f-]{36}$/);
  assert.notEqual(h['x-request-id'], 'spoofed');
  assert.equal(res.headers['x-request-id'], h['x-request-id']);
});

test('encoded paths and query strings pass byte for byte', async () => {
  const path = '/a%2Fb/%7Euser/caf%C3%A9;p=1?q=%2F%3F&x=a+b&&y';
  await request(`${proxy.url}${path}`, { headers: { host: 'example.com' } });
  assert.equal(last().url, path);
});

test('strips hop-by-hop request headers, including those named by Connection', async () => {
  await request(`${proxy.url}/hop-req`, {
    headers: {
      host: 'example.com',
      connection: 'keep-alive, x-private',
      'x-private': 'secret',
      'keep-alive': 'timeout=5',
      'proxy-authorization': 'Basic abc',
      te: 'trailers',
      'x-normal': 'ok',
    },
  });
  const h = last().headers;
  assert.equal(h['x-private'], undefined);
  assert.equal(h['proxy-authorization'], undefined);
  assert.equal(h.te, undefined);
  assert.equal(h['x-normal'], 'ok');
});

test('strips hop-by-hop response headers and upstream identity', async () => {
  const res = await request(`${proxy.url}/hop`, { headers: { host: 'example.com' } });
  assert.equal(res.text, 'hop');
  assert.equal(res.headers['x-secret'], undefined);
  assert.equal(res.headers.server, undefined);
  assert.equal(res.headers['x-powered-by'], undefined);
  assert.equal(res.headers['x-kept'], 'yes');
});

test('rewrites Location and Set-Cookie domains that name the upstream', async () => {
  const res = await request(`${proxy.url}/redirect`, { headers: { host: 'shop.example.org' } });
  assert.equal(res.status, 302);
  assert.equal(res.headers.location, 'http://shop.example.org/landed?x=1');
  const cookies = await request(`${proxy.url}/cookie`, {
    headers: { host: 'shop.example.org:8443' },
  });
  assert.deepEqual(cookies.headers['set-cookie'], [
    'a=1; Domain=shop.example.org; Path=/',
    'b=2; Domain=other.example; Path=/',
  ]);
});

test('streams request bodies: fixed length and chunked', async () => {
  const body = Buffer.alloc(300_000, 7);
  const fixed = await request(`${proxy.url}/echo`, {
    method: 'POST',
    body,
    headers: { host: 'example.com' },
  });
  assert.equal(fixed.body.length, body.length);
  assert.equal(last().headers['content-length'], String(body.length));
  const chunked = await request(`${proxy.url}/echo`, {
    method: 'PUT',
    body,
    headers: { host: 'example.com', 'transfer-encoding': 'chunked' },
  });
  assert.equal(chunked.body.length, body.length);
  assert.ok(last().body.equals(body));
});

test('HEAD is forwarded and gets no body', async () => {
  const res = await request(`${proxy.url}/head`, {
    method: 'HEAD',
    headers: { host: 'example.com' },
  });
  assert.equal(res.status, 200);
  assert.equal(res.body.length, 0);
  assert.equal(last().method, 'HEAD');
});

test('forwards trailers on chunked responses', async () => {
  const res = await request(`${proxy.url}/trailers`, {
    headers: { host: 'example.com', te: 'trailers' },
  });
  assert.equal(res.text, 'part1');
  assert.equal(res.trailers['x-checksum'], 'abc');
});

test('rewrite strips and adds prefixes; header operations apply both ways', async () => {
  const res = await request(`${proxy.url}/api/users?id=3`, {
    headers: { host: 'x', cookie: 'session=1', 'x-env': 'client-value' },
  });
  assert.equal(last().url, '/v2/users?id=3');
  const h = last().headers;
  assert.equal(h['x-env'], 'prod');
  assert.equal(h['x-client'], '127.0.0.1');
  assert.equal(h['x-multi'], 'two');
  assert.equal(h.cookie, undefined);
  assert.equal(res.headers['x-frame-options'], 'DENY');
  assert.equal(res.headers['x-added'], res.headers['x-request-id']);
  assert.equal(res.headers['x-origin'], undefined);
});

test('hostHeader overrides the Host sent upstream', async () => {
  await request(`${proxy.url}/fixed`, { headers: { host: 'public.example' } });
  assert.equal(last().headers.host, 'backend.internal');
});

test('respond and redirect routes, with placeholders', async () => {
  const pong = await request(`${proxy.url}/ping?z=1`);
  assert.equal(pong.status, 200);
  assert.equal(pong.text, 'pong {literal}\n', 'bodies are literal: JSON braces stay as written');
  assert.equal(pong.headers['x-uri'], 'GET /ping?z=1');
  assert.equal(pong.headers['x-who'], '127.0.0.1');
  const moved = await request(`${proxy.url}/old/page?a=b`, { headers: { host: 'site.test' } });
  assert.equal(moved.status, 308);
  assert.equal(moved.headers.location, 'https://site.test/new/old/page?a=b');
});

test('404 when no route matches, with a body that names nothing internal', async () => {
  const res = await request(`${proxy.url}/nothing`, { headers: { host: 'unknown.test' } });
  assert.equal(res.status, 404);
  assert.doesNotMatch(res.text, /127\.0\.0\.1|app/);
  const wrongMethod = await request(`${proxy.url}/post-only`, {
    headers: { host: 'unknown.test' },
  });
  assert.equal(wrongMethod.status, 404);
});

test('keep-alive: many client requests reuse few upstream connections', async () => {
  const before = origin.server.connections;
  const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 4 });
  await Promise.all(
    Array.from({ length: 200 }, () =>
      request(`${proxy.url}/ka`, { headers: { host: 'example.com' }, agent }),
    ),
  );
  agent.destroy();
  const opened = origin.server.connections - before;
  assert.ok(opened <= 8, `opened ${opened} upstream connections for 200 requests`);
});

test('100-continue: the client gets 100 before sending, then the proxied answer', async () => {
  const net = await import('node:net');
  const socket = net.connect(proxy.port, '127.0.0.1');
  socket.setEncoding('latin1');
  let got = '';
  socket.on('data', (d) => (got += d));
  socket.write(
    'POST /continue HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n',
  );
  while (!got.includes('\r\n\r\n')) await new Promise((r) => socket.once('data', r));
  assert.match(got, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
  socket.end('12345');
  await new Promise((r) => socket.once('close', r));
  assert.match(got, /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\n(5\r\n)?12345/);
  assert.equal(last().headers.expect, undefined, 'Expect is answered by the proxy, not forwarded');
  assert.equal(last().body.toString(), '12345');
});

test('absolute-form targets: the authority replaces Host and the upstream gets origin-form', async () => {
  const { rawRequest } = await import('./helpers.mjs');
  const out = await rawRequest(
    proxy.port,
    'GET http://Example.com/abs/path?q=1 HTTP/1.1\r\nHost: ignored.test\r\nConnection: close\r\n\r\n',
  );
  assert.match(out, /^HTTP\/1\.1 200/);
  assert.equal(last().url, '/abs/path?q=1');
  assert.equal(last().headers.host, 'Example.com');
});

test('HTTP/1.0 without Host: the upstream gets its own authority as Host', async () => {
  const { rawRequest } = await import('./helpers.mjs');
  const p = await startProxyTo(origin.url);
  try {
    const out = await rawRequest(p.port, 'GET /v10 HTTP/1.0\r\n\r\n');
    assert.match(out, /^HTTP\/1\.1 200/);
    assert.equal(last().headers.host, `127.0.0.1:${origin.port}`);
  } finally {
    await p.close();
  }
});

test('requestHeaders may set Host and replace or remove the X-Forwarded-* the proxy adds', async () => {
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - upstream: app
    requestHeaders: { set: { Host: "internal.{host}", X-Request-Id: "fixed" }, remove: [X-Forwarded-Host] }
`);
  try {
    const res = await request(`${p.url}/h`, { headers: { host: 'pub.test' } });
    assert.equal(res.status, 200);
    const h = last().headers;
    assert.equal(h.host, 'internal.pub.test');
    assert.equal(h['x-request-id'], 'fixed');
    assert.equal(h['x-forwarded-host'], undefined);
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
  } finally {
    await p.close();
  }
});

test('behind a trusted proxy, X-Forwarded-For is extended by the peer and the request id is kept', async () => {
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
trustedProxies: [127.0.0.1/32]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, responseHeaders: { set: { X-Client: "{client_ip}" } } }]
`);
  try {
    const res = await request(`${p.url}/t`, {
      headers: {
        'x-forwarded-for': '203.0.113.7',
        'x-request-id': 'abc-123',
        'x-forwarded-proto': 'https',
      },
    });
    assert.equal(res.headers['x-client'], '203.0.113.7');
    assert.equal(res.headers['x-request-id'], 'abc-123');
    const h = last().headers;
    assert.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'https');
    assert.equal(h['x-request-id'], 'abc-123');
  } finally {
    await p.close();
  }
});
