// Access control end to end: ipFilter (CIDR tables, IPv4-mapped IPv6, the real client address
// behind trusted proxies via X-Forwarded-For and RFC 7239 Forwarded), per-IP connection limits,
// basicAuth (bcrypt and scrypt), forwardAuth (allow, deny, forged headers, service down) and
// topology hiding on error answers.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { randomBytes, scryptSync } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { startOrigin, startProxy, request } from './helpers.mjs';
import { RangeSet, clientAddress } from '../dist/filters/ipfilter/index.js';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let origin;
const seen = [];
before(async () => {
  origin = await startOrigin((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    res.end('origin');
  });
  cleanups.push(origin.close);
});

async function proxy(yaml) {
  const p = await startProxy(yaml);
  cleanups.push(p.close);
  return p;
}

/** GET from a chosen loopback source address (the whole 127/8 is local on Linux). */
function getFrom(url, localAddress, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { localAddress, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: body }));
    });
    req.on('error', reject);
  });
}

describe('ipFilter', () => {
  test('CIDR matching table (IPv4, IPv6, IPv4-mapped)', () => {
    const cases = [
      [['10.0.0.0/8'], '10.1.2.3', true],
      [['10.0.0.0/8'], '11.0.0.1', false],
      [['192.168.1.0/24'], '192.168.1.255', true],
      [['192.168.1.0/24'], '192.168.2.0', false],
      [['203.0.113.7'], '203.0.113.7', true],
      [['203.0.113.7'], '203.0.113.8', false],
      [['0.0.0.0/0'], '8.8.8.8', true],
      [['10.0.0.0/8'], '::ffff:10.9.9.9', true],
      [['::ffff:10.0.0.0/104'], '10.9.9.9', true],
      [['::ffff:10.0.0.0/104'], '11.9.9.9', false],
      [['2001:db8::/32'], '2001:db8:1::1', true],
      [['2001:db8::/32'], '2001:db9::1', false],
      [['::1'], '::1', true],
      [['::1'], '127.0.0.1', false],
      [['fe80::/10'], 'fe80::1%eth0', true],
      [['10.0.0.0/8', '2001:db8::/32'], '2001:db8::5', true],
      [['2001:db8::/32'], '10.0.0.1', false],
    ];
    for (const [ranges, ip, expected] of cases) {
      const address = clientAddress(ip);
      const got = address !== null && new RangeSet(ranges).has(address);
      assert.equal(got, expected, `${ip} in ${ranges.join(',')}`);
    }
    assert.equal(clientAddress('not-an-ip'), null);
  });

  test('allow list on the peer address: other addresses get 403 and never reach the origin', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, ipFilter: { allow: [127.0.0.2/32] } }]
`);
    const before = seen.length;
    const refused = await getFrom(`${p.url}/secret`, '127.0.0.1');
    assert.equal(refused.status, 403);
    assert.match(refused.text, /^403 Forbidden\nrequest id: /);
    assert.equal(seen.length, before);
    assert.equal((await getFrom(`${p.url}/secret`, '127.0.0.2')).status, 200);
  });

  test('deny wins over allow', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, ipFilter: { allow: [127.0.0.0/8], deny: [127.0.0.3] } }]
`);
    assert.equal((await getFrom(`${p.url}/`, '127.0.0.3')).status, 403);
    assert.equal((await getFrom(`${p.url}/`, '127.0.0.4')).status, 200);
  });

  test('IPv4 clients on a dual-stack listener are matched as IPv4 (mapped forms too)', async () => {
    const p = await proxy(`
listeners: [{ address: ":0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { match: { pathPrefix: /v4 }, upstream: app, ipFilter: { allow: [127.0.0.1] } }
  - { match: { pathPrefix: /mapped }, upstream: app, ipFilter: { deny: ["::ffff:127.0.0.0/104"] } }
`);
    const url = `http://127.0.0.1:${p.port}`;
    assert.equal((await getFrom(`${url}/v4`, '127.0.0.1')).status, 200);
    assert.equal((await getFrom(`${url}/mapped`, '127.0.0.1')).status, 403);
  });

  describe('behind trusted proxies', () => {
    let p;
    before(async () => {
      p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
trustedProxies: [127.0.0.1/32, 10.0.0.0/8]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, ipFilter: { deny: [203.0.113.0/24, "2001:db8::/32"] } }]
`);
    });
    const cases = [
      ['X-Forwarded-For of a denied client', { 'x-forwarded-for': '203.0.113.7' }, 403],
      ['X-Forwarded-For of an allowed client', { 'x-forwarded-for': '198.51.100.1' }, 200],
      [
        'walk from the right skips trusted hops',
        { 'x-forwarded-for': '203.0.113.7, 10.1.1.1, 127.0.0.1' },
        403,
      ],
      [
        'a forged left-most entry is not believed',
        { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' },
        403,
      ],
      [
        'the first untrusted hop from the right is the client',
        { 'x-forwarded-for': '203.0.113.9, 198.51.100.1' },
        200,
      ],
      ['Forwarded for=', { forwarded: 'for=203.0.113.7;proto=https' }, 403],
      [
        'Forwarded with several elements and quoted IPv6 with port',
        { forwarded: 'for=198.51.100.1, for="[2001:db8:cafe::17]:4711"' },
        403,
      ],
      [
        'Forwarded walk skips trusted elements',
        { forwarded: 'for=203.0.113.7;by=10.0.0.1, for=10.2.2.2' },
        403,
      ],
      ['Forwarded unknown ends at the peer', { forwarded: 'for=203.0.113.7, for=unknown' }, 200],
      [
        'X-Forwarded-For wins over Forwarded',
        { 'x-forwarded-for': '198.51.100.1', forwarded: 'for=203.0.113.7' },
        200,
      ],
      ['IPv4-mapped in X-Forwarded-For', { 'x-forwarded-for': '::ffff:203.0.113.7' }, 403],
    ];
    for (const [name, headers, status] of cases) {
      test(name, async () => {
        assert.equal((await request(`${p.url}/`, { headers })).status, status);
      });
    }
  });

  test('X-Forwarded-For from an untrusted peer is ignored', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, ipFilter: { allow: [203.0.113.7] } }]
`);
    const r = await request(`${p.url}/`, {
      headers: { 'x-forwarded-for': '203.0.113.7', forwarded: 'for=203.0.113.7' },
    });
    assert.equal(r.status, 403);
  });
});

