// Two Switchyard instances (separate processes) sharing state through a real redis-server: one
// rate limit, one cache; then Redis killed under load (no failed or stalled request) and
// restarted (sharing resumes).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startOrigin } from './helpers.mjs';
import { eventually, freePort, get, startCli, startLoad, startRedis } from './cluster-helpers.mjs';

let origin;
let redis;
let redisPort;
const instances = [];
const hits = new Map();
const HOST = { host: 'shared.example' };

const config = (port) => `
listeners: [{ name: web, address: 127.0.0.1:${port} }]
upstreams: { app: { servers: [{ url: ${origin.url} }] } }
routes:
  - name: limited
    match: { pathPrefix: /limited }
    upstream: app
    rateLimit: { rate: 10/m, burst: 9 }
  - name: cached
    match: { pathPrefix: /cached }
    upstream: app
    cache: true
  - name: busy
    upstream: app
    rateLimit: { rate: 100000/s, burst: 10000 }
cache: { store: redis }
rateLimitStore: redis
redis: { url: "redis://127.0.0.1:${redisPort}" }
shutdownTimeout: 2s
`;

before(async () => {
  origin = await startOrigin((req, res) => {
    hits.set(req.url, (hits.get(req.url) ?? 0) + 1);
    res.setHeader('cache-control', 'public, max-age=300');
    res.end(`body of ${req.url}`);
  });
  redisPort = await freePort();
  redis = await startRedis(redisPort);
  const ports = [await freePort(), await freePort()];
  const started = await Promise.all(ports.map((p) => startCli(config(p))));
  started.forEach((sy, i) => instances.push({ sy, url: `http://127.0.0.1:${ports[i]}` }));
});

after(async () => {
  await Promise.all(instances.map((i) => i.sy.stop('SIGKILL')));
  await redis?.kill();
  await origin?.close();
});

describe('two instances, one Redis', () => {
  test('enforce one rate limit between them', async () => {
    const statuses = [];
    for (let i = 0; i < 30; i++)
      statuses.push((await get(`${instances[i % 2].url}/limited/${i}`)).status);
    assert.equal(statuses.filter((s) => s === 200).length, 10, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 429).length, 20);
  });

  test('share cached objects', async () => {
    // Behind one load balancer both instances see the same Host (part of the cache key).
    const first = await get(`${instances[0].url}/cached/a`, { headers: HOST });
    assert.equal(first.status, 200);
    assert.match(first.headers['cache-status'], /fwd=miss/);
    // The entry is written after the response; wait until Redis has it.
    const client = new Redis(`redis://127.0.0.1:${redisPort}`);
    try {
      await eventually(async () => (await client.keys('switchyard:cache:*')).length > 0, {
        what: 'the cache entry in Redis',
      });
    } finally {
      client.disconnect();
    }
    const second = await get(`${instances[1].url}/cached/a`, { headers: HOST });
    assert.match(second.headers['cache-status'], /hit/);
    assert.equal(second.body, 'body of /cached/a');
    assert.equal(hits.get('/cached/a'), 1);
  });

  test('Redis killed under load: no failed request; restarted: sharing resumes', async (t) => {
    const loads = [
      startLoad(`${instances[0].url}/busy`, { concurrency: 3, durationMs: 40_000, pauseMs: 2 }),
      startLoad(`${instances[1].url}/cached/b`, { concurrency: 3, durationMs: 40_000, pauseMs: 2 }),
    ];
    await Promise.all(loads.map((l) => l.progress(50)));
    await redis.kill();
    // While Redis is down each cache lookup waits out its command timeout: ask for fewer.
    await Promise.all([loads[0].progress(200), loads[1].progress(6)]);
    redis = await startRedis(redisPort);
    await Promise.all([loads[0].progress(50), loads[1].progress(6)]);
    const stats = await Promise.all(loads.map((l) => l.stop()));
    for (const s of stats)
      assert.equal(s.failed, 0, `${JSON.stringify(s.statuses)} ${s.errors.join('; ')}`);
    const [limited, cached] = stats.map((s) => Math.round(Math.max(...s.latencies)));
    t.diagnostic(
      `slowest request while Redis was down: rate limit ${limited} ms, cache ${cached} ms`,
    );
    // The rate-limit store fails fast once it knows Redis is down (1 s command timeout before).
    assert.ok(limited < 3000, `a rate-limited request took ${limited} ms`);
    // The cache's Redis store waits up to its 2 s command timeout per call while reconnecting
    // (src/filters/cache/stores/redis.ts); a request makes at most a few calls.
    assert.ok(cached < 10_000, `a cached request took ${cached} ms`);
    // The stores reconnect by themselves: a new object cached by one is a hit on the other.
    let n = 0;
    await eventually(
      async () => {
        const path = `/cached/after-${n++}`;
        await get(`${instances[0].url}${path}`, { headers: HOST });
        const res = await get(`${instances[1].url}${path}`, { headers: HOST });
        return /hit/.test(res.headers['cache-status']);
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'cache sharing to resume after the restart' },
    );
  });
});
