// Rate limiting: GCRA decisions with an injected clock, the bounded memory store, the filter end
// to end (429, Retry-After, RateLimit headers, keys, delay mode), and the Redis store with a real
// redis-server started here: two proxies sharing one limit, then Redis killed mid-test.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import {
  configFrom,
  startOrigin,
  startProxy,
  request,
  sparePort,
  startRedis,
  stopRedis,
} from './helpers.mjs';
import {
  gcraDecide,
  gcraLimit,
  MemoryRateLimitStore,
  storeErrorFallback,
} from '../dist/filters/ratelimit/index.js';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let origin;
let hits = 0;
before(async () => {
  origin = await startOrigin((req, res) => {
    hits++;
    res.end('ok');
  });
  cleanups.push(origin.close);
});

async function proxyWith(rateLimit, extra = '') {
  const p = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - name: limited
    upstream: app
    rateLimit: ${rateLimit}
${extra}
`);
  cleanups.push(p.close);
  return p;
}

describe('GCRA', () => {
  test('burst + 1 at once, then one per interval', () => {
    const limit = gcraLimit(10, 1000, 2); // 100 ms interval, 2 extra at once
    let tat = 0;
    const at = (now) => {
      const { decision, newTat } = gcraDecide(tat, now, limit);
      if (newTat !== undefined) tat = newTat;
      return decision;
    };
    const seq = [at(1000), at(1000), at(1000)].map((d) => [d.allowed, d.remaining]);
    assert.deepEqual(seq, [
      [true, 2],
      [true, 1],
      [true, 0],
    ]);
    const refused = at(1000);
    assert.equal(refused.allowed, false);
    assert.equal(refused.retryAfterMs, 100);
    assert.equal(at(1099).allowed, false, 'not refilled before the interval');
    assert.equal(at(1100).allowed, true, 'one request per interval after the burst');
    assert.equal(at(1100).allowed, false);
    const later = at(5000);
    assert.deepEqual([later.allowed, later.remaining], [true, 2], 'fully refilled after idling');
  });

  test('delay mode admits within maxDelay with the wait to apply', () => {
    const limit = gcraLimit(10, 1000, 0, 250);
    let tat = 0;
    const waits = [];
    for (let i = 0; i < 5; i++) {
      const { decision, newTat } = gcraDecide(tat, 0, limit);
      if (newTat !== undefined) tat = newTat;
      waits.push(decision.allowed ? decision.delayMs : -1);
    }
    assert.deepEqual(waits, [0, 100, 200, -1, -1]);
  });

  test('the memory store is bounded by maxKeys', () => {
    const store = new MemoryRateLimitStore({ maxKeys: 100, now: () => 0 });
    const limit = gcraLimit(1, 1000, 0);
    for (let i = 0; i < 5000; i++) store.take(`k${i}`, limit);
    assert.equal(store.size, 100);
    assert.equal(store.take('k4999', limit).allowed, false, 'recent keys are remembered');
  });
});

describe('rateLimit filter (memory store)', () => {
  test('burst is served, then 429 with Retry-After and IETF headers; origin not reached', async () => {
    const p = await proxyWith('{ rate: 1/m, burst: 2 }');
    const before = hits;
    const statuses = [];
    let last;
    for (let i = 0; i < 5; i++) {
      last = await request(`${p.url}/x`);
      statuses.push(last.status);
      if (i === 0) {
        assert.equal(last.headers['ratelimit-policy'], '"limited";q=1;w=60');
        assert.match(last.headers['ratelimit'], /^"limited";r=2;t=\d+$/);
      }
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    assert.equal(hits - before, 3);
    assert.ok(
      Number(last.headers['retry-after']) >= 1 && Number(last.headers['retry-after']) <= 60,
    );
    assert.match(last.headers['ratelimit'], /^"limited";r=0;t=\d+$/);
    assert.match(last.text, /429 Too Many Requests\nrequest id: /);
  });

  test('refills at the configured rate', async () => {
    const p = await proxyWith('{ rate: 20/s }');
    assert.equal((await request(`${p.url}/`)).status, 200);
    // Back to back: the second comes well inside the 50 ms interval on any machine only if
    // the first was fast; accept either, but after waiting past the interval it must pass.
    let refused = false;
    for (let i = 0; i < 20 && !refused; i++) refused = (await request(`${p.url}/`)).status === 429;
    assert.ok(refused, 'some request inside the interval is refused');
    await new Promise((r) => setTimeout(r, 120));
    assert.equal((await request(`${p.url}/`)).status, 200);
  });

  test('each key has its own allowance (header key)', async () => {
    const p = await proxyWith('{ rate: 1/m, key: "{header.x-api-key}" }');
    const as = (key) => request(`${p.url}/`, { headers: { 'x-api-key': key } });
    assert.equal((await as('a')).status, 200);
    assert.equal((await as('a')).status, 429);
    assert.equal((await as('b')).status, 200);
    assert.equal((await as('b')).status, 429);
  });

  test('routes do not share allowances even with the same key', async () => {
    const p = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { name: one, match: { pathPrefix: /one }, upstream: app, rateLimit: { rate: 1/m } }
  - { name: two, upstream: app, rateLimit: { rate: 1/m } }
`);
    cleanups.push(p.close);
    assert.equal((await request(`${p.url}/one`)).status, 200);
    assert.equal((await request(`${p.url}/two`)).status, 200);
    assert.equal((await request(`${p.url}/one`)).status, 429);
  });

  test('delay mode queues requests over the rate instead of refusing them', async () => {
    const p = await proxyWith('{ rate: 10/s, delay: 2s }');
    const started = Date.now();
    const results = await Promise.all([1, 2, 3, 4].map(() => request(`${p.url}/`)));
    assert.deepEqual(
      results.map((r) => r.status),
      [200, 200, 200, 200],
    );
    // Four requests at 10/s need at least 300 ms between the first and the last admission.
    assert.ok(Date.now() - started >= 250, `took ${Date.now() - started} ms`);
    const over = await proxyWith('{ rate: 1/m, delay: 100ms }');
    assert.equal((await request(`${over.url}/`)).status, 200);
    assert.equal((await request(`${over.url}/`)).status, 429, 'past the delay window: refused');
  });

  test('the limit survives a reload (state is shared, not rebuilt)', async () => {
    const p = await proxyWith('{ rate: 1/m }');
    assert.equal((await request(`${p.url}/`)).status, 200);
    await p.proxy.reload(p.proxy.runtime.config);
    assert.equal((await request(`${p.url}/`)).status, 429);
  });
});