test('maxConnectionsPerIp: past the limit a connection is closed at once, other clients unaffected', async () => {
  const p = await proxy(`
listeners: [{ address: "127.0.0.1:0", limits: { maxConnectionsPerIp: 2 } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
  const held = [];
  for (let i = 0; i < 2; i++) {
    const s = net.connect({ port: p.port, host: '127.0.0.1', localAddress: '127.0.0.1' });
    await once(s, 'connect');
    held.push(s);
  }
  // Let the proxy register both before the third arrives.
  await Promise.all(
    held.map(
      (s) =>
        new Promise((resolve) => {
          s.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
          s.once('data', resolve);
        }),
    ),
  );
  const third = net.connect({ port: p.port, host: '127.0.0.1', localAddress: '127.0.0.1' });
  third.on('error', () => {});
  let answered = '';
  third.on('data', (d) => (answered += d));
  third.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await once(third, 'close');
  assert.equal(answered, '', 'the third connection from the same address gets no answer');
  assert.equal((await getFrom(`${p.url}/`, '127.0.0.9')).status, 200, 'another address is served');
  for (const s of held) s.destroy();
});

describe('basicAuth', () => {
  let p;
  const scryptHash = (password) => {
    const salt = randomBytes(16);
    const hash = scryptSync(password, salt, 32, { N: 2 ** 10, r: 8, p: 1 });
    return `$scrypt$ln=10,r=8,p=1$${salt.toString('base64')}$${hash.toString('base64')}`;
  };
  before(async () => {
    p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - upstream: app
    basicAuth:
      realm: admin area
      users:
        alice: "${bcrypt.hashSync('wonderland', 4)}"
        bob: "${scryptHash('builder')}"
`);
  });
  const basic = (user, pass) => ({
    authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
  });

  test('no credentials: 401 with the realm; origin not reached', async () => {
    const before = seen.length;
    const r = await request(`${p.url}/`);
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Basic realm="admin area", charset="UTF-8"');
    assert.match(r.text, /^401 Unauthorized\nrequest id: /);
    assert.equal(seen.length, before);
  });

  test('bcrypt and scrypt hashes accept the right password only', async () => {
    assert.equal(
      (await request(`${p.url}/`, { headers: basic('alice', 'wonderland') })).status,
      200,
    );
    assert.equal(
      (await request(`${p.url}/`, { headers: basic('alice', 'wonderland') })).status,
      200,
    );
    assert.equal(
      (await request(`${p.url}/`, { headers: basic('alice', 'Wonderland') })).status,
      401,
    );
    assert.equal((await request(`${p.url}/`, { headers: basic('bob', 'builder') })).status, 200);
    assert.equal((await request(`${p.url}/`, { headers: basic('bob', 'wonderland') })).status, 401);
    assert.equal((await request(`${p.url}/`, { headers: basic('mallory', 'x') })).status, 401);
    const malformed = await request(`${p.url}/`, { headers: { authorization: 'Basic !!!' } });
    assert.equal(malformed.status, 401);
    assert.equal(
      (await request(`${p.url}/`, { headers: { authorization: 'Bearer x' } })).status,
      401,
    );
  });

  test('a plain-text password in the config is refused at load', async () => {
    await assert.rejects(
      startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
routes: [{ respond: { body: x }, basicAuth: { users: { eve: hunter2 } } }]
`),
      /basicAuth.users.eve: not a bcrypt/,
    );
  });
});

describe('forwardAuth', () => {
  let auth;
  let authSeen;
  let p;
  before(async () => {
    auth = await startOrigin((req, res) => {
      authSeen = req.headers;
      if (req.headers.authorization === 'Bearer good') {
        res.writeHead(200, { 'x-user': 'alice', 'x-groups': 'admins', 'x-other': 'no' });
        res.end('ignored');
      } else if (req.headers.authorization === 'Bearer expired') {
        res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' });
        res.end('token expired');
      } else {
        res.writeHead(302, { location: 'https://login.example.com/?next=x' });
        res.end('go log in');
      }
    });
    cleanups.push(auth.close);
    p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - upstream: app
    forwardAuth: { url: "${auth.url}/verify?x=1", copyHeaders: [X-User, X-Groups] }
`);
  });

  test('2xx lets the request through with the listed headers; forged ones are dropped', async () => {
    const r = await request(`${p.url}/app/page?q=1`, {
      method: 'POST',
      body: 'payload',
      headers: { authorization: 'Bearer good', 'x-user': 'root', 'x-groups': 'wheel' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.text, 'origin');
    const up = seen.at(-1).headers;
    assert.equal(up['x-user'], 'alice');
    assert.equal(up['x-groups'], 'admins');
    assert.equal(up['x-other'], undefined, 'only copyHeaders are copied');
    assert.equal(authSeen['x-forwarded-method'], 'POST');
    assert.equal(authSeen['x-forwarded-uri'], '/app/page?q=1');
    assert.equal(authSeen['x-forwarded-for'], '127.0.0.1');
    assert.equal(authSeen['content-length'], undefined, 'no body goes to the auth service');
    assert.equal(authSeen['x-user'], undefined, 'the forged value never reaches the auth service');
  });

  test('anything else is returned to the client as the auth service answered', async () => {
    const before = seen.length;
    const redirect = await request(`${p.url}/app`);
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.location, 'https://login.example.com/?next=x');
    assert.equal(redirect.text, 'go log in');
    const expired = await request(`${p.url}/app`, { headers: { authorization: 'Bearer expired' } });
    assert.equal(expired.status, 401);
    assert.equal(expired.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.equal(expired.text, 'token expired');
    assert.equal(seen.length, before, 'denied requests never reach the origin');
  });

  test('an unreachable auth service fails closed with 502 that names nothing', async () => {
    const dead = net.createServer().listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const port = dead.address().port;
    await new Promise((r) => dead.close(r));
    const q = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, forwardAuth: { url: "http://127.0.0.1:${port}/verify" } }]
`);
    const r = await request(`${q.url}/`);
    assert.equal(r.status, 502);
    assert.ok(!r.text.includes(String(port)) && !r.text.includes('127.0.0.1'));
  });
});

test('topology hiding: error answers name no upstream', async () => {
  const dead = net.createServer().listen(0, '127.0.0.1');
  await once(dead, 'listening');
  const port = dead.address().port;
  await new Promise((r) => dead.close(r));
  const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { secretbackend: { servers: [{ url: "http://127.0.0.1:${port}" }] } }
routes: [{ upstream: secretbackend }]
`);
  const r = await request(`${p.url}/`);
  assert.equal(r.status, 502);
  const all = r.text + JSON.stringify(r.headers);
  for (const leak of [String(port), 'secretbackend', '127.0.0.1'])
    assert.ok(!all.includes(leak), `leaks ${leak}: ${all}`);
});
