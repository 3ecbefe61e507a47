// Redis-backed stores report their connection on /metrics: switchyard_redis_up{store} follows a
// real redis-server that the test starts, kills and restarts, and
// switchyard_redis_errors_total{store} counts connection errors and failed rate-limit decisions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, startProxy, request } from './helpers.mjs';
import { freePort, startRedis } from './cluster-helpers.mjs';
import { channels } from '../dist/core/events.js';

/** Resolves with the first redisState event of `store` whose `up` is `up`. */
function nextState(store, up) {
  return new Promise((resolve) => {
    const onEvent = (message) => {
      if (message.store !== store || message.up !== up) return;
      channels.redisState.unsubscribe(onEvent);
      resolve(message);
    };
    channels.redisState.subscribe(onEvent);
  });
}

function metricValue(text, name, store) {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{store="${store}"} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

test('switchyard_redis_up and switchyard_redis_errors_total follow Redis going down and up', async () => {
  const origin = await startOrigin((req, res) =>
    res.writeHead(200, { 'cache-control': 'max-age=60' }).end('ok'),
  );
  const port = await freePort();
  let redis = await startRedis(port);
  // Subscribed before the proxy starts, so the first 'ready' of each store is seen.
  const bothUp = () => Promise.all([nextState('cache', true), nextState('ratelimit', true)]);
  let up = bothUp();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - name: limited
    match: { pathPrefix: /limited }
    upstream: app
    rateLimit: { rate: 1000/s, burst: 100 }
  - name: cached
    upstream: app
    cache: true
cache: { store: redis }
rateLimitStore: redis
redis: { url: "redis://127.0.0.1:${port}" }
admin: { address: "127.0.0.1:0" }
`);
  const metrics = async () => (await request(`${proxy.proxy.adminUrl()}/metrics`)).text;
  try {
    await up;
    let text = await metrics();
    assert.equal(metricValue(text, 'switchyard_redis_up', 'cache'), 1, text);
    assert.equal(metricValue(text, 'switchyard_redis_up', 'ratelimit'), 1);
    assert.equal((await request(`${proxy.url}/limited/a`)).status, 200);

    const down = Promise.all([nextState('cache', false), nextState('ratelimit', false)]);
    await redis.kill();
    await down;
    // A decision Redis cannot take fails open (the default) and counts as an error.
    assert.equal((await request(`${proxy.url}/limited/b`)).status, 200);
    text = await metrics();
    assert.equal(metricValue(text, 'switchyard_redis_up', 'cache'), 0, text);
    assert.equal(metricValue(text, 'switchyard_redis_up', 'ratelimit'), 0);
    assert.ok(metricValue(text, 'switchyard_redis_errors_total', 'ratelimit') >= 1, text);
    // The cache's client reports the lost connection (or a failed reconnect) as an error.
    const errorSeen = (async () => {
      for (;;) {
        const event = await nextState('cache', false);
        if (event.error !== undefined) return;
      }
    })();
    if (!(metricValue(await metrics(), 'switchyard_redis_errors_total', 'cache') >= 1))
      await errorSeen;
    assert.ok(metricValue(await metrics(), 'switchyard_redis_errors_total', 'cache') >= 1);

    up = bothUp();
    redis = await startRedis(port);
    await up;
    text = await metrics();
    assert.equal(metricValue(text, 'switchyard_redis_up', 'cache'), 1, text);
    assert.equal(metricValue(text, 'switchyard_redis_up', 'ratelimit'), 1);
  } finally {
    await proxy.close();
    await redis.kill();
    await origin.close();
  }
});