// ---------------------------------------------------------------------------------------------
// Redis

describe('store error fallback (onStoreError, failOpen alias)', () => {
  test('default local with Redis, open without; explicit failOpen wins', () => {
    assert.equal(storeErrorFallback({}, true), 'local');
    assert.equal(storeErrorFallback({}, false), 'open');
    assert.equal(storeErrorFallback({ onStoreError: 'closed' }, true), 'closed');
    assert.equal(storeErrorFallback({ onStoreError: 'open' }, true), 'open');
    assert.equal(storeErrorFallback({ onStoreError: 'local' }, false), 'open');
    assert.equal(storeErrorFallback({ onStoreError: 'local', failOpen: true }, true), 'open');
    assert.equal(storeErrorFallback({ onStoreError: 'open', failOpen: false }, true), 'closed');
  });

  test('config accepts local|open|closed and rejects anything else', () => {
    const yaml = (v) => `
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "http://127.0.0.1:1" }] } }
routes:
  - name: r
    upstream: app
    rateLimit: { rate: 10/s, onStoreError: ${v} }
`;
    for (const v of ['local', 'open', 'closed'])
      assert.equal(configFrom(yaml(v)).routes[0].features.rateLimit.onStoreError, v);
    assert.throws(
      () => configFrom(yaml('maybe')),
      /onStoreError: must be one of local, open, closed/,
    );
  });
});

