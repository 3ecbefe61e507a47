import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import diagnostics_channel from 'node:diagnostics_channel';
import { startOrigin, startProxy, request } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** An origin that answers with its name and counts what it saw, by method. */
async function origin(name, handler) {
  const seen = [];
  const o = await startOrigin((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method, body: Buffer.concat(chunks).toString() });
      if (handler) handler(req, res, Buffer.concat(chunks));
      else res.end(name);
    });
  });
  o.seen = seen;
  cleanups.push(o.close);
  return o;
}

async function deadUrl() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

async function proxy(servers, upstreamExtra = '', readTimeout = '1s') {
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    readTimeout: ${readTimeout}
    servers: [${servers.map((u) => `{ url: "${u}" }`).join(', ')}]
    ${upstreamExtra}
routes: [{ upstream: app }]
`);
  cleanups.push(p.close);
  return p;
}

function watch(channelName) {
  const events = [];
  const fn = (m) => events.push(m);
  diagnostics_channel.subscribe(channelName, fn);
  cleanups.push(() => diagnostics_channel.unsubscribe(channelName, fn));
  return events;
}

test('a GET answered 503 is retried once on the other server, never the same one twice', async () => {
  const bad = await origin('bad', (req, res) => {
    res.statusCode = 503;
    res.end('busy');
  });
  const good = await origin('good');
  const p = await proxy([bad.url, good.url], 'retries: { attempts: 2 }');
  const retries = watch('switchyard:upstream:retry');
  const res = await request(`${p.url}/x`);
  assert.equal(res.status, 200);
  assert.equal(res.text, 'good');
  assert.equal(bad.seen.length, 1);
  assert.equal(good.seen.length, 1);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].server, bad.url);
  assert.equal(retries[0].reason, '503');
});

test('a POST answered 503 is passed through, not retried', async () => {
  const bad = await origin('bad', (req, res) => {
    res.statusCode = 503;
    res.end('busy');
  });
  const good = await origin('good');
  const p = await proxy([bad.url, good.url], 'retries: { attempts: 2 }');
  const res = await request(`${p.url}/x`, { method: 'POST', body: 'hello' });
  assert.equal(res.status, 503);
  assert.equal(res.text, 'busy');
  assert.equal(bad.seen.length, 1);
  assert.equal(good.seen.length, 0);
});

test('a POST whose connection was refused is retried with its body intact', async () => {
  const good = await origin('good');
  const p = await proxy([await deadUrl(), good.url], 'retries: { attempts: 1 }');
  const res = await request(`${p.url}/x`, { method: 'POST', body: 'payload-123' });
  assert.equal(res.status, 200);
  assert.equal(res.text, 'good');
  assert.deepEqual(good.seen, [{ method: 'POST', body: 'payload-123' }]);
});

test('a body over retries.maxBodySize is streamed and never retried', async () => {
  const good = await origin('good');
  const p = await proxy([await deadUrl(), good.url], 'retries: { attempts: 1, maxBodySize: 10 }');
  const res = await request(`${p.url}/x`, { method: 'PUT', body: 'x'.repeat(11) });
  assert.equal(res.status, 502);
  assert.equal(good.seen.length, 0);
  // Under the limit the same request is replayed on the second server.
  const small = await request(`${p.url}/x`, { method: 'PUT', body: 'x'.repeat(10) });
  assert.equal(small.status, 200);
});

test('without retries configured a refused connection is a 502', async () => {
  const good = await origin('good');
  const p = await proxy([await deadUrl(), good.url]);
  assert.equal((await request(`${p.url}/x`)).status, 502);
});

test('a GET that times out is retried on another server', async () => {
  const slow = await origin('slow', () => {});
  const good = await origin('good');
  const p = await proxy([slow.url, good.url], 'retries: { attempts: 1 }', '200ms');
  const res = await request(`${p.url}/x`);
  assert.equal(res.status, 200);
  assert.equal(res.text, 'good');
});

test('no retry once response bytes reached the client', async () => {
  const broken = await origin('broken', (req, res) => {
    res.writeHead(200, { 'content-length': 100 });
    res.write('partial');
    setTimeout(() => res.socket.destroy(), 20);
  });
  const good = await origin('good');
  const p = await proxy([broken.url, good.url], 'retries: { attempts: 2 }');
  await assert.rejects(request(`${p.url}/x`));
  assert.equal(good.seen.length, 0);
});

test('the retry budget caps retries: budget 0 leaves only the reserve of 10', async () => {
  const bad = await origin('bad', (req, res) => {
    res.statusCode = 502;
    res.end();
  });
  const good = await origin('good');
  const p = await proxy([bad.url, good.url], 'retries: { attempts: 1, budget: 0 }');
  const statuses = [];
  // Round-robin alternates; every request that starts on `bad` needs a retry.
  for (let i = 0; i < 30; i++) statuses.push((await request(`${p.url}/x`)).status);
  const state = p.proxy.runtime.groups.get('app').state;
  assert.equal(statuses.filter((s) => s === 502).length, 5);
  assert.equal(state.retriesDenied, 5);
  assert.equal(bad.seen.length, 15);
});

test('retryOn narrows what is retried', async () => {
  const bad = await origin('bad', (req, res) => {
    res.statusCode = 503;
    res.end();
  });
  const good = await origin('good');
  const p = await proxy(
    [bad.url, good.url],
    'retries: { attempts: 1, retryOn: [connect-failure, 502] }',
  );
  assert.equal((await request(`${p.url}/x`)).status, 503);
});

test('a server killed mid-traffic causes zero failed GETs', async () => {
  const names = ['a', 'b', 'c'];
  const origins = await Promise.all(
    names.map((n) => origin(n, (req, res) => setTimeout(() => res.end(n), 5))),
  );
  const p = await proxy(
    origins.map((o) => o.url),
    'retries: { attempts: 2 }\n    passiveHealth: { maxFails: 2, window: 10s, ejectFor: 30s }',
  );
  const results = [];
  let sent = 0;
  const total = 300;
  let killed = false;
  async function worker() {
    while (sent < total) {
      sent++;
      if (!killed && sent >= total / 3) {
        killed = true;
        void origins[1].close();
      }
      try {
        results.push((await request(`${p.url}/k`)).status);
      } catch (e) {
        results.push(String(e));
      }
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker));
  assert.equal(results.length, total);
  assert.deepEqual(
    results.filter((r) => r !== 200),
    [],
  );
  const host = p.proxy.runtime.groups.get('app').hosts[1];
  assert.equal(host.snapshot().ejected, true);
});
