// ACME state shared through Redis: two Switchyard instances (one process, own storage folders)
// share one real redis-server and one pebble. Only the instance holding the Redis order lock
// orders; the other waits for the certificate in Redis and serves the same one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Redis } from 'ioredis';
import { configFrom, sparePort, startRedis, stopRedis } from './helpers.mjs';
import { Switchyard } from '../dist/main.js';

function installed(cmd, file) {
  try {
    execFileSync(cmd, ['-h'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    return err.code !== 'ENOENT' && existsSync(file);
  }
}
const skip = !installed('pebble', '/usr/bin/pebble')
  ? 'pebble is not installed (apt-get install pebble)'
  : !installed('redis-server', '/usr/bin/redis-server')
    ? 'redis-server is not installed'
    : false;

/** A DNS server answering every A query with 127.0.0.1 (and AAAA with no address). */
import {
  freePort,
  startPebble,
  fetchOverTls,
  pebbleRoot as pebbleRootOf,
} from './acme-helpers.mjs';

let dir;
let pebble;
let ports;
let redis;
let redisPort;

before(async () => {
  if (skip) return;
  redisPort = await sparePort();
  redis = await startRedis(redisPort);
  pebble = await startPebble();
  dir = pebble.dir;
  ports = pebble.ports;
});

after(async () => {
  await pebble?.stop();
  if (redis) await stopRedis(redis);
});

/** pebble's issuing root, from its management API. */
const pebbleRoot = () => pebbleRootOf(dir, ports.management);

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function directory() {
  return `https://127.0.0.1:${ports.api}/dir`;
}

function yamlFor({ name, http, tls: tlsPort, storage, redisUrl }) {
  return `
listeners:
  - name: web
    address: 127.0.0.1:${http}
  - name: websecure
    address: 127.0.0.1:${tlsPort}
    tls: { certificates: [] }
routes:
  - match: { listener: web }
    redirect: { location: "https://{host}{uri}", status: 308 }
  - match: { host: [${name}] }
    respond: { status: 200, body: "hello over acme\\n" }
acme:
  email: ops@example.com
  directory: ${directory()}
  caRoot: ${path.join(dir, 'api-ca.pem')}
  storage: ${storage}
redis: { url: "${redisUrl}" }
`;
}

/** Starts an instance; `seen(message)` resolves when that log message first appears. */
async function startInstance(yaml) {
  const logs = [];
  const waiting = [];
  const proxy = await Switchyard.start(configFrom(yaml), {
    announce: false,
    log: (level, message, fields) => {
      logs.push({ level, message, ...fields });
      for (const w of waiting) if (w.message === message) w.resolve();
    },
    acme: { pollMs: 200 },
  });
  const seen = (message) =>
    logs.some((l) => l.message === message)
      ? Promise.resolve()
      : new Promise((resolve) => waiting.push({ message, resolve }));
  return { proxy, logs, seen, close: () => proxy.stop(1000) };
}

const issuedCount = () => (pebble.output().match(/Issued certificate serial/g) ?? []).length;
const orders = (logs) => logs.filter((l) => l.message === 'acme: obtaining certificate').length;

test(
  'two instances sharing Redis: one orders, both serve the same certificate; a third loads it',
  { skip },
  async () => {
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const name = 'shared.example.com';
    const issuedBefore = issuedCount();
    // A answers pebble's challenges (pebble validates on its fixed ports); B listens elsewhere.
    const a = await startInstance(
      yamlFor({ name, http: ports.http, tls: ports.tls, storage: path.join(dir, 'a'), redisUrl }),
    );
    const other = { http: await freePort(), tls: await freePort() };
    let b;
    try {
      await withTimeout(a.seen('acme: obtaining certificate'), 10000, 'A starts ordering');
      b = await startInstance(yamlFor({ name, ...other, storage: path.join(dir, 'b'), redisUrl }));
      const [certA, certB] = await withTimeout(
        Promise.all([a.proxy.acme.whenCertificate(name), b.proxy.acme.whenCertificate(name)]),
        25000,
        `certificates; A: ${JSON.stringify(a.logs)} B: ${JSON.stringify(b.logs)}`,
      );
      assert.equal(certB.serialNumber, certA.serialNumber);
      assert.equal(orders(a.logs), 1);
      assert.equal(orders(b.logs), 0, 'B never orders');
      assert.ok(
        b.logs.some(
          (l) => l.message === 'acme: another instance is ordering; waiting for its certificate',
        ),
      );
      assert.ok(b.logs.some((l) => l.message === 'acme: certificate loaded from redis'));
      assert.equal(issuedCount() - issuedBefore, 1, 'pebble issued exactly one certificate');

      const root = await pebbleRoot();
      for (const port of [ports.tls, other.tls]) {
        const res = await fetchOverTls(port, name, root);
        assert.equal(res.authorized, true, String(res.error));
        assert.equal(new X509Certificate(res.peer.raw).serialNumber, certA.serialNumber);
        assert.match(res.response, /hello over acme/);
      }
      // B stored it on its own disk as well.
      const folder = `127.0.0.1_${ports.api}_dir`;
      assert.equal(
        readFileSync(path.join(dir, 'b', folder, 'certificates', name, 'cert.pem'), 'utf8'),
        certA.cert,
      );
      // What Redis holds: the certificate with key and expiry, one account, no lock left.
      const client = new Redis(redisUrl);
      try {
        const prefix = `switchyard:acme:${folder}:`;
        const stored = JSON.parse(await client.get(`${prefix}cert:${name}`));
        assert.equal(stored.cert, certA.cert);
        assert.equal(stored.key, certA.key);
        assert.equal(stored.notAfter, certA.notAfter);
        assert.match(JSON.parse(await client.get(`${prefix}account`)).key, /PRIVATE KEY/);
        assert.equal(await client.exists(`${prefix}lock:${name}`), 0);
      } finally {
        client.disconnect();
      }
    } finally {
      await b?.close();
      await a.close();
    }

    // A third instance with an empty disk serves the shared certificate from the start.
    const c = await startInstance(
      yamlFor({ name, ...other, storage: path.join(dir, 'c'), redisUrl }),
    );
    try {
      const loaded = c.proxy.acme.certificateFor(name);
      assert.ok(loaded, 'loaded from redis at start');
      const res = await fetchOverTls(other.tls, name, await pebbleRoot());
      assert.equal(new X509Certificate(res.peer.raw).serialNumber, loaded.serialNumber);
      assert.equal(orders(c.logs), 0);
      assert.equal(issuedCount() - issuedBefore, 1);
    } finally {
      await c.close();
    }
  },
);

test(
  'an unreachable Redis falls back to disk-only ordering with a log line',
  { skip },
  async () => {
    const deadUrl = `redis://127.0.0.1:${await sparePort()}`;
    const name = 'alone.example.com';
    const storage = path.join(dir, 'alone');
    const inst = await startInstance(
      yamlFor({ name, http: ports.http, tls: ports.tls, storage, redisUrl: deadUrl }),
    );
    try {
      const cert = await withTimeout(
        inst.proxy.acme.whenCertificate(name),
        25000,
        `certificate; logs: ${JSON.stringify(inst.logs)}`,
      );
      assert.deepEqual(cert.names, [name]);
      assert.ok(
        inst.logs.some(
          (l) => l.message === 'acme: redis unreachable; certificates are stored on disk only',
        ),
      );
      const res = await fetchOverTls(ports.tls, name, await pebbleRoot());
      assert.equal(new X509Certificate(res.peer.raw).serialNumber, cert.serialNumber);
      assert.ok(
        existsSync(
          path.join(storage, `127.0.0.1_${ports.api}_dir`, 'certificates', name, 'cert.pem'),
        ),
      );
    } finally {
      await inst.close();
    }
  },
);

/**
 * An instance that manages no name (its one route matches every host) but has `acme` and
 * listens where pebble validates: it can only answer from what the ordering instance shared.
 */
function responderYaml({ http, tls: tlsPort, storage, redisUrl }) {
  return `
listeners:
${http === undefined ? '' : `  - { name: web, address: "127.0.0.1:${http}" }\n`}  - { name: websecure, address: "127.0.0.1:${tlsPort}", tls: { certificates: [] } }
routes:
  - respond: { status: 200, body: "responder\\n" }
acme:
  email: ops@example.com
  directory: ${directory()}
  caRoot: ${path.join(dir, 'api-ca.pem')}
  storage: ${storage}
${redisUrl ? `redis: { url: "${redisUrl}" }` : ''}
`;
}

/** The ordering instance: `name` on its own ports, which pebble never connects to. */
function ordererYaml({ name, http, tls: tlsPort, storage, redisUrl }) {
  return `
listeners:
${http === undefined ? '' : `  - { name: web, address: "127.0.0.1:${http}" }\n`}  - { name: websecure, address: "127.0.0.1:${tlsPort}", tls: { certificates: [] } }
routes:
  - match: { host: [${name}] }
    respond: { status: 200, body: "ordered by A\\n" }
acme:
  email: ops@example.com
  directory: ${directory()}
  caRoot: ${path.join(dir, 'api-ca.pem')}
  storage: ${storage}
${redisUrl ? `redis: { url: "${redisUrl}" }` : ''}
`;
}

/** Runs an order on A while pebble's validation lands on B; returns A's certificate. */
async function orderThroughOther({ name, challenge, shareStorage, redisUrl }) {
  const issuedBefore = issuedCount();
  const storageA = path.join(dir, `${name}-a`);
  const storageB = shareStorage ? storageA : path.join(dir, `${name}-b`);
  // B takes pebble's validation port for the challenge type; A has spare ports only.
  const b = await startInstance(
    responderYaml({
      http: challenge === 'http-01' ? ports.http : undefined,
      tls: challenge === 'tls-alpn-01' ? ports.tls : await freePort(),
      storage: storageB,
      redisUrl,
    }),
  );
  let a;
  try {
    a = await startInstance(
      ordererYaml({
        name,
        http: challenge === 'http-01' ? await freePort() : undefined,
        tls: await freePort(),
        storage: storageA,
        redisUrl,
      }),
    );
    const cert = await withTimeout(
      a.proxy.acme.whenCertificate(name),
      25000,
      `certificate; A: ${JSON.stringify(a.logs)} B: ${JSON.stringify(b.logs)}`,
    );
    assert.deepEqual(cert.names, [name]);
    assert.equal(orders(a.logs), 1, 'A ordered once');
    assert.ok(
      !a.logs.some((l) => l.message === 'acme: order failed; will retry'),
      'the first order succeeded',
    );
    const started = a.logs.find((l) => l.message === 'acme: obtaining certificate');
    // The challenge tried first; pebble validates it on B's port only (A's ports are spare).
    assert.equal(started.challenges[0], challenge);
    assert.equal(orders(b.logs), 0, 'B never orders');
    assert.equal(issuedCount() - issuedBefore, 1);
    // The answers are withdrawn once the order is done.
    const folder = `127.0.0.1_${ports.api}_dir`;
    assert.ok(!existsSync(path.join(storageA, folder, 'challenges', challenge, name)));
    return { cert, folder };
  } finally {
    await a?.close();
    await b.close();
  }
}

test(
  'HTTP-01 through Redis: A holds the lock and orders, pebble validates on B, the certificate is issued',
  { skip },
  async () => {
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const { folder } = await orderThroughOther({
      name: 'relay-http.example.com',
      challenge: 'http-01',
      shareStorage: false,
      redisUrl,
    });
    const client = new Redis(redisUrl);
    try {
      assert.deepEqual(await client.keys(`switchyard:acme:${folder}:challenge:*`), []);
    } finally {
      client.disconnect();
    }
  },
);

test(
  'TLS-ALPN-01 through Redis: the acme-tls/1 handshake on B serves the certificate A made',
  { skip },
  async () => {
    await orderThroughOther({
      name: 'relay-alpn.example.com',
      challenge: 'tls-alpn-01',
      shareStorage: false,
      redisUrl: `redis://127.0.0.1:${redisPort}`,
    });
  },
);

test(
  'workers sharing acme.storage (no Redis): HTTP-01 answered by the worker that did not order',
  { skip },
  async () => {
    await orderThroughOther({
      name: 'relay-disk.example.com',
      challenge: 'http-01',
      shareStorage: true,
      redisUrl: undefined,
    });
  },
);

test('an unknown challenge token with sharing on is routed as usual', { skip }, async () => {
  const httpPort = await freePort();
  const inst = await startInstance(
    responderYaml({
      http: httpPort,
      tls: await freePort(),
      storage: path.join(dir, 'unknown-token'),
      redisUrl: `redis://127.0.0.1:${redisPort}`,
    }),
  );
  try {
    for (const token of ['no-such-token', '..%2f..%2faccount.json']) {
      const res = await fetch(`http://127.0.0.1:${httpPort}/.well-known/acme-challenge/${token}`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'responder\n');
    }
  } finally {
    await inst.close();
  }
});
