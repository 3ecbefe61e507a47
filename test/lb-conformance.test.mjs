// One conformance suite run against every balancer in the registry (no sockets): availability,
// exclusion, weights, determinism with a seeded RNG, and the policy-specific guarantees.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createBalancer, balancerNames } from '../dist/upstream/lb/index.js';
import { Host } from '../dist/upstream/host.js';
import { seededRandom } from '../dist/upstream/clock.js';

const SETTINGS = {
  connectTimeoutMs: 1000,
  keepAliveIdleMs: 1000,
  maxConnections: null,
  protocol: 'http1',
};
const created = [];
after(async () => {
  await Promise.all(created.map((h) => h.pool.close()));
});

class FakeClock {
  t = 1_000_000;
  now() {
    return this.t;
  }
}

function makeHosts(weights, clock = new FakeClock()) {
  return weights.map((w, i) => {
    const h = new Host('app', `http://10.0.0.${i + 1}:80`, w, false, SETTINGS, clock);
    created.push(h);
    return h;
  });
}

function ctxFor(i) {
  const headers = { 'x-user-id': `user-${i}` };
  return {
    clientIp: `10.${Math.floor(i / 250)}.${i % 250}.1`,
    req: { headers },
    cookie: () => undefined,
    host: 'example.com',
    path: `/p/${i}`,
    query: '',
  };
}

function balancer(name, extra = {}, seed = 42) {
  return createBalancer(
    { name: 'app', balancer: name, servers: [], features: {}, ...extra },
    { random: seededRandom(seed), clock: new FakeClock() },
  );
}

/**
 * Runs `picks` selections with up to `inFlight` requests outstanding (oldest completes first),
 * so load-aware balancers see load as in a real proxy. Returns the pick count per host.
 */
function simulate(b, hosts, picks, { inFlight = 8, exclude } = {}) {
  const counts = new Map(hosts.map((h) => [h, 0]));
  const queue = [];
  for (let i = 0; i < picks; i++) {
    if (queue.length >= inFlight) queue.shift().activeRequests--;
    const h = b.select(hosts, ctxFor(i), exclude);
    assert.ok(h, 'a host is picked');
    h.activeRequests++;
    queue.push(h);
    counts.set(h, counts.get(h) + 1);
    b.observe?.(h, 10, false);
  }
  for (const h of queue) h.activeRequests--;
  return hosts.map((h) => counts.get(h) / picks);
}

const ALL = [
  'round-robin',
  'least-connections',
  'least-request',
  'random',
  'ip-hash',
  'consistent-hash',
  'ewma',
];

test('the registry has every balancer the schema names', () => {
  assert.deepEqual([...balancerNames()].sort(), [...ALL].sort());
});

