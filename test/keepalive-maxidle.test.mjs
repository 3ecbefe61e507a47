// upstreams[].keepAlive.maxIdle: how many idle keep-alive connections the proxy keeps per server
// (nginx's `keepalive N`); surplus connections are closed when they are still surplus a second
// after their response (HAProxy-like gradual purge), so back-to-back bursts reuse them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startOrigin, startProxy, request } from './helpers.mjs';

const openConnections = (server) =>
  new Promise((resolve, reject) =>
    server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );

async function waitFor(check, what) {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function withProxy(keepAlive, fn) {
  // Slow enough that concurrent requests each need their own connection.
  const origin = await startOrigin((req, res) => setTimeout(() => res.end('ok'), 50));
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [{ url: "${origin.url}" }]
    keepAlive: ${keepAlive}
routes: [{ upstream: app }]
`);
  try {
    await fn(proxy, origin);
  } finally {
    await proxy.close();
    await origin.close();
  }
}

test('surplus idle connections beyond maxIdle are closed, the rest are reused', async () => {
  await withProxy('{ maxIdle: 2, idleTimeout: 30s }', async (proxy, origin) => {
    const first = await Promise.all(Array.from({ length: 6 }, () => request(proxy.url)));
    assert.deepEqual(
      first.map((r) => r.status),
      [200, 200, 200, 200, 200, 200],
    );
    assert.equal(origin.server.connections, 6, 'six concurrent requests opened six connections');
    await waitFor(async () => (await openConnections(origin.server)) === 2, 'two kept connections');
    // The two kept connections serve the next requests: no new connection for them.
    for (let i = 0; i < 4; i++) assert.equal((await request(proxy.url)).status, 200);
    assert.equal(origin.server.connections, 6);
    assert.equal(await openConnections(origin.server), 2);
  });
});

test('a second burst right after the first reuses its surplus connections', async () => {
  await withProxy('{ maxIdle: 2, idleTimeout: 30s }', async (proxy, origin) => {
    for (let burst = 0; burst < 3; burst++) {
      const answers = await Promise.all(Array.from({ length: 6 }, () => request(proxy.url)));
      assert.deepEqual(
        answers.map((r) => r.status),
        [200, 200, 200, 200, 200, 200],
      );
    }
    // Closed at once, the four surplus connections of each burst would be opened again.
    assert.equal(origin.server.connections, 6);
    await waitFor(async () => (await openConnections(origin.server)) === 2, 'two kept connections');
  });
});

test('maxIdle 0 keeps no idle connection: each request opens its own', async () => {
  await withProxy('{ maxIdle: 0 }', async (proxy, origin) => {
    for (let i = 0; i < 3; i++) assert.equal((await request(proxy.url)).status, 200);
    assert.equal(origin.server.connections, 3);
    await waitFor(async () => (await openConnections(origin.server)) === 0, 'no open connection');
  });
});

test('the default (64) keeps every connection of a small burst', async () => {
  await withProxy('{}', async (proxy, origin) => {
    await Promise.all(Array.from({ length: 5 }, () => request(proxy.url)));
    await sleep(100);
    assert.equal(await openConnections(origin.server), 5);
  });
});