describe('rateLimit filter (redis store)', { timeout: 30000 }, () => {
  let redisPort;
  let redis;
  before(async () => {
    redisPort = await sparePort();
    redis = await startRedis(redisPort);
    cleanups.push(() => stopRedis(redis));
  });

  const redisProxy = async (rateLimit, route = 'shared') => {
    const p = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
rateLimitStore: redis
redis: { url: "redis://127.0.0.1:${redisPort}" }
routes:
  - name: ${route}
    upstream: app
    rateLimit: ${rateLimit}
`);
    cleanups.push(p.close);
    return p;
  };

  test('two instances share one limit', async () => {
    const a = await redisProxy('{ rate: 1/m, burst: 2 }');
    const b = await redisProxy('{ rate: 1/m, burst: 2 }');
    const statuses = [];
    for (const p of [a, b, a, b, a]) statuses.push((await request(`${p.url}/`)).status);
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    const refused = await request(`${b.url}/`);
    assert.match(refused.headers['ratelimit'], /r=0/);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
  });

  test('Redis killed mid-test: local (default), fail open and fail closed answer at once, log and publish', async () => {
    const open = await redisProxy('{ rate: 100/s, failOpen: true }', 'failopen');
    const closed = await redisProxy('{ rate: 100/s, failOpen: false }', 'failclosed');
    // Default (onStoreError: local): the same limit, decided per instance during the outage.
    const local = await redisProxy('{ rate: 1/m, burst: 2 }', 'faillocal');
    // failOpen given explicitly wins over onStoreError.
    const aliasWins = await redisProxy(
      '{ rate: 1/m, burst: 0, onStoreError: local, failOpen: true }',
      'aliaswins',
    );
    const explicitClosed = await redisProxy(
      '{ rate: 100/s, onStoreError: closed }',
      'explicitclosed',
    );
    assert.equal((await request(`${open.url}/`)).status, 200);
    assert.equal((await request(`${closed.url}/`)).status, 200);
    const events = [];
    const onEvent = (m) => events.push(m);
    diagnostics_channel.subscribe('switchyard:ratelimit:store-error', onEvent);
    try {
      await stopRedis(redis);
      const started = Date.now();
      for (let i = 0; i < 3; i++) {
        assert.equal((await request(`${open.url}/`, { timeout: 5000 })).status, 200);
        const r = await request(`${closed.url}/`, { timeout: 5000 });
        assert.equal(r.status, 429);
        assert.ok(r.headers['retry-after']);
      }
      assert.equal((await request(`${explicitClosed.url}/`, { timeout: 5000 })).status, 429);
      // burst + 1 pass on the local store, then 429 with the usual headers.
      const localStatuses = [];
      let refused;
      for (let i = 0; i < 5; i++) {
        const r = await request(`${local.url}/`, { timeout: 5000 });
        localStatuses.push(r.status);
        if (r.status === 429) refused = r;
      }
      assert.deepEqual(localStatuses, [200, 200, 200, 429, 429]);
      assert.ok(Number(refused.headers['retry-after']) >= 1);
      assert.match(refused.headers['ratelimit'], /r=0/);
      for (let i = 0; i < 3; i++)
        assert.equal((await request(`${aliasWins.url}/`, { timeout: 5000 })).status, 200);
      assert.ok(Date.now() - started < 5000, 'no request hangs on the dead store');
      assert.ok(
        events.some((e) => e.failedOpen === true && e.fallback === 'open' && e.store === 'redis'),
      );
      assert.ok(events.some((e) => e.failedOpen === false && e.fallback === 'closed'));
      assert.ok(events.some((e) => e.failedOpen === false && e.fallback === 'local'));
      const lines = [...open.logs, ...closed.logs].map((l) => l.message);
      assert.ok(
        lines.some((m) => /rate limit store (failed|unreachable)/.test(m)),
        `log lines: ${lines.join(' | ')}`,
      );
      assert.ok(
        local.logs.some((l) => /rate limit store failed; limiting locally/.test(l.message)),
        `log lines: ${local.logs.map((l) => l.message).join(' | ')}`,
      );
      // Redis comes back on the same port: decisions resume.
      redis = await startRedis(redisPort);
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = (await request(`${closed.url}/`)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(status, 200, 'fail-closed route serves again once Redis is back');
    } finally {
      diagnostics_channel.unsubscribe('switchyard:ratelimit:store-error', onEvent);
    }
  });
});
