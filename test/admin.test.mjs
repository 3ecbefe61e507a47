// The admin listener as in the contract: bearer-token auth, every endpoint, JSON errors, the
// loopback guard, readiness, drain/enable, cache purge hook and reload through the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOrigin, startProxy, request, configFrom } from './helpers.mjs';
import { channels } from '../dist/core/events.js';
import { AdminServer } from '../dist/admin/server.js';

const TOKEN = 's3cret-token';

function json(url, { method = 'GET', token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  return request(url, {
    method,
    headers: h,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  }).then((res) => ({
    ...res,
    json: res.headers['content-type']?.startsWith('application/json')
      ? JSON.parse(res.text)
      : undefined,
  }));
}

async function setup(extra = '') {
  const a = await startOrigin((req, res) => res.end('A'));
  const b = await startOrigin((req, res) => res.end('B'));
  const proxy = await startProxy(
    `
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [{ url: "${a.url}" }, { url: "${b.url}" }]
routes: [{ name: app, upstream: app }]
admin: { address: "127.0.0.1:0", token: "\${ADMIN_TOKEN}" }
${extra}`,
    { ADMIN_TOKEN: TOKEN },
  );
  const admin = proxy.proxy.adminUrl();
  return {
    proxy,
    admin,
    a,
    b,
    close: async () => {
      await proxy.close();
      await a.close();
      await b.close();
    },
  };
}

test('token auth: 401 JSON without or with a wrong token, on every endpoint', async () => {
  const s = await setup();
  try {
    const endpoints = [
      ['GET', '/metrics'],
      ['GET', '/api/status'],
      ['GET', '/api/upstreams'],
      ['POST', '/api/upstreams/app/drain'],
      ['POST', '/api/upstreams/app/enable'],
      ['POST', '/api/cache/purge'],
      ['POST', '/api/reload'],
      ['GET', '/api/events'],
      ['GET', '/api/dashboard'],
      ['GET', '/healthz'],
      ['GET', '/readyz'],
      ['GET', '/'],
      ['GET', '/nope'],
    ];
    for (const [method, path] of endpoints) {
      for (const token of [undefined, 'wrong', `${TOKEN}x`, TOKEN.slice(0, -1), '']) {
        const res = await json(`${s.admin}${path}`, {
          method,
          token,
          body: method === 'POST' ? {} : undefined,
        });
        assert.equal(res.status, 401, `${method} ${path} with ${token}`);
        assert.equal(res.json.error, 'unauthorized');
        assert.match(res.headers['www-authenticate'], /^Bearer /);
      }
    }
    // Basic auth with the token as password is not accepted either.
    const basic = await request(`${s.admin}/api/status`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
    });
    assert.equal(basic.status, 401);
    const ok = await json(`${s.admin}/api/status`, { token: TOKEN });
    assert.equal(ok.status, 200);
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    const lower = await request(`${s.admin}/api/status`, {
      headers: { authorization: `bearer ${TOKEN}` },
    });
    assert.equal(lower.status, 200);
  } finally {
    await s.close();
  }
});

