// Black-box checks of the public contract (/work/shared/contract.md) found missing in an audit:
// each test drives the real CLI or a real proxy over real sockets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, scryptSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { startOrigin, startProxy, rawRequest, request, startProxyTo } from './helpers.mjs';

const BIN = new URL('../bin/switchyard', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'switchyard-audit-'));
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
/** Runs `switchyard validate -c FILE` on the given YAML text. */
function validate(yaml) {
  const path = join(dir, `config-${++files}.yaml`);
  writeFileSync(path, yaml);
  return spawnSync(process.execPath, [BIN, 'validate', '-c', path], {
    encoding: 'utf8',
    timeout: 20000,
  });
}

/** A config with one upstream `app` and one route to it, plus `extra` lines for the upstream. */
function upstreamConfig(extra) {
  return `listeners:
  - address: 127.0.0.1:0
upstreams:
  app:
    servers:
      - url: http://127.0.0.1:9
${extra}
routes:
  - upstream: app
`;
}

test('validate: healthCheck.path must start with "/" (the checks silently stopped otherwise)', () => {
  const bad = validate(upstreamConfig('    healthCheck: { path: healthz }'));
  assert.equal(bad.status, 1, bad.stdout);
  assert.match(bad.stderr, /^upstreams\.app\.healthCheck\.path: must start with "\/".* \(7:26\)$/m);
  const good = validate(upstreamConfig('    healthCheck: { path: /healthz }'));
  assert.equal(good.status, 0, good.stderr);
  assert.equal(good.stdout, 'config OK\n');
});

test('validate: healthCheck.interval and timeout of 0 are refused (0s ran checks in a busy loop)', () => {
  const bad = validate(upstreamConfig('    healthCheck: { path: /h, interval: 0s, timeout: 0ms }'));
  assert.equal(bad.status, 1, bad.stdout);
  assert.match(
    bad.stderr,
    /^upstreams\.app\.healthCheck\.interval: must be longer than 0.* \(7:40\)$/m,
  );
  assert.match(
    bad.stderr,
    /^upstreams\.app\.healthCheck\.timeout: must be longer than 0.* \(7:53\)$/m,
  );
  const good = validate(
    upstreamConfig('    healthCheck: { path: /h, interval: 250ms, timeout: 1s }'),
  );
  assert.equal(good.status, 0, good.stderr);
});

test('validate: an invalid waf rule pattern is reported with its key path (run used to fail on it)', () => {
  const config = (pattern) => `listeners:
  - address: 127.0.0.1:0
routes:
  - respond: { status: 200 }
waf:
  mode: block
  rules:
    - { id: 10001, part: query, pattern: "(?i)badword" }
    - { id: 10002, part: query, pattern: "${pattern}" }
`;
  const bad = validate(config('(?i)(unclosed'));
  assert.equal(bad.status, 1, bad.stdout);
  assert.match(bad.stderr, /^waf\.rules\[1\]\.pattern: invalid regular expression: .* \(9:42\)$/m);
  const good = validate(config('(?is)a.c'));
  assert.equal(good.status, 0, good.stderr);
});

