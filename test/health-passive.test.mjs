import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import diagnostics_channel from 'node:diagnostics_channel';
import { OutlierDetector } from '../dist/health/passive.js';
import { Host } from '../dist/upstream/host.js';
import { UpstreamGroup } from '../dist/upstream/group.js';
import { startOrigin, startProxy, request } from './helpers.mjs';

const SETTINGS = {
  connectTimeoutMs: 1000,
  keepAliveIdleMs: 1000,
  maxConnections: null,
  protocol: 'http1',
};
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

class FakeClock {
  t = 1_000_000;
  now() {
    return this.t;
  }
}

function makeHosts(n, clock) {
  return Array.from({ length: n }, (_, i) => {
    const h = new Host('app', `http://10.0.0.${i + 1}:80`, 1, false, SETTINGS, clock);
    cleanups.push(() => h.pool.close());
    return h;
  });
}

const PASSIVE = {
  maxFails: 3,
  windowMs: 10_000,
  ejectForMs: 30_000,
  maxEjectForMs: 300_000,
  maxEjectionPercent: 50,
  failOn5xx: false,
};

test('consecutive failures within the window eject; spread-out failures do not', () => {
  const clock = new FakeClock();
  const hosts = makeHosts(4, clock);
  const d = new OutlierDetector(PASSIVE, hosts);
  d.onFailure(hosts[0]);
  clock.t += 6000;
  d.onFailure(hosts[0]);
  clock.t += 6000; // 12 s after the first: a new streak starts
  d.onFailure(hosts[0]);
  assert.equal(hosts[0].available, true);
  d.onFailure(hosts[0]);
  d.onFailure(hosts[0]);
  assert.equal(hosts[0].available, false, 'three within the window');
  assert.equal(hosts[0].snapshot().ejected, true);
  assert.equal(hosts[0].snapshot().ejectedForMs, 30_000);
});

test('a success resets the streak; 5xx count only with failOn5xx', () => {
  const clock = new FakeClock();
  const hosts = makeHosts(4, clock);
  const d = new OutlierDetector(PASSIVE, hosts);
  d.onFailure(hosts[0]);
  d.onFailure(hosts[0]);
  d.onResponse(hosts[0], 200);
  d.onFailure(hosts[0]);
  d.onResponse(hosts[0], 503);
  d.onFailure(hosts[0]);
  assert.equal(hosts[0].available, true);
  const strict = new OutlierDetector({ ...PASSIVE, failOn5xx: true }, hosts);
  for (let i = 0; i < 3; i++) strict.onResponse(hosts[1], 502);
  assert.equal(hosts[1].available, false);
});

test('ejectFor grows with repeated ejections, capped by maxEjectFor, and the host returns', () => {
  const clock = new FakeClock();
  const hosts = makeHosts(4, clock);
  const d = new OutlierDetector({ ...PASSIVE, maxEjectForMs: 80_000 }, hosts);
  const eject = () => {
    for (let i = 0; i < 3; i++) d.onFailure(hosts[0]);
  };
  const durations = [];
  for (let round = 0; round < 4; round++) {
    eject();
    durations.push(hosts[0].ejectedUntil - clock.t);
    clock.t = hosts[0].ejectedUntil; // the ejection ends ...
    assert.equal(hosts[0].available, true, 'back once the ejection ends');
  }
  assert.deepEqual(durations, [30_000, 60_000, 80_000, 80_000]);
  // A long quiet spell resets the multiplier.
  clock.t += 100_000;
  eject();
  assert.equal(hosts[0].ejectedUntil - clock.t, 30_000);
});

test('maxEjectionPercent caps ejections, and the last serving host is never ejected', () => {
  const clock = new FakeClock();
  const hosts = makeHosts(4, clock);
  const d = new OutlierDetector(PASSIVE, hosts);
  for (const h of hosts) for (let i = 0; i < 3; i++) d.onFailure(h);
  assert.equal(hosts.filter((h) => !h.available).length, 2, '50% of 4');

  const pair = makeHosts(2, clock);
  const all = new OutlierDetector({ ...PASSIVE, maxEjectionPercent: 100 }, pair);
  for (const h of pair) for (let i = 0; i < 3; i++) all.onFailure(h);
  assert.equal(pair.filter((h) => h.available).length, 1, 'one always stays');
});

test('panic mode: when every server is out only by ejection, traffic goes to all of them', () => {
  const clock = new FakeClock();
  const hosts = makeHosts(2, clock);
  const group = new UpstreamGroup(
    {
      name: 'app',
      balancer: 'round-robin',
      servers: [],
      features: { passiveHealth: {} },
    },
    hosts,
    { clock },
  );
  hosts[0].ejectedUntil = clock.t + 1000;
  hosts[1].ejectedUntil = clock.t + 1000;
  const panics = [];
  const fn = (m) => panics.push(m);
  diagnostics_channel.subscribe('switchyard:upstream:panic', fn);
  const ctx = { clientIp: '10.0.0.1', req: { headers: {} }, cookie: () => undefined };
  const picked = new Set([group.selectHost(ctx), group.selectHost(ctx)]);
  diagnostics_channel.unsubscribe('switchyard:upstream:panic', fn);
  assert.equal(picked.size, 2);
  assert.equal(panics.length, 2);
  assert.equal(hosts[0].ejectedUntil, clock.t + 1000, 'still ejected after the panic pick');
  // Servers that active checks call down stay out, even in panic: 503.
  hosts[0].healthy = false;
  hosts[1].healthy = false;
  assert.equal(group.selectHost(ctx), undefined);
});

test('real traffic: a server that refuses connections is ejected and then avoided', async () => {
  const free = net.createServer();
  await new Promise((r) => free.listen(0, '127.0.0.1', r));
  const deadPort = free.address().port;
  await new Promise((r) => free.close(r));
  const good = await startOrigin((req, res) => res.end('good'));
  cleanups.push(good.close);
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [{ url: "http://127.0.0.1:${deadPort}" }, { url: "${good.url}" }]
    passiveHealth: { maxFails: 2, window: 10s, ejectFor: 30s }
routes: [{ upstream: app }]
`);
  cleanups.push(p.close);
  const ejected = [];
  const fn = (m) => ejected.push(m);
  diagnostics_channel.subscribe('switchyard:health:ejected', fn);
  cleanups.push(() => diagnostics_channel.unsubscribe('switchyard:health:ejected', fn));
  const statuses = [];
  for (let i = 0; i < 10; i++) statuses.push((await request(`${p.url}/`)).status);
  // Round-robin: the 1st and 3rd requests hit the dead server, then it is out.
  assert.deepEqual(statuses, [502, 200, 502, 200, 200, 200, 200, 200, 200, 200]);
  assert.equal(ejected.length, 1);
  assert.equal(ejected[0].ejectForMs, 30_000);
  const snap = p.proxy.runtime.groups.get('app').hosts[0].snapshot();
  assert.equal(snap.state, 'down');
  assert.equal(snap.healthy, false);
  assert.equal(snap.totalFailures, 2);
});
