// Automatic HTTPS end to end against pebble (Debian's ACME test server), started by the test on
// loopback: pebble validates HTTP-01 through Switchyard's plain listener and TLS-ALPN-01 through
// its TLS listener, and a tiny DNS server here resolves every name to 127.0.0.1 for pebble.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { configFrom, startProxy } from './helpers.mjs';
import { Switchyard } from '../dist/main.js';
import { AcmeManager } from '../dist/acme/index.js';

const hasPebble = (() => {
  try {
    execFileSync('pebble', ['-h'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    return err.code !== 'ENOENT' && existsSync('/usr/bin/pebble');
  }
})();
const skip = hasPebble ? false : 'pebble is not installed (apt-get install pebble)';

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

before(async () => {
  if (skip) return;
  pebble = await startPebble();
  dir = pebble.dir;
  ports = pebble.ports;
});

after(async () => {
  await pebble?.stop();
});

function directory() {
  return `https://127.0.0.1:${ports.api}/dir`;
}

/** pebble's issuing root, from its management API. */
const pebbleRoot = () => pebbleRootOf(dir, ports.management);

function yamlFor({ names, plain = true, storage, extra = '' }) {
  return `
listeners:
${plain ? `  - name: web\n    address: 127.0.0.1:${ports.http}\n` : ''}  - name: websecure
    address: 127.0.0.1:${ports.tls}
    tls: { certificates: [] }
routes:
${plain ? '  - match: { listener: web }\n    redirect: { location: "https://{host}{uri}", status: 308 }\n' : ''}  - match: { host: [${names.join(', ')}] }
    respond: { status: 200, body: "hello over acme\\n" }
acme:
  email: ops@example.com
  directory: ${directory()}
  caRoot: ${path.join(dir, 'api-ca.pem')}
  storage: ${storage}
${extra}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

test(
  'HTTP-01: a route host gets a certificate from pebble, served by SNI and chaining to its root',
  { skip },
  async () => {
    const storage = path.join(dir, 'store-http');
    const p = await startProxy(yamlFor({ names: ['a.example.com'], storage }));
    try {
      const cert = await withTimeout(
        p.proxy.acme.whenCertificate('a.example.com'),
        20000,
        `certificate; logs: ${JSON.stringify(p.logs)}`,
      );
      assert.deepEqual(cert.names, ['a.example.com']);
      const obtaining = p.logs.find((l) => l.message === 'acme: obtaining certificate');
      assert.deepEqual(obtaining.challenges, ['http-01', 'tls-alpn-01']);
      const root = await pebbleRoot();
      const res = await fetchOverTls(ports.tls, 'a.example.com', root);
      assert.equal(res.authorized, true, String(res.error));
      assert.equal(res.peer.subjectaltname, 'DNS:a.example.com');
      assert.match(res.response, /^HTTP\/1\.1 200/);
      assert.match(res.response, /hello over acme/);
      // Stored for the next start: account and certificate, under the directory's folder.
      const folder = path.join(storage, `127.0.0.1_${ports.api}_dir`);
      assert.ok(existsSync(path.join(folder, 'account.json')));
      assert.equal(
        readFileSync(path.join(folder, 'certificates/a.example.com/cert.pem'), 'utf8'),
        cert.cert,
      );
    } finally {
      await p.close();
    }

    // A restart loads the stored certificate: it serves at once and nothing is ordered.
    const again = await startProxy(yamlFor({ names: ['a.example.com'], storage }));
    try {
      const loaded = again.proxy.acme.certificateFor('a.example.com');
      assert.ok(loaded, 'stored certificate loaded at start');
      const res = await fetchOverTls(ports.tls, 'a.example.com', await pebbleRoot());
      assert.equal(res.authorized, true);
      assert.equal(
        new X509Certificate(res.peer.raw).serialNumber,
        new X509Certificate(loaded.cert).serialNumber,
      );
      assert.equal(
        again.logs.some((l) => l.message === 'acme: obtaining certificate'),
        false,
      );
    } finally {
      await again.close();
    }

    // Past 2/3 of its lifetime (an injected clock) the certificate is renewed: a new serial.
    const logs = [];
    const lifetimeShift = (() => {
      const x = new X509Certificate(
        readFileSync(
          path.join(storage, `127.0.0.1_${ports.api}_dir`, 'certificates/a.example.com/cert.pem'),
        ),
      );
      const from = new Date(x.validFrom).getTime();
      const to = new Date(x.validTo).getTime();
      return from + ((to - from) * 3) / 4 - Date.now();
    })();
    const renewing = await Switchyard.start(
      configFrom(yamlFor({ names: ['a.example.com'], storage })),
      {
        announce: false,
        log: (level, message, fields) => logs.push({ level, message, ...fields }),
        acme: { now: () => Date.now() + lifetimeShift },
      },
    );
    try {
      const old = renewing.acme.certificateFor('a.example.com');
      assert.ok(old);
      const renewed = await withTimeout(
        renewing.acme.whenCertificate('a.example.com', old),
        20000,
        `renewal; logs: ${JSON.stringify(logs)}`,
      );
      assert.notEqual(renewed.serialNumber, old.serialNumber);
      assert.ok(logs.some((l) => l.message === 'acme: certificate renewed'));
      const res = await fetchOverTls(ports.tls, 'a.example.com', await pebbleRoot());
      assert.equal(new X509Certificate(res.peer.raw).serialNumber, renewed.serialNumber);
    } finally {
      await renewing.stop(1000);
    }
  },
);

test(
  'TLS-ALPN-01: with only a TLS listener, pebble validates over acme-tls/1',
  { skip },
  async () => {
    const storage = path.join(dir, 'store-alpn');
    const p = await startProxy(yamlFor({ names: ['b.example.com'], storage, plain: false }));
    try {
      const cert = await withTimeout(
        p.proxy.acme.whenCertificate('b.example.com'),
        20000,
        `certificate; logs: ${JSON.stringify(p.logs)}`,
      );
      assert.deepEqual(cert.names, ['b.example.com']);
      const obtaining = p.logs.find((l) => l.message === 'acme: obtaining certificate');
      assert.deepEqual(obtaining.challenges, ['tls-alpn-01']);
      const res = await fetchOverTls(ports.tls, 'b.example.com', await pebbleRoot());
      assert.equal(res.authorized, true, String(res.error));
      assert.match(res.response, /hello over acme/);
      // No validation pending (here or, through the shared store, in another instance): a
      // handshake that offers only acme-tls/1 fails.
      await assert.rejects(
        new Promise((resolve, reject) => {
          const s = tls.connect(
            {
              host: '127.0.0.1',
              port: ports.tls,
              servername: 'b.example.com',
              ALPNProtocols: ['acme-tls/1'],
              rejectUnauthorized: false,
            },
            resolve,
          );
          s.on('error', reject);
        }),
        /no application protocol|disconnected before secure TLS connection/,
      );
    } finally {
      await p.close();
    }
  },
);

test(
  'a failing directory is retried with growing delays, and handshakes for the name fail cleanly',
  { skip },
  async () => {
    const closedPort = await freePort();
    const logs = [];
    const failures = [];
    let notify;
    const config = configFrom(
      yamlFor({
        names: ['c.example.com'],
        storage: path.join(dir, 'store-fail'),
        plain: false,
      }).replace(directory(), `https://127.0.0.1:${closedPort}/dir`),
    );
    const proxy = await Switchyard.start(config, {
      announce: false,
      log: (level, message, fields) => {
        logs.push({ level, message, ...fields });
        if (message === 'acme: order failed; will retry') {
          failures.push(fields);
          notify?.();
        }
      },
      acme: { retryBaseMs: 50, maxRetryMs: 100 },
    });
    try {
      while (failures.length < 3) await new Promise((r) => (notify = r));
      assert.deepEqual(
        failures.map((f) => f.failures),
        [1, 2, 3],
      );
      // Exponential: 50 ms, then 100 ms, then capped at maxRetryMs.
      assert.deepEqual(
        failures.slice(0, 3).map((f) => f.retryInMs),
        [50, 100, 100],
      );
      const status = proxy.acme.status().find((s) => s.name === 'c.example.com');
      assert.ok(status.failures >= 3);
      assert.ok(status.lastError);
      // No certificate for the name: the handshake fails instead of serving a wrong one.
      await assert.rejects(
        new Promise((resolve, reject) => {
          const s = tls.connect(
            {
              host: '127.0.0.1',
              port: ports.tls,
              servername: 'c.example.com',
              rejectUnauthorized: false,
            },
            resolve,
          );
          s.on('error', reject);
        }),
      );
    } finally {
      await proxy.stop(1000);
    }
  },
);

test(
  'unit: names come from exact route hosts on TLS listeners not served by a configured certificate',
  { skip },
  () => {
    const config = configFrom(`
listeners:
  - { name: web, address: "127.0.0.1:0" }
  - { name: websecure, address: "127.0.0.1:0", tls: { certificates: [] } }
routes:
  - match: { host: [x.example.com, "*.wild.example.com", 127.0.0.1, localhost, covered.example.com] }
    respond: { status: 200 }
  - match: { host: [plain-only.example.com], listener: web }
    respond: { status: 200 }
acme: { email: a@example.com, storage: ${dir} }
`);
    const manager = new AcmeManager({ storage: dir }, { log: () => undefined });
    manager.update(config, (_l, name) => name === 'covered.example.com');
    assert.deepEqual(
      manager.status().map((s) => s.name),
      ['x.example.com'],
    );
  },
);