test('validate: URL-valued keys are checked (forwardAuth.url crashed run with "Invalid URL")', () => {
  const config = (authUrl, endpoint, directory) => `listeners:
  - address: 127.0.0.1:0
routes:
  - match: { pathPrefix: /a/ }
    respond: { status: 200 }
    forwardAuth: { url: "${authUrl}" }
tracing: { otlp: { endpoint: "${endpoint}" } }
acme: { email: ops@example.com, directory: "${directory}" }
`;
  const bad = validate(config('auth.internal/verify', 'localhost:4318', 'ftp://acme'));
  assert.equal(bad.status, 1, bad.stdout);
  const lines = bad.stderr.trim().split('\n');
  assert.deepEqual(
    lines.map((l) => l.replace(/: .*\(/, ' (')),
    ['routes[0].forwardAuth.url (6:25)', 'tracing.otlp.endpoint (7:30)', 'acme.directory (8:44)'],
    bad.stderr,
  );
  assert.match(lines[0], /expected an http:\/\/ or https:\/\/ URL, got "auth.internal\/verify"/);
  const good = validate(
    config('http://127.0.0.1:9/verify', 'http://127.0.0.1:4318', 'https://127.0.0.1:9/dir'),
  );
  assert.equal(good.status, 0, good.stderr);
});

test('a request with an invalid Host value is answered 400 and never reaches the upstream', async () => {
  const seen = [];
  const origin = await startOrigin((req, res) => {
    seen.push(req.headers.host);
    res.end('ok');
  });
  cleanups.push(origin.close);
  const p = await startProxyTo(origin.url);
  cleanups.push(p.close);
  const status = async (hostLine, target = '/') =>
    Number(
      /^HTTP\/1\.1 (\d{3})/.exec(
        await rawRequest(
          p.port,
          `GET ${target} HTTP/1.1\r\n${hostLine}\r\nConnection: close\r\n\r\n`,
        ),
      )?.[1] ?? 0,
    );
  for (const bad of [
    'Host: a b',
    'Host: evil.example/x',
    'Host: user@evil.example',
    'Host: a:b:c',
  ]) {
    assert.equal(await status(bad), 400, bad);
  }
  assert.equal(await status('Host: x', 'http://a b/'), 400, 'absolute-form with a bad authority');
  assert.deepEqual(seen, []);
  for (const good of [
    'Host: www.example.com',
    'Host: www.example.com:8080',
    'Host: [::1]:80',
    'Host: 127.0.0.1',
  ]) {
    assert.equal(await status(good), 200, good);
  }
  assert.deepEqual(seen, ['www.example.com', 'www.example.com:8080', '[::1]:80', '127.0.0.1']);
});

test('validate: circuitBreaker.maxPending must be at least 1 (0 answered every request 503)', () => {
  const bad = validate(upstreamConfig('    circuitBreaker: { maxRequests: 10, maxPending: 0 }'));
  assert.equal(bad.status, 1, bad.stdout);
  assert.match(
    bad.stderr,
    /^upstreams\.app\.circuitBreaker\.maxPending: must be at least 1, got 0 \(7:52\)$/m,
  );
  const good = validate(upstreamConfig('    circuitBreaker: { maxRequests: 10, maxPending: 1 }'));
  assert.equal(good.status, 0, good.stderr);
});

test('run: a listener that cannot be opened exits 1 naming its key path (was "listeners.listeners[0]")', async () => {
  const busy = await startOrigin((req, res) => res.end());
  cleanups.push(busy.close);
  const run = (yaml) => {
    const path = join(dir, `run-${++files}.yaml`);
    writeFileSync(path, yaml);
    return spawnSync(process.execPath, [BIN, 'run', '-c', path], {
      encoding: 'utf8',
      timeout: 20000,
    });
  };
  const inUse = run(`listeners:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:${busy.port}
routes:
  - respond: { status: 200 }
`);
  assert.equal(inUse.status, 1, inUse.stderr);
  assert.match(
    inUse.stderr,
    new RegExp(
      `^switchyard: listeners\\[1\\]: cannot listen on 127\\.0\\.0\\.1:${busy.port}: `,
      'm',
    ),
  );
  const noCert = run(`listeners:
  - address: 127.0.0.1:0
    tls: { certificates: [{ cert: ${join(dir, 'missing.pem')}, key: ${join(dir, 'missing-key.pem')} }] }
routes:
  - respond: { status: 200 }
`);
  assert.equal(noCert.status, 1, noCert.stderr);
  assert.match(
    noCert.stderr,
    /^switchyard: listeners\[0\]\.tls\.certificates\[0\]\.cert: cannot read/m,
  );
});

test('schema: a reader that closes the pipe early does not crash the CLI (EPIPE stack trace, exit 1)', async () => {
  const child = spawn(process.execPath, [BIN, 'schema'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.destroy();
  const [code] = await once(child, 'exit');
  assert.equal(stderr, '');
  assert.equal(code, 0);
});

/**
 * Sends `headers` through a proxy whose trustedProxies is `trusted` (127.0.0.1 is the client)
 * and returns the request headers the origin received.
 */
async function headersSeenUpstream(trusted, headers) {
  let seen;
  const origin = await startOrigin((req, res) => {
    seen = req.headers;
    res.end('ok');
  });
  cleanups.push(origin.close);
  const proxy = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
trustedProxies: [${trusted}]
`);
  cleanups.push(proxy.close);
  assert.equal((await request(`${proxy.url}/`, { headers })).status, 200);
  return seen;
}

test('X-Forwarded-* headers from an untrusted client are all discarded (-Port and -Prefix were passed on)', async () => {
  const forged = {
    'x-forwarded-port': '1',
    'x-forwarded-prefix': '/evil',
    'x-forwarded-proto': 'https',
    'x-forwarded-for': '6.6.6.6',
  };
  let seen = await headersSeenUpstream('10.0.0.0/8', forged);
  assert.equal(seen['x-forwarded-port'], undefined);
  assert.equal(seen['x-forwarded-prefix'], undefined);
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  seen = await headersSeenUpstream('127.0.0.1', forged);
  assert.equal(seen['x-forwarded-port'], '1');
  assert.equal(seen['x-forwarded-prefix'], '/evil');
  assert.equal(seen['x-forwarded-for'], '6.6.6.6, 127.0.0.1');
});

/** A proxy with a 1 KiB maxBodySize and one respond (/ping) and one redirect (/old) route. */
async function startLocalRoutesProxy() {
  const p = await startProxy(`
listeners: [{ address: "127.0.0.1:0", limits: { maxBodySize: 1KiB } }]
routes:
  - { match: { path: /ping }, respond: { status: 200, body: "pong\\n" } }
  - { match: { path: /old }, redirect: { location: "/new", status: 308 } }
`);
  cleanups.push(p.close);
  return p;
}

test('maxBodySize applies to respond and redirect routes: a declared Content-Length past it is 413', async () => {
  const p = await startLocalRoutesProxy();
  for (const path of ['/ping', '/old']) {
    // Only the head is sent: the answer must come without the body being read.
    const tooLarge = await rawRequest(
      p.port,
      `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 20971520\r\n\r\n`,
    );
    assert.match(tooLarge, /^HTTP\/1\.1 413 /, path);
    assert.match(tooLarge, /\r\nconnection: close\r\n/i, path);
    const small = await request(`${p.url}${path}`, { method: 'POST', body: 'x'.repeat(1024) });
    assert.equal(small.status, path === '/ping' ? 200 : 308, path);
  }
});

/**
 * Sends `parts` one after another on one connection; resolves with everything read and whether
 * the proxy closed the connection (a FIN from its side) before `timeout`.
 */
function exchange(port, parts, { timeout = 5000 } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    let closedByProxy = false;
    const timer = setTimeout(() => socket.destroy(), timeout);
    socket.setEncoding('latin1');
    socket.on('data', (c) => (data += c));
    socket.on('end', () => {
      closedByProxy = true;
      socket.end();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data, closedByProxy });
    });
    for (const part of parts) socket.write(part);
  });
}

test('maxBodySize applies to a chunked body on respond and redirect routes: 413 and the connection closed once it passes', async () => {
  const p = await startLocalRoutesProxy();
  const chunk = `200\r\n${'x'.repeat(0x200)}\r\n`;
  for (const path of ['/ping', '/old']) {
    const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`;
    // 1.5 KiB, past the limit; the last chunk never comes, so only the limit can end this.
    const over = await exchange(p.port, [head, chunk, chunk, chunk]);
    assert.match(over.data, /^HTTP\/1\.1 413 /, path);
    assert.match(over.data, /\r\nconnection: close\r\n/i, path);
    assert.ok(over.closedByProxy, `${path}: the connection was not closed`);
    // Exactly the limit: the route's answer, and the connection serves the next request.
    const next = `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
    const within = await exchange(p.port, [head, chunk, chunk, '0\r\n\r\n', next]);
    const status = path === '/ping' ? '200' : '308';
    assert.deepEqual(
      [...within.data.matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => m[1]),
      [status, status],
      within.data,
    );
  }
});

test("Forwarded and X-Real-IP from an untrusted client are discarded; a trusted proxy's are kept", async () => {
  const forged = { forwarded: 'for=6.6.6.6;proto=https', 'x-real-ip': '6.6.6.6' };
  let seen = await headersSeenUpstream('10.0.0.0/8', forged);
  assert.equal(seen.forwarded, undefined);
  assert.equal(seen['x-real-ip'], undefined);
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  seen = await headersSeenUpstream('127.0.0.1', forged);
  assert.equal(seen.forwarded, 'for=6.6.6.6;proto=https');
  assert.equal(seen['x-real-ip'], '6.6.6.6');
});

test('run FILE runs FILE like run -c FILE; conflicting or extra arguments are usage errors (exit 2)', async () => {
  const path = join(dir, `positional-${++files}.yaml`);
  writeFileSync(
    path,
    'listeners: [{ address: "127.0.0.1:0" }]\nroutes: [{ respond: { status: 200 } }]\n',
  );
  // cwd has no switchyard.yaml: reading the default file instead of FILE fails with exit 1.
  const child = spawn(process.execPath, [BIN, 'run', path], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const exited = once(child, 'exit');
  const url = await new Promise((resolve) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.once('exit', () => resolve(null));
  });
  assert.ok(url, stderr);
  assert.equal((await request(`${url}/`)).status, 200);
  child.kill('SIGTERM');
  assert.deepEqual(await exited, [0, null], stderr);

  const cli = (...args) =>
    spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: 'utf8', timeout: 20000 });
  const other = join(dir, `other-${++files}.yaml`);
  writeFileSync(other, 'listeners: [{ address: "127.0.0.1:0" }]\nroutes: [{ respond: {} }]\n');
  const twoFiles = cli('run', '-c', path, other);
  assert.equal(twoFiles.status, 2, twoFiles.stderr);
  assert.match(
    twoFiles.stderr,
    /^switchyard run: two config files given: -c .* and .*; give one$/m,
  );
  for (const args of [
    ['run', path, other],
    ['validate', path, other],
    ['schema', 'extra'],
    ['demo', 'extra'],
  ]) {
    const res = cli(...args);
    assert.equal(res.status, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, /^switchyard \w+: unexpected argument "(extra|.*other-\d+\.yaml)"/m);
  }
  assert.equal(cli('validate', path).stdout, 'config OK\n');
  const same = cli('validate', '-c', path, path);
  assert.equal(same.status, 0, same.stderr);
});

test('demo: when the dashboard port is busy, the message names that port (it named PORT)', async () => {
  // The audit's ports (19500-19799): PORT is free, ADMIN_PORT is held by this test.
  const busy = await startOrigin((req, res) => res.end());
  cleanups.push(busy.close);
  const child = spawn(process.execPath, [BIN, 'demo'], {
    env: { ...process.env, PORT: '19510', ADMIN_PORT: String(busy.port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.setEncoding('utf8');
  const exited = once(child, 'exit');
  const url = await new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /demo is running at (http:\/\/\S+)/.exec(stdout);
      if (m) resolve(m[1]);
    });
    child.once('exit', () => resolve(null));
  });
  child.kill('SIGTERM');
  assert.deepEqual(await exited, [0, null], stderr);
  assert.ok(url, stderr);
  assert.match(stderr, new RegExp(`^port ${busy.port} is busy; using free ports instead$`, 'm'));
  assert.doesNotMatch(stderr, /port 19510 is busy/);
  assert.notEqual(new URL(url).port, '19510', 'both moved to free ports');
});

test('validate: a second YAML document gets a Switchyard message with its line:column', () => {
  const res = validate(`listeners:
  - address: 127.0.0.1:0
routes:
  - respond: { status: 200 }
---
routes: []
`);
  assert.equal(res.status, 1, res.stdout);
  assert.equal(
    res.stderr,
    'the config must be a single YAML document; a second one starts here (5:1)\n',
  );
});

test('validate: listener headersTimeout, idleTimeout and maxHeaderSize of 0 are refused; requestTimeout 0 is off', () => {
  const bad = validate(`listeners:
  - address: 127.0.0.1:0
    limits: { headersTimeout: 0s, requestTimeout: 0s, idleTimeout: 0ms, maxHeaderSize: 0 }
routes:
  - respond: { status: 200 }
`);
  assert.equal(bad.status, 1, bad.stdout);
  assert.deepEqual(
    bad.stderr
      .trim()
      .split('\n')
      .map((l) => l.replace(/: .*\(/, ' (')),
    [
      'listeners[0].limits.headersTimeout (3:31)',
      'listeners[0].limits.idleTimeout (3:68)',
      'listeners[0].limits.maxHeaderSize (3:88)',
    ],
    bad.stderr,
  );
  assert.match(bad.stderr, /headersTimeout: must be longer than 0, got "0s"/);
  assert.match(bad.stderr, /idleTimeout: must be longer than 0, got "0ms".*forever/);
  assert.match(bad.stderr, /maxHeaderSize: must be larger than 0, got 0/);
  const good = validate(`listeners:
  - address: 127.0.0.1:0
    limits: { headersTimeout: 1s, requestTimeout: 0s, idleTimeout: 1ms, maxHeaderSize: 1KiB }
routes:
  - respond: { status: 200 }
`);
  assert.equal(good.status, 0, good.stderr);
});

test('validate: basicAuth.users takes bcrypt or scrypt hashes only (a plain-text password said "config OK")', () => {
  const config = (users) => `listeners:
  - address: 127.0.0.1:0
routes:
  - respond: { body: x }
    basicAuth:
      users:
${users}
`;
  const tail = 'a'.repeat(53);
  const bad = validate(
    config(`        eve: hunter2
        mallory: "$2x$10$${tail}"
        trent: "$2b$03$${tail}"
        sybil: "$scrypt$ln=0,r=8,p=1$c2FsdA==$aGFzaA=="`),
  );
  assert.equal(bad.status, 1, bad.stdout);
  const lines = bad.stderr.trim().split('\n');
  assert.deepEqual(
    lines.map((l) => l.replace(/: .*\(/, ' (')),
    [
      'routes[0].basicAuth.users.eve (7:14)',
      'routes[0].basicAuth.users.mallory (8:18)',
      'routes[0].basicAuth.users.trent (9:16)',
      'routes[0].basicAuth.users.sybil (10:16)',
    ],
    bad.stderr,
  );
  // The message says how to make a hash, and never repeats the password.
  assert.match(
    lines[0],
    /: not a bcrypt .* hash; store a hash, never the password; .*htpasswd -nbB/,
  );
  assert.doesNotMatch(bad.stderr, /hunter2/);
  assert.match(lines[1], /: not a bcrypt/);
  assert.match(lines[2], /: bcrypt cost must be 04 to 31, got 03/);
  assert.match(lines[3], /: scrypt ln must be 1 to 31/);

  const bcrypt2b = bcrypt.hashSync('wonderland', 4);
  const salt = randomBytes(16);
  const scrypt = `$scrypt$ln=10,r=8,p=1$${salt.toString('base64')}$${scryptSync('builder', salt, 32, { N: 2 ** 10, r: 8, p: 1 }).toString('base64')}`;
  const good = validate(
    config(`        alice: "${bcrypt2b}"
        carol: "${bcrypt2b.replace('$2b$', '$2y$')}"
        dave: "${bcrypt2b.replace('$2b$', '$2a$')}"
        bob: "${scrypt}"`),
  );
  assert.equal(good.status, 0, good.stderr);
  assert.equal(good.stdout, 'config OK\n');
});