test('GET /api/status, /api/upstreams, /healthz, /readyz, /metrics', async () => {
  const s = await setup();
  try {
    const status = await json(`${s.admin}/api/status`, { token: TOKEN });
    assert.equal(status.status, 200);
    assert.equal(status.headers['cache-control'], 'no-store');
    assert.deepEqual(Object.keys(status.json).sort(), [
      'configLoadedAt',
      'uptimeSeconds',
      'version',
      'workers',
    ]);
    assert.match(status.json.version, /^\d+\.\d+\.\d+/);
    assert.equal(typeof status.json.uptimeSeconds, 'number');
    assert.equal(status.json.workers, 1);
    assert.ok(!Number.isNaN(Date.parse(status.json.configLoadedAt)));

    await request(s.proxy.url);
    const ups = await json(`${s.admin}/api/upstreams`, { token: TOKEN });
    assert.equal(ups.status, 200);
    assert.equal(ups.json.upstreams.length, 1);
    const [app] = ups.json.upstreams;
    assert.equal(app.name, 'app');
    assert.equal(app.balancer, 'round-robin');
    assert.deepEqual(
      app.servers.map((x) => x.url),
      [s.a.url, s.b.url],
    );
    for (const server of app.servers) {
      assert.equal(server.weight, 1);
      assert.equal(server.state, 'up');
      assert.equal(server.healthy, true);
      assert.equal(server.activeRequests, 0);
    }

    const health = await json(`${s.admin}/healthz`, { token: TOKEN });
    assert.equal(health.status, 200);
    assert.deepEqual(health.json, { status: 'ok' });
    const ready = await json(`${s.admin}/readyz`, { token: TOKEN });
    assert.equal(ready.status, 200);
    assert.equal(ready.json.ready, true);

    const metrics = await request(`${s.admin}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(metrics.status, 200);
    for (const name of [
      'switchyard_requests_total{route="app",upstream="app",code="200"} 1',
      '# TYPE switchyard_request_duration_seconds histogram',
      `switchyard_upstream_server_healthy{upstream="app",server="${s.a.url}"} 1`,
      'switchyard_cache_requests_total{result="hit"} 0',
      'switchyard_ratelimited_total{route="app"} 0',
      'switchyard_active_connections{listener="web"}',
    ])
      assert.ok(metrics.text.includes(name), `metrics include ${name}`);

    const missing = await json(`${s.admin}/api/nothing`, { token: TOKEN });
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error, 'not_found');
    const wrongMethod = await json(`${s.admin}/api/status`, { method: 'DELETE', token: TOKEN });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.allow, 'GET');
  } finally {
    await s.close();
  }
});

test('drain and enable a server; errors are JSON', async () => {
  const s = await setup();
  try {
    const drain = await json(`${s.admin}/api/upstreams/app/drain`, {
      method: 'POST',
      token: TOKEN,
      body: { url: s.a.url },
    });
    assert.equal(drain.status, 200);
    assert.equal(drain.json.server.state, 'draining');
    // A drained server takes no new requests.
    const bodies = [];
    for (let i = 0; i < 6; i++) bodies.push((await request(s.proxy.url)).text);
    assert.deepEqual(new Set(bodies), new Set(['B']));
    const listed = await json(`${s.admin}/api/upstreams`, { token: TOKEN });
    assert.deepEqual(
      listed.json.upstreams[0].servers.map((x) => x.state),
      ['draining', 'up'],
    );

    // The same origin written another way (upper-case scheme, trailing slash) is found too.
    const enable = await json(`${s.admin}/api/upstreams/app/enable`, {
      method: 'POST',
      token: TOKEN,
      body: { url: `${s.a.url.replace('http://', 'HTTP://')}/` },
    });
    assert.equal(enable.status, 200);
    assert.equal(enable.json.server.state, 'up');
    const after = [];
    for (let i = 0; i < 6; i++) after.push((await request(s.proxy.url)).text);
    assert.ok(after.includes('A'), 'the enabled server takes requests again');

    const cases = [
      ['/api/upstreams/nope/drain', { url: s.a.url }, 404, 'unknown_upstream'],
      ['/api/upstreams/app/drain', { url: 'http://127.0.0.1:1' }, 404, 'unknown_server'],
      ['/api/upstreams/app/drain', {}, 400, 'bad_request'],
      ['/api/upstreams/app/drain', '{not json', 400, 'bad_json'],
      ['/api/upstreams/app/drain', 'x'.repeat(70 * 1024), 413, 'too_large'],
    ];
    for (const [path, body, status, code] of cases) {
      const res = await json(`${s.admin}${path}`, { method: 'POST', token: TOKEN, body });
      assert.equal(res.status, status, `${path} ${String(JSON.stringify(body)).slice(0, 40)}`);
      assert.equal(res.json.error, code);
      assert.equal(typeof res.json.message, 'string');
    }
    const get = await json(`${s.admin}/api/upstreams/app/drain`, { token: TOKEN });
    assert.equal(get.status, 405);
  } finally {
    await s.close();
  }
});

test('cache purge: 501 without a cache, the registered hook with one, 400 on a bad body', async () => {
  const s = await setup();
  const seen = [];
  const hook = (message) => {
    seen.push(message.purge);
    message.result = Promise.resolve(7);
  };
  try {
    assert.equal(channels.cachePurge.hasSubscribers, false, 'no route caches here');
    const none = await json(`${s.admin}/api/cache/purge`, {
      method: 'POST',
      token: TOKEN,
      body: { all: true },
    });
    assert.equal(none.status, 501);
    assert.equal(none.json.error, 'not_implemented');
    channels.cachePurge.subscribe(hook);
    for (const body of [
      { url: 'http://h.test/a' },
      { prefix: 'http://h.test/static/' },
      { tag: 'product-42' },
      { all: true },
    ]) {
      const res = await json(`${s.admin}/api/cache/purge`, { method: 'POST', token: TOKEN, body });
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(res.json.purged, 7);
    }
    assert.deepEqual(seen, [
      { url: 'http://h.test/a' },
      { prefix: 'http://h.test/static/' },
      { tag: 'product-42' },
      { all: true },
    ]);
    for (const body of [
      {},
      { url: 'not a url' },
      { all: 'yes' },
      [1],
      { url: 'ftp://x/' },
      { tag: '' },
      { tag: 42 },
    ]) {
      const res = await json(`${s.admin}/api/cache/purge`, { method: 'POST', token: TOKEN, body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.json.error, 'bad_request');
    }
  } finally {
    channels.cachePurge.unsubscribe(hook);
    await s.close();
  }
});

test('cache purge reaches the cache feature when a route caches', async () => {
  const origin = await startOrigin((req, res) =>
    res.writeHead(200, { 'cache-control': 'max-age=60' }).end(String(Date.now())),
  );
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ name: cached, upstream: app, cache: true }]
cache: { store: memory }
admin: { address: "127.0.0.1:0" }
`);
  try {
    const first = await request(`${proxy.url}/x`);
    assert.equal((await request(`${proxy.url}/x`)).text, first.text, 'cached');
    const res = await json(`${proxy.proxy.adminUrl()}/api/cache/purge`, {
      method: 'POST',
      body: { all: true },
    });
    assert.equal(res.status, 200);
    assert.equal(typeof res.json.purged, 'number');
    assert.notEqual((await request(`${proxy.url}/x`)).text, first.text, 'purged');
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test('cache purge by tag removes only the entries carrying that Cache-Tag', async () => {
  const origin = await startOrigin((req, res) =>
    res
      .writeHead(200, {
        'cache-control': 'max-age=60',
        'cache-tag': req.url.startsWith('/blue') ? 'blue, shared' : 'green',
      })
      .end(`${req.url} ${process.hrtime.bigint()}`),
  );
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ name: cached, upstream: app, cache: true }]
cache: { store: memory }
admin: { address: "127.0.0.1:0" }
`);
  try {
    const blue = await request(`${proxy.url}/blue`);
    const green = await request(`${proxy.url}/green`);
    assert.equal((await request(`${proxy.url}/blue`)).text, blue.text, 'blue cached');
    const res = await json(`${proxy.proxy.adminUrl()}/api/cache/purge`, {
      method: 'POST',
      body: { tag: ' blue ' },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.purged, 1);
    assert.notEqual((await request(`${proxy.url}/blue`)).text, blue.text, 'blue purged');
    assert.equal((await request(`${proxy.url}/green`)).text, green.text, 'green kept');
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test('readyz answers 503 while the proxy drains', async () => {
  let release;
  const held = new Promise((r) => (release = r));
  const origin = await startOrigin(async (req, res) => {
    await held;
    res.end('late');
  });
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
admin: { address: "127.0.0.1:0" }
`);
  try {
    const admin = proxy.proxy.adminUrl();
    assert.equal((await json(`${admin}/readyz`)).status, 200);
    const inflight = request(proxy.url);
    await new Promise((r) => origin.server.once('request', r));
    const stopping = proxy.proxy.stop(10_000);
    const ready = await json(`${admin}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(ready.json.ready, false);
    assert.equal((await json(`${admin}/healthz`)).status, 200, 'still alive while draining');
    release();
    assert.equal((await inflight).text, 'late');
    await stopping;
  } finally {
    release();
    await proxy.close();
    await origin.close();
  }
});

test('POST /api/reload without a reload callback answers 501', async () => {
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ respond: { status: 200 } }]
admin: { address: "127.0.0.1:0" }
`);
  try {
    const res = await json(`${proxy.proxy.adminUrl()}/api/reload`, { method: 'POST' });
    assert.equal(res.status, 501);
    assert.equal(res.json.error, 'not_implemented');
  } finally {
    await proxy.close();
  }
});

test('no token: validation and the runtime guard refuse a non-loopback admin address', () => {
  assert.throws(
    () =>
      configFrom(`
listeners: [{ address: "127.0.0.1:0" }]
routes: [{ respond: { status: 200 } }]
admin: { address: "0.0.0.0:9901" }
`),
    /admin\.address: an admin listener without admin\.token must bind to loopback/,
  );
  const deps = {};
  for (const host of ['0.0.0.0', '', '10.1.2.3', '::']) {
    assert.throws(
      () => new AdminServer({ address: { host, port: 0 }, addressText: `${host}:0` }, deps),
      /refusing to start the admin listener .* without admin\.token/,
      host,
    );
  }
  for (const host of ['127.0.0.1', '::1', 'localhost']) {
    const admin = new AdminServer({ address: { host, port: 0 }, addressText: `${host}:0` }, deps);
    assert.ok(admin);
  }
  // With a token any address is allowed.
  assert.ok(
    new AdminServer({ address: { host: '0.0.0.0', port: 0 }, addressText: ':0', token: 't' }, deps),
  );
});

test('admin without a token on loopback serves without auth', async () => {
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ respond: { status: 200 } }]
admin: { address: "127.0.0.1:0" }
`);
  try {
    assert.equal((await json(`${proxy.proxy.adminUrl()}/api/status`)).status, 200);
  } finally {
    await proxy.close();
  }
});

test('SSE stream: a snapshot at once and one per second after', async () => {
  const s = await setup();
  try {
    const frames = [];
    await new Promise((resolve, reject) => {
      const req = http.get(
        `${s.admin}/api/events`,
        { headers: { authorization: `Bearer ${TOKEN}` } },
        (res) => {
          assert.equal(res.statusCode, 200);
          assert.match(res.headers['content-type'], /^text\/event-stream/);
          let buffer = '';
          res.on('data', (chunk) => {
            buffer += chunk;
            let end;
            while ((end = buffer.indexOf('\n\n')) !== -1) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const data = frame.split('\n').find((l) => l.startsWith('data: '));
              if (data) frames.push(JSON.parse(data.slice(6)));
              if (frames.length === 2) {
                req.destroy();
                resolve();
              }
            }
          });
        },
      );
      req.on('error', (err) => (frames.length >= 2 ? resolve() : reject(err)));
    });
    const [first] = frames;
    assert.equal(first.upstreams[0].name, 'app');
    assert.equal(first.status.workers, 1);
    assert.ok(Array.isArray(first.history));
    assert.ok(Array.isArray(first.routes));
    assert.deepEqual(
      first.routes.map((r) => r.name),
      ['app'],
    );
    assert.ok('cacheHitRatio' in first.totals);
  } finally {
    await s.close();
  }
});

test('CLI: POST /api/reload applies a valid config and answers the errors of an invalid one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-admin-'));
  const configPath = join(dir, 'switchyard.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  const write = (body) =>
    writeFileSync(
      configPath,
      `listeners: [{ name: web, address: "127.0.0.1:${port}" }]
admin: { address: "127.0.0.1:${adminPort}", token: "${TOKEN}" }
routes:
  - { name: r, respond: { status: 200, body: "${body}" } }
`,
    );
  write('one');
  const child = spawn(process.execPath, ['bin/switchyard', 'run', '-c', configPath], {
    cwd: new URL('..', import.meta.url),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start: ${stderr}`)), 10_000);
      const check = () => {
        if (stderr.includes(`listening on http://127.0.0.1:${adminPort}`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stderr.on('data', check);
      check();
    });
    assert.ok(
      stderr.includes(`listening on http://127.0.0.1:${port}\n`),
      'plain start-up line kept',
    );
    const admin = `http://127.0.0.1:${adminPort}`;
    assert.equal((await request(`http://127.0.0.1:${port}/`)).text, 'one');
    write('two');
    const ok = await json(`${admin}/api/reload`, { method: 'POST', token: TOKEN });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.reloaded, true);
    assert.ok(Array.isArray(ok.json.changes));
    assert.equal((await request(`http://127.0.0.1:${port}/`)).text, 'two');

    writeFileSync(
      configPath,
      `listeners: [{ name: web, address: "127.0.0.1:${port}" }]
admin: { address: "127.0.0.1:${adminPort}", token: "${TOKEN}" }
routes:
  - { name: r, upstream: nowhere }
`,
    );
    const bad = await json(`${admin}/api/reload`, { method: 'POST', token: TOKEN });
    assert.equal(bad.status, 422);
    assert.equal(bad.json.error, 'invalid_config');
    assert.ok(
      bad.json.errors.some((e) =>
        /routes\[0\]\.upstream: unknown upstream "nowhere" \(\d+:\d+\)/.test(e),
      ),
      bad.json.errors.join('\n'),
    );
    assert.equal(
      (await request(`http://127.0.0.1:${port}/`)).text,
      'two',
      'the old config keeps serving',
    );
    const metrics = await request(`${admin}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.ok(metrics.text.includes('switchyard_config_reloads_total{result="ok"} 1'));
    assert.ok(metrics.text.includes('switchyard_config_reloads_total{result="refused"} 1'));
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
});

async function freePort() {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}
