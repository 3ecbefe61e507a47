// routes[].timeouts: per-route overrides of the upstream's readTimeout and connectTimeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, startProxy, request } from './helpers.mjs';

async function setup(routes) {
  const seen = [];
  const origin = await startOrigin((req, res) => {
    seen.push(req.url);
    const delay = Number(new URL(req.url, 'http://x').searchParams.get('delay') ?? 0);
    setTimeout(() => res.end(`done ${req.url}`), delay);
  });
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [{ url: "${origin.url}" }]
    readTimeout: 5s
    connectTimeout: 5s
    # One connection per server: a second request waits for it.
    circuitBreaker: { maxConnections: 1 }
routes:
${routes}
`);
  return {
    proxy,
    seen,
    close: async () => {
      await proxy.close();
      await origin.close();
    },
  };
}

test('timeouts.read on a route overrides the upstream readTimeout', async () => {
  const { proxy, close } = await setup(`
  - { match: { pathPrefix: /fast }, upstream: app, timeouts: { read: 100ms } }
  - { upstream: app }
`);
  try {
    const started = Date.now();
    const cut = await request(`${proxy.url}/fast?delay=1000`);
    assert.equal(cut.status, 504);
    assert.ok(Date.now() - started < 900, 'the route timeout, not the upstream one, ran out');
    const slow = await request(`${proxy.url}/other?delay=300`);
    assert.equal(slow.status, 200);
  } finally {
    await close();
  }
});

test('timeouts.connect on a route bounds the wait for a connection: 504', async () => {
  const { proxy, seen, close } = await setup(`
  - { match: { pathPrefix: /quick }, upstream: app, timeouts: { connect: 150ms } }
  - { upstream: app }
`);
  try {
    // Holds the only connection for 800 ms.
    const holding = request(`${proxy.url}/hold?delay=800`);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const quick = await request(`${proxy.url}/quick`);
    const waited = Date.now() - started;
    assert.equal(quick.status, 504);
    assert.ok(waited >= 100 && waited < 700, `gave up after the route's 150 ms (${waited} ms)`);
    // A route without the override waits for the connection and is served.
    const patient = await request(`${proxy.url}/patient`);
    assert.equal(patient.status, 200);
    assert.equal(patient.text, 'done /patient');
    assert.equal((await holding).status, 200);
    // The connection is fine afterwards: the abandoned attempt never reached the server.
    const again = await request(`${proxy.url}/quick`);
    assert.equal(again.status, 200);
    assert.equal(again.text, 'done /quick');
    assert.deepEqual(seen, ['/hold?delay=800', '/patient', '/quick']);
  } finally {
    await close();
  }
});