for (const name of ALL) {
  describe(`balancer conformance: ${name}`, () => {
    test('returns undefined for an empty list or when nothing is available', () => {
      const b = balancer(name);
      assert.equal(b.select([], ctxFor(1)), undefined);
      const hosts = makeHosts([1, 1]);
      hosts[0].healthy = false;
      hosts[1].draining = true;
      assert.equal(b.select(hosts, ctxFor(1)), undefined);
    });

    test('never picks an unhealthy, draining or ejected host', () => {
      const clock = new FakeClock();
      const hosts = makeHosts([1, 1, 1, 1], clock);
      hosts[0].healthy = false;
      hosts[1].draining = true;
      hosts[2].ejectedUntil = clock.t + 1000;
      const b = balancer(name);
      for (let i = 0; i < 200; i++) assert.equal(b.select(hosts, ctxFor(i)), hosts[3]);
    });

    test('never picks the excluded host while another is available', () => {
      const hosts = makeHosts([1, 5]);
      const b = balancer(name);
      for (let i = 0; i < 200; i++) assert.equal(b.select(hosts, ctxFor(i), hosts[1]), hosts[0]);
      hosts[0].healthy = false;
      assert.equal(b.select(hosts, ctxFor(1), hosts[1]), undefined);
    });

    test('an ejected host comes back once its ejection ends', () => {
      const clock = new FakeClock();
      const hosts = makeHosts([1, 1], clock);
      hosts[0].ejectedUntil = clock.t + 1000;
      const b = balancer(name);
      assert.equal(b.select(hosts, ctxFor(1), hosts[1]), undefined);
      clock.t += 1001;
      assert.equal(b.select(hosts, ctxFor(1), hosts[1]), hosts[0]);
    });

    test('honours weights (3:1:1) within a few percent', () => {
      const hosts = makeHosts([3, 1, 1]);
      const shares = simulate(balancer(name), hosts, 6000);
      const expected = [0.6, 0.2, 0.2];
      shares.forEach((s, i) =>
        assert.ok(Math.abs(s - expected[i]) < 0.07, `${name}: share ${i} is ${s.toFixed(3)}`),
      );
    });

    test('is deterministic for a given seed', () => {
      const run = () => {
        const hosts = makeHosts([2, 1, 1]);
        const b = balancer(name, {}, 7);
        return Array.from({ length: 50 }, (_, i) => hosts.indexOf(b.select(hosts, ctxFor(i))));
      };
      assert.deepEqual(run(), run());
    });
  });
}

for (const name of ['round-robin', 'least-connections', 'least-request', 'random', 'ewma']) {
  test(`${name}: slow start gives a returning host a small share that grows`, () => {
    const clock = new FakeClock();
    const hosts = makeHosts([1, 1], clock);
    hosts[1].slowStartMs = 10_000;
    hosts[1].startSlowStart();
    const b = createBalancer(
      { name: 'app', balancer: name, servers: [], features: {} },
      { random: seededRandom(3), clock },
    );
    const early = simulate(b, hosts, 2000)[1];
    clock.t += 5_000;
    const half = simulate(b, hosts, 2000)[1];
    clock.t += 5_001;
    const full = simulate(b, hosts, 2000)[1];
    assert.ok(early < 0.2, `early share ${early}`);
    assert.ok(half > early && half < full, `half share ${half}`);
    assert.ok(Math.abs(full - 0.5) < 0.06, `full share ${full}`);
  });
}

for (const name of ['ip-hash', 'consistent-hash']) {
  test(`${name}: a host going down moves only its own keys`, () => {
    const hosts = makeHosts([1, 1, 1, 1]);
    const b = balancer(name);
    const before = Array.from({ length: 2000 }, (_, i) => b.select(hosts, ctxFor(i)));
    hosts[2].healthy = false;
    const afterDown = Array.from({ length: 2000 }, (_, i) => b.select(hosts, ctxFor(i)));
    let moved = 0;
    for (let i = 0; i < before.length; i++) {
      if (before[i] === hosts[2]) {
        assert.notEqual(afterDown[i], hosts[2]);
        moved++;
      } else assert.equal(afterDown[i], before[i], `key ${i} moved`);
    }
    assert.ok(moved > 300 && moved < 700, `the lost host owned ${moved} keys`);
    // Its keys spread over the others rather than all landing on one.
    const receivers = new Set(afterDown.filter((h, i) => before[i] === hosts[2]));
    assert.equal(receivers.size, 3);
  });
}

test('consistent-hash keys by any placeholder (a header here)', () => {
  const hosts = makeHosts([1, 1, 1]);
  const b = balancer('consistent-hash', { hashKey: '{header.x-user-id}' });
  const ctx = (user, ip) => ({
    ...ctxFor(0),
    clientIp: ip,
    req: { headers: { 'x-user-id': user } },
  });
  for (let u = 0; u < 50; u++) {
    const first = b.select(hosts, ctx(`u${u}`, '192.0.2.1'));
    assert.equal(b.select(hosts, ctx(`u${u}`, '198.51.100.7')), first, 'same user, other address');
  }
});

