import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { startOrigin, startProxy, request, configFrom } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** An origin whose /healthz answers `state.status` (and `state.body`), counting checks. */
async function checkedOrigin(name) {
  const state = { status: 200, body: 'ok', checks: [], hang: false };
  const o = await startOrigin((req, res) => {
    if (req.url === '/healthz') {
      state.checks.push({
        method: req.method,
        host: req.headers.host,
        ua: req.headers['user-agent'],
      });
      if (state.hang) return;
      res.statusCode = state.status;
      res.end(state.body);
      return;
    }
    res.end(name);
  });
  cleanups.push(o.close);
  return Object.assign(o, { state });
}

/** Resolves with the first message on `channel` that satisfies `predicate`. */
function nextEvent(channel, predicate) {
  return new Promise((resolve) => {
    const fn = (m) => {
      if (!predicate(m)) return;
      diagnostics_channel.unsubscribe(channel, fn);
      resolve(m);
    };
    diagnostics_channel.subscribe(channel, fn);
  });
}

const yaml = (servers, check) => `
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [${servers.map((s) => `{ url: "${s.url}" }`).join(', ')}]
    healthCheck: ${check}
routes: [{ upstream: app }]
`;

test('rise/fall: down after exactly unhealthyThreshold failures, up after healthyThreshold passes', async () => {
  const a = await checkedOrigin('a');
  const b = await checkedOrigin('b');
  const p = await startProxy(
    yaml(
      [a, b],
      '{ path: /healthz, interval: 30ms, jitter: 5ms, timeout: 500ms, healthyThreshold: 2, unhealthyThreshold: 3 }',
    ),
  );
  cleanups.push(p.close);
  const host = p.proxy.runtime.groups.get('app').hosts[0];
  // Let a few passing checks happen, then start failing.
  await nextEvent('switchyard:health:check', (m) => m.server === a.url && m.ok);
  const failingFrom = a.state.checks.length;
  a.state.status = 500;
  const down = await nextEvent('switchyard:health:change', (m) => m.server === a.url);
  assert.equal(down.healthy, false);
  assert.equal(down.source, 'active');
  assert.equal(a.state.checks.length - failingFrom, 3, 'three failing checks mark it down');
  assert.equal(host.healthy, false);
  for (let i = 0; i < 5; i++) assert.equal((await request(`${p.url}/`)).text, 'b');

  const passingFrom = a.state.checks.length;
  a.state.status = 204;
  const up = await nextEvent('switchyard:health:change', (m) => m.server === a.url);
  assert.equal(up.healthy, true);
  assert.equal(a.state.checks.length - passingFrom, 2, 'two passing checks mark it up');
  const seen = new Set();
  for (let i = 0; i < 4; i++) seen.add((await request(`${p.url}/`)).text);
  assert.deepEqual([...seen].sort(), ['a', 'b']);
});

test('method, host header, expected status range and body regex are honoured', async () => {
  const a = await checkedOrigin('a');
  const b = await checkedOrigin('b');
  b.state.body = 'status: degraded';
  const p = await startProxy(
    yaml(
      [a, b],
      '{ path: /healthz, method: HEAD, host: health.internal, interval: 20ms, unhealthyThreshold: 1, expectStatus: "200-204" }',
    ),
  );
  cleanups.push(p.close);
  await nextEvent('switchyard:health:check', (m) => m.server === a.url);
  assert.equal(a.state.checks[0].method, 'HEAD');
  assert.equal(a.state.checks[0].host, 'health.internal');
  assert.equal(a.state.checks[0].ua, 'switchyard-health-check');
  a.state.status = 302; // outside 200-204
  const down = await nextEvent('switchyard:health:change', (m) => m.server === a.url);
  assert.equal(down.healthy, false);
  await p.close();

  // A body regex: "degraded" does not match ^ok.
  const q = await startProxy(
    yaml([a, b], '{ path: /healthz, interval: 20ms, unhealthyThreshold: 1, body: "^ok" }'),
  );
  cleanups.push(q.close);
  const bad = await nextEvent('switchyard:health:check', (m) => m.server === b.url);
  assert.equal(bad.ok, false);
  const hosts = q.proxy.runtime.groups.get('app').hosts;
  assert.equal(hosts[1].healthy, false);
  assert.equal(hosts[1].lastCheck.error, 'body does not match');
});

test('a check that does not answer within timeout fails', async () => {
  const a = await checkedOrigin('a');
  const b = await checkedOrigin('b');
  a.state.hang = true;
  const p = await startProxy(
    yaml([a, b], '{ path: /healthz, interval: 20ms, timeout: 50ms, unhealthyThreshold: 2 }'),
  );
  cleanups.push(p.close);
  const down = await nextEvent('switchyard:health:change', (m) => m.server === a.url);
  assert.equal(down.healthy, false);
  assert.equal(p.proxy.runtime.groups.get('app').hosts[0].lastCheck.error, 'timeout');
});

test('no healthy server: 503 at once', async () => {
  const a = await checkedOrigin('a');
  a.state.status = 503;
  const p = await startProxy(
    yaml([a], '{ path: /healthz, interval: 20ms, unhealthyThreshold: 1 }'),
  );
  cleanups.push(p.close);
  await nextEvent('switchyard:health:change', (m) => m.server === a.url);
  const res = await request(`${p.url}/`);
  assert.equal(res.status, 503);
  assert.doesNotMatch(res.text, /127\.0\.0\.1/);
});

test('health state survives a reload for servers that stay; removing healthCheck restores them', async () => {
  const a = await checkedOrigin('a');
  const b = await checkedOrigin('b');
  const check = '{ path: /healthz, interval: 20ms, unhealthyThreshold: 1, healthyThreshold: 1000 }';
  const p = await startProxy(yaml([a, b], check));
  cleanups.push(p.close);
  a.state.status = 500;
  await nextEvent('switchyard:health:change', (m) => m.server === a.url);
  a.state.status = 200; // healthy again, but 1000 passes are needed to rise
  const host = p.proxy.runtime.groups.get('app').hosts[0];
  const checker = p.proxy.health.checkerFor(host);
  const reload = async (text) => {
    const next = configFrom(text);
    next.listeners = p.proxy.runtime.config.listeners;
    await p.proxy.reload(next);
  };
  await reload(yaml([a, b], check).replace('routes:', 'trustedProxies: [10.0.0.0/8]\nroutes:'));
  const after = p.proxy.runtime.groups.get('app').hosts[0];
  assert.equal(after, host, 'the same Host');
  assert.equal(after.healthy, false, 'still down after the reload');
  assert.equal(p.proxy.health.checkerFor(host), checker, 'the checker kept running');
  assert.ok(after.checkPasses >= 0);
  for (let i = 0; i < 3; i++) assert.equal((await request(`${p.url}/`)).text, 'b');

  await reload(yaml([a, b], '{}').replace('    healthCheck: {}\n', ''));
  assert.equal(host.healthy, true, 'without active checks nothing would mark it up again');
  assert.equal(p.proxy.health.checkerFor(host), undefined);
});
