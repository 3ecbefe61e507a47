// Request hygiene on raw sockets: every malformed-request rule (node's strict parser plus the
// gaps Switchyard closes), path normalisation shared by routing, filters and the upstream,
// slowloris and slow POST, PROXY protocol v1/v2, and a bounded fuzz run in which no request that
// must be refused reaches the origin.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { startOrigin, startProxy, request, rawRequest } from './helpers.mjs';
import { normalizePath } from '../dist/server/hygiene.js';
import { parseProxyHeader } from '../dist/server/proxy-protocol.js';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let origin;
const received = [];
before(async () => {
  origin = await startOrigin((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.end(`origin saw ${req.url}`);
    });
  });
  cleanups.push(origin.close);
});

async function proxy(yaml) {
  const p = await startProxy(yaml);
  cleanups.push(p.close);
  return p;
}

const statusOf = (answer) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);

describe('malformed requests (raw sockets)', () => {
  let p;
  before(async () => {
    p = await proxy(`
listeners: [{ address: "127.0.0.1:0", limits: { maxHeaderSize: 8KiB } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
  });
  const H = 'Host: a\r\n';
  const cases = [
    [
      'Content-Length with Transfer-Encoding',
      `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      400,
    ],
    [
      'duplicate Content-Length (same value)',
      `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`,
      400,
    ],
    [
      'conflicting Content-Length',
      `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`,
      400,
    ],
    ['Content-Length list', `POST / HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`, 400],
    ['negative Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 400],
    ['signed Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`, 400],
    ['unknown transfer coding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: foo\r\n\r\n`, 501],
    [
      'gzip, chunked transfer coding',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      501,
    ],
    [
      'xchunked',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      501,
    ],
    [
      'duplicate Transfer-Encoding',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      400,
    ],
    [
      'space before the colon',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      400,
    ],
    [
      'Transfer-Encoding on HTTP/1.0',
      `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
      400,
    ],
    ['obs-fold', `GET / HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n`, 400],
    ['bare LF line endings', 'GET / HTTP/1.1\nHost: a\n\n', 400],
    ['bare LF in a header line', `GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n`, 400],
    ['bare CR', `GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n`, 400],
    ['NUL in a header value', `GET / HTTP/1.1\r\n${H}X-A: b\0c\r\n\r\n`, 400],
    ['control character in a header value', `GET / HTTP/1.1\r\n${H}X-A: b\x01c\r\n\r\n`, 400],
    ['DEL in a header value', `GET / HTTP/1.1\r\n${H}X-A: b\x7fc\r\n\r\n`, 400],
    ['NUL in the target', 'GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['header line without a colon', `GET / HTTP/1.1\r\n${H}BadHeader\r\n\r\n`, 400],
    ['leading whitespace before the first header', 'GET / HTTP/1.1\r\n Host: a\r\n\r\n', 400],
    ['duplicate Host', `GET / HTTP/1.1\r\n${H}Host: b\r\n\r\n`, 400],
    ['missing Host on HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n', 400],
    [
      'malformed chunk size',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
      400,
    ],
    [
      'bare LF in chunked framing',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n`,
      400,
    ],
    ['lowercase method', 'get / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['unknown HTTP version', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 400],
    ['HTTP/0.9 request line', 'GET /\r\n\r\n', 505],
    ['HTTP/2.0 in an HTTP/1 request line', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
    ['invalid percent-encoding in the path', 'GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['oversized request line', `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
    ['oversized headers', `GET / HTTP/1.1\r\n${H}X-A: ${'a'.repeat(9000)}\r\n\r\n`, 431],
    [
      'CONNECT tunnelling',
      'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n',
      405,
    ],
  ];
  for (const [name, bytes, status] of cases) {
    test(`${name}: ${status}, connection closed, origin not reached`, async () => {
      const before = received.length;
      const answer = await rawRequest(p.port, bytes, { timeout: 3000 });
      assert.equal(statusOf(answer), status, JSON.stringify(answer.slice(0, 120)));
      assert.match(answer, /connection: close/i);
      assert.equal(received.length, before, 'nothing reached the origin');
    });
  }

  test('chunked bodies are re-serialised for the upstream (extensions dropped)', async () => {
    const answer = await rawRequest(
      p.port,
      `POST /c HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n`,
    );
    assert.equal(statusOf(answer), 200);
    const seen = received.at(-1);
    assert.equal(seen.body, 'abcde');
  });

  test('absolute-form target: origin-form upstream, authority replaces Host', async () => {
    const answer = await rawRequest(
      p.port,
      'GET http://other.example/x/../y?z=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    );
    assert.equal(statusOf(answer), 200);
    const seen = received.at(-1);
    assert.equal(seen.url, '/y?z=1');
    assert.equal(seen.headers.host, 'other.example');
  });

  test('OPTIONS * is answered by the proxy', async () => {
    const answer = await rawRequest(
      p.port,
      'OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    );
    assert.equal(statusOf(answer), 200);
    assert.match(answer, /allow: GET/i);
  });
});

describe('path normalisation', () => {
  test('table', () => {
    const cases = [
      ['/', '/'],
      ['/a/b', '/a/b'],
      ['/a/./b', '/a/b'],
      ['/a/../b', '/b'],
      ['/../../etc/passwd', '/etc/passwd'],
      ['/a/%2e%2e/b', '/b'],
      ['/a/%2E%2e/%2e/b', '/b'],
      ['/a//b///c', '/a/b/c'],
      ['//admin', '/admin'],
      ['/%61dmin', '/admin'],
      ['/a/b/', '/a/b/'],
      ['/a/b/..', '/a/'],
      ['/a/.', '/a/'],
      ['/a%2fb', '/a%2fb'],
      ['/a%2Fb/..%2f', '/a%2Fb/..%2f'],
      ['/caf%c3%a9', '/caf%c3%a9'],
      ['/%7Euser', '/%7Euser'],
      ['/a%20b', '/a%20b'],
      ['/a%zz', null],
      ['/a%2', null],
    ];
    for (const [input, expected] of cases) assert.equal(normalizePath(input), expected, input);
  });

  test('routing, filters and the upstream agree on the normalised path', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { match: { pathPrefix: /admin }, upstream: app, ipFilter: { allow: [10.0.0.0/8] } }
  - { upstream: app }
`);
    for (const path of [
      '/admin/x',
      '/%61dmin/x',
      '/public/../admin/x',
      '//admin/x',
      '/./admin/x',
      '/public/%2e%2e/admin/x',
    ]) {
      const answer = await rawRequest(
        p.port,
        `GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(statusOf(answer), 403, `${path} is the admin route`);
    }
    const ok = await rawRequest(
      p.port,
      'GET /public//x/./y/../z HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    );
    assert.equal(statusOf(ok), 200);
    assert.equal(received.at(-1).url, '/public/x/z', 'the upstream sees the path that was routed');
  });
});

describe('slow clients', () => {
  test('slowloris: headers that never finish are cut after headersTimeout', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0", limits: { headersTimeout: 1s, requestTimeout: 5s } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
    const socket = net.connect(p.port, '127.0.0.1');
    await once(socket, 'connect');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => (answer += d));
    socket.on('error', () => {});
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n');
    const drip = setInterval(() => socket.writable && socket.write('X-A: b\r\n'), 200);
    const started = Date.now();
    await once(socket, 'close');
    clearInterval(drip);
    assert.ok(Date.now() - started < 8000);
    assert.ok(answer === '' || /^HTTP\/1\.1 408/.test(answer), answer);
  });

  test('slow POST: a body below minBodyRate gets 408 and the connection closes', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0", limits: { headersTimeout: 1s, requestTimeout: 30s, minBodyRate: 1KiB } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
    const socket = net.connect(p.port, '127.0.0.1');
    await once(socket, 'connect');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => (answer += d));
    socket.on('error', () => {});
    socket.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n');
    const drip = setInterval(() => socket.writable && socket.write('x'), 100);
    const started = Date.now();
    await once(socket, 'close');
    clearInterval(drip);
    const took = Date.now() - started;
    assert.ok(took < 10000, `closed after ${took} ms, long before requestTimeout`);
    assert.match(answer, /^HTTP\/1\.1 408/);
  });

  test('a body at a normal rate is not affected', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0", limits: { headersTimeout: 1s, minBodyRate: 1KiB } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
    const body = 'y'.repeat(256 * 1024);
    const r = await request(`${p.url}/upload`, { method: 'POST', body });
    assert.equal(r.status, 200);
    assert.equal(received.at(-1).body.length, body.length);
  });
});

describe('PROXY protocol', () => {
  function v2(src, srcPort, { command = 1, family = 0x11, tlv = Buffer.alloc(0) } = {}) {
    const sig = Buffer.from([
      0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
    ]);
    let addr;
    if (family === 0x11) {
      addr = Buffer.alloc(12);
      src.split('.').forEach((o, i) => (addr[i] = Number(o)));
      addr.set([127, 0, 0, 1], 4);
      addr.writeUInt16BE(srcPort, 8);
      addr.writeUInt16BE(443, 10);
    } else if (family === 0x21) {
      addr = Buffer.alloc(36);
      const full = src.split(':');
      full.forEach((g, i) => addr.writeUInt16BE(parseInt(g || '0', 16), i * 2));
      addr.writeUInt16BE(srcPort, 32);
      addr.writeUInt16BE(443, 34);
    } else addr = Buffer.alloc(0);
    const head = Buffer.alloc(4);
    head[0] = 0x20 | command;
    head[1] = family;
    head.writeUInt16BE(addr.length + tlv.length, 2);
    return Buffer.concat([sig, head, addr, tlv]);
  }

  test('parser: v1, v2 (IPv4, IPv6, LOCAL, TLVs), incomplete and invalid input', () => {
    assert.deepEqual(
      parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET')),
      {
        state: 'done',
        length: 42,
        source: { address: '203.0.113.7', port: 5555 },
      },
    );
    assert.equal(
      parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 5555 80\r\n')).source.address,
      '2001:db8::1',
    );
    assert.equal(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')).source, undefined);
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 203.0')).state, 'incomplete');
    assert.equal(
      parseProxyHeader(Buffer.from('PROXY TCP4 999.0.0.1 1.2.3.4 1 2\r\n')).state,
      'invalid',
    );
    assert.equal(
      parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n')).state,
      'invalid',
    );
    assert.equal(parseProxyHeader(Buffer.from(`PROXY ${'x'.repeat(200)}`)).state, 'invalid');
    assert.equal(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')).state, 'invalid');
    const four = parseProxyHeader(
      v2('198.51.100.9', 4000, { tlv: Buffer.from([0x04, 0x00, 0x01, 0x00]) }),
    );
    assert.deepEqual(four.source, { address: '198.51.100.9', port: 4000 });
    assert.equal(four.length, 16 + 12 + 4);
    assert.deepEqual(parseProxyHeader(v2('2001:db8:0:0:0:0:0:7', 1234, { family: 0x21 })).source, {
      address: '2001:db8::7',
      port: 1234,
    });
    assert.equal(parseProxyHeader(v2('', 0, { command: 0, family: 0 })).source, undefined);
    assert.equal(parseProxyHeader(v2('1.2.3.4', 1).subarray(0, 20)).state, 'incomplete');
  });

  let p;
  before(async () => {
    p = await proxy(`
listeners: [{ address: "127.0.0.1:0", proxyProtocol: true, limits: { headersTimeout: 1s, maxConnectionsPerIp: 1 } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { match: { pathPrefix: /guarded }, upstream: app, ipFilter: { deny: [203.0.113.0/24] } }
  - { upstream: app }
`);
  });
  const get = (prefix, path = '/') =>
    rawRequest(
      p.port,
      Buffer.concat([
        prefix,
        Buffer.from(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`),
      ]),
    );

  test('v1: the real client address reaches X-Forwarded-For and ipFilter', async () => {
    const answer = await get(Buffer.from('PROXY TCP4 198.51.100.20 127.0.0.1 5555 80\r\n'));
    assert.equal(statusOf(answer), 200);
    assert.equal(received.at(-1).headers['x-forwarded-for'], '198.51.100.20');
    const denied = await get(
      Buffer.from('PROXY TCP4 203.0.113.5 127.0.0.1 5555 80\r\n'),
      '/guarded',
    );
    assert.equal(statusOf(denied), 403);
  });

  test('v2 IPv4 and IPv6, and LOCAL keeps the peer address', async () => {
    assert.equal(statusOf(await get(v2('198.51.100.21', 7000))), 200);
    assert.equal(received.at(-1).headers['x-forwarded-for'], '198.51.100.21');
    assert.equal(statusOf(await get(v2('2001:db8:0:0:0:0:0:9', 7000, { family: 0x21 }))), 200);
    assert.equal(received.at(-1).headers['x-forwarded-for'], '2001:db8::9');
    assert.equal(statusOf(await get(v2('', 0, { command: 0, family: 0 }))), 200);
    assert.equal(received.at(-1).headers['x-forwarded-for'], '127.0.0.1');
  });

  test('a connection without a header, or with a broken one, is closed unanswered', async () => {
    const before = received.length;
    assert.equal(await get(Buffer.alloc(0)), '');
    assert.equal(await get(Buffer.from('PROXY TCP4 nonsense\r\n')), '');
    assert.equal(received.length, before);
    assert.ok(p.logs.some((l) => l.message.startsWith('PROXY protocol header refused')));
  });

  test('a header that never comes is timed out', async () => {
    const socket = net.connect(p.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('PROXY TCP4 1.2.3.4');
    await once(socket, 'close');
  });

  test('per-IP connection limits count the real client address', async () => {
    const a = net.connect(p.port, '127.0.0.1');
    a.on('error', () => {});
    a.write('PROXY TCP4 198.51.100.30 127.0.0.1 1000 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await once(a, 'data');
    // Same real client through the same balancer address: over maxConnectionsPerIp (1).
    const second = await get(Buffer.from('PROXY TCP4 198.51.100.30 127.0.0.1 1001 80\r\n'));
    assert.equal(second, '');
    // Another real client is fine although the TCP peer is the same.
    assert.equal(
      statusOf(await get(Buffer.from('PROXY TCP4 198.51.100.31 127.0.0.1 1002 80\r\n'))),
      200,
    );
    a.destroy();
  });
});

describe('fuzz', () => {
  // Seeded, so a failure can be replayed.
  function rng(seed) {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  test('2000 requests that must be refused: no crash, none reaches the origin', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0", limits: { headersTimeout: 500ms } }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
    const rand = rng(Number(process.env.FUZZ_SEED ?? 7));
    const pick = (a) => a[Math.floor(rand() * a.length)];
    // Each generator yields a request that a strict intermediary must refuse.
    const bad = [
      () =>
        `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${1 + Math.floor(rand() * 9)}\r\nTransfer-Encoding: ${pick(['chunked', 'Chunked', ' chunked', 'chunked '])}\r\n\r\n0\r\n\r\n`,
      () =>
        `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: ${pick(['2', '3', ' 2', '02'])}\r\n\r\nab`,
      () =>
        `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ${pick(['gzip, chunked', 'identity', 'chunked, gzip', 'x', 'deflate'])}\r\n\r\n1\r\na\r\n0\r\n\r\n`,
      () =>
        `GET / HTTP/1.1\r\nHost: a\r\nX-${Math.floor(rand() * 1e6)}: v${pick(['\0', '\x01', '\x7f', '\r', '\n', '\x0b'])}w\r\n\r\n`,
      () => `GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n${pick([' ', '\t'])}folded\r\n\r\n`,
      () => `GET /${pick(['a\0', '%zz', '%', '%4', 'x y'])} HTTP/1.1\r\nHost: a\r\n\r\n`,
      () => `GET / HTTP/1.1\r\nHost: a\r\nHost: ${pick(['a', 'b', 'evil'])}\r\n\r\n`,
      () => `${pick(['get', 'G ET', 'GET\t', '\0GET'])} / HTTP/1.1\r\nHost: a\r\n\r\n`,
      () => `GET / HTTP/${pick(['1.2', '2.0', '0.8', '1.', 'x'])}\r\nHost: a\r\n\r\n`,
      () => `GET / HTTP/1.1${pick(['\n', '\r'])}Host: a\r\n\r\n`,
      () =>
        `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${pick(['g', '-1', '0x1', '1 1', ''])}\r\na\r\n0\r\n\r\n`,
    ];
    const before = received.length;
    const statuses = new Map();
    const total = 2000;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        next++;
        const answer = await rawRequest(p.port, pick(bad)(), { timeout: 5000 });
        const s = statusOf(answer);
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    assert.equal(
      received.length - before,
      0,
      `origin reached: ${JSON.stringify(received.slice(before, before + 3))}`,
    );
    for (const s of statuses.keys()) assert.ok(s === 0 || (s >= 400 && s < 600), `status ${s}`);
    assert.equal((await request(`${p.url}/still-alive`)).status, 200);
  });
});