test('consistent-hash: bounded load spills a hot key over to the next servers', () => {
  const hosts = makeHosts([1, 1, 1, 1]);
  const b = balancer('consistent-hash', { hashKey: '{header.x-user-id}' });
  const hot = { ...ctxFor(0), req: { headers: { 'x-user-id': 'celebrity' } } };
  const owner = b.select(hosts, hot);
  for (let i = 0; i < 40; i++) b.select(hosts, hot).activeRequests++;
  const max = Math.max(...hosts.map((h) => h.activeRequests));
  assert.ok(max <= Math.ceil((1.25 * 40) / 4), `no host above its bound (max ${max})`);
  assert.ok(owner.activeRequests >= 10, 'the owner still takes its full share first');
  for (const h of hosts) h.activeRequests = 0;
});

test('least-connections and least-request prefer the host with fewer requests in flight', () => {
  for (const name of ['least-connections', 'least-request']) {
    const hosts = makeHosts([1, 1]);
    hosts[0].activeRequests = 10;
    const b = balancer(name);
    let toIdle = 0;
    for (let i = 0; i < 100; i++) if (b.select(hosts, ctxFor(i)) === hosts[1]) toIdle++;
    assert.equal(toIdle, 100, name);
    hosts[0].activeRequests = 0;
  }
});

test('least-connections rotates ties instead of always taking the first host', () => {
  const hosts = makeHosts([1, 1, 1]);
  const b = balancer('least-connections');
  const seen = new Set();
  for (let i = 0; i < 3; i++) seen.add(b.select(hosts, ctxFor(i)));
  assert.equal(seen.size, 3);
});

test('random: seeded distribution matches weights 2:1:1 closely', () => {
  const hosts = makeHosts([2, 1, 1]);
  const b = balancer('random', {}, 1234);
  const counts = [0, 0, 0];
  for (let i = 0; i < 20000; i++) counts[hosts.indexOf(b.select(hosts, ctxFor(i)))]++;
  assert.ok(Math.abs(counts[0] / 20000 - 0.5) < 0.015, String(counts));
  assert.ok(Math.abs(counts[1] / 20000 - 0.25) < 0.015, String(counts));
});

test('ewma: a host that turns slow loses its traffic after one slow answer, and is retried later', () => {
  const clock = new FakeClock();
  const hosts = makeHosts([1, 1], clock);
  const b = createBalancer(
    { name: 'app', balancer: 'ewma', servers: [], features: {} },
    { random: seededRandom(9), clock },
  );
  const latency = [10, 10];
  const run = (n) => {
    const counts = [0, 0];
    for (let i = 0; i < n; i++) {
      const h = b.select(hosts, ctxFor(i));
      const k = hosts.indexOf(h);
      counts[k]++;
      clock.t += 1;
      b.observe(h, latency[k], false);
    }
    return counts;
  };
  const even = run(1000);
  assert.ok(Math.abs(even[0] - even[1]) < 200, `even split first: ${even}`);
  latency[1] = 500;
  const shifted = run(1000);
  assert.ok(shifted[1] < 50, `slow host got ${shifted[1]} of 1000`);
  // After a quiet minute its score has decayed and it is probed again.
  clock.t += 60_000;
  latency[1] = 10;
  const recovered = run(1000);
  assert.ok(recovered[1] > 300, `recovered host got ${recovered[1]}`);
});

test('ewma: a fast failure counts as slow, so a dead server is not favoured', () => {
  const clock = new FakeClock();
  const hosts = makeHosts([1, 1], clock);
  const b = createBalancer(
    { name: 'app', balancer: 'ewma', servers: [], features: {} },
    { random: seededRandom(5), clock },
  );
  b.observe(hosts[0], 20, false);
  b.observe(hosts[1], 1, true);
  let toFailing = 0;
  for (let i = 0; i < 100; i++) if (b.select(hosts, ctxFor(i)) === hosts[1]) toFailing++;
  assert.equal(toFailing, 0);
});
