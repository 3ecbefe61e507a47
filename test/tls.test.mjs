// TLS listeners: SNI selection by the certificates' own names, TLS 1.2 minimum, session
// resumption, clear start-up errors, expiry warnings, reloads (file change and SIGHUP path)
// without dropping open connections, and mTLS with the client subject placeholder.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import tls from 'node:tls';
import { copyFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { startOrigin, startProxy, configFrom } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';
import { Switchyard } from '../dist/main.js';

let pki;
let origin;
let certA; // a.test, default (first)
let certWild; // *.wild.test
let clientCert;
const seen = [];

before(async () => {
  pki = createPki();
  certA = pki.issue(['a.test', 'www.a.test']);
  certWild = pki.issue(['*.wild.test']);
  clientCert = pki.issue(['alice'], { client: true, org: 'Example Org' });
  origin = await startOrigin((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`ok ${req.headers['x-client-subject'] ?? ''}`);
  });
});

after(async () => {
  await origin.close();
});

function tlsYaml(certs, extra = '') {
  return `
listeners:
  - name: websecure
    address: "127.0.0.1:0"
    tls:
      certificates:
${certs.map((c) => `        - { cert: "${c.certPath}", key: "${c.keyPath}" }`).join('\n')}
${extra}
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - upstream: app
    requestHeaders: { set: { X-Client-Subject: "{tls_client_subject}" } }
`;
}

/** A TLS handshake only; resolves { cn, session, reused, protocol, socket }. */
function handshake(port, options = {}) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: pki.ca, ...options }, () => {
      const cert = socket.getPeerCertificate();
      resolve({
        cn: cert.subject?.CN,
        reused: socket.isSessionReused(),
        protocol: socket.getProtocol(),
        socket,
      });
    });
    socket.once('error', reject);
  });
}

function get(url, options = {}) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: pki.ca, agent: false, ...options }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

test('SNI picks the certificate by its own names: exact, wildcard, and the first as default', async () => {
  const proxy = await startProxy(tlsYaml([certA, certWild]));
  try {
    assert.match(proxy.url, /^https:\/\//);
    const exact = await handshake(proxy.port, { servername: 'www.a.test' });
    assert.equal(exact.cn, 'a.test');
    exact.socket.destroy();
    const wild = await handshake(proxy.port, { servername: 'api.wild.test' });
    assert.equal(wild.cn, '*.wild.test');
    wild.socket.destroy();
    // A wildcard covers one label only; deeper names get the default.
    const deep = await handshake(proxy.port, {
      servername: 'x.api.wild.test',
      checkServerIdentity: () => undefined,
    });
    assert.equal(deep.cn, 'a.test');
    deep.socket.destroy();
    const unknown = await handshake(proxy.port, {
      servername: 'other.test',
      checkServerIdentity: () => undefined,
    });
    assert.equal(unknown.cn, 'a.test');
    unknown.socket.destroy();
    // And HTTPS requests are proxied, with X-Forwarded-Proto https.
    const res = await get(`https://127.0.0.1:${proxy.port}/x`, { servername: 'a.test' });
    assert.equal(res.status, 200);
    assert.equal(seen.at(-1)['x-forwarded-proto'], 'https');
  } finally {
    await proxy.close();
  }
});

test('TLS 1.1 and older are refused; TLS 1.2 uses a forward-secret AEAD cipher', async () => {
  const proxy = await startProxy(tlsYaml([certA]));
  try {
    await assert.rejects(
      handshake(proxy.port, { servername: 'a.test', minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }),
    );
    const v12 = await handshake(proxy.port, { servername: 'a.test', maxVersion: 'TLSv1.2' });
    assert.equal(v12.protocol, 'TLSv1.2');
    assert.match(v12.socket.getCipher().name, /^ECDHE-(ECDSA|RSA)-(AES\d+-GCM|CHACHA20)/);
    v12.socket.destroy();
    // A weak TLS 1.2 suite offered alone is refused.
    await assert.rejects(
      handshake(proxy.port, { servername: 'a.test', maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' }),
    );
  } finally {
    await proxy.close();
  }
});

test('sessions are resumed (TLS 1.2 and TLS 1.3)', async () => {
  const proxy = await startProxy(tlsYaml([certA, certWild]));
  try {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3']) {
      const first = await new Promise((resolve, reject) => {
        const socket = tls.connect({
          host: '127.0.0.1',
          port: proxy.port,
          servername: 'x.wild.test',
          ca: pki.ca,
          maxVersion,
        });
        socket.once('session', (session) => {
          resolve(session);
          socket.end();
        });
        socket.on('data', () => {});
        socket.once('secureConnect', () => {
          // TLS 1.3 sends its ticket after the handshake; poke the server to flush it.
          socket.write('GET / HTTP/1.1\r\nHost: x.wild.test\r\nConnection: close\r\n\r\n');
        });
        socket.once('error', reject);
      });
      const second = await handshake(proxy.port, {
        servername: 'x.wild.test',
        session: first,
        maxVersion,
      });
      assert.equal(second.reused, true, `${maxVersion} session resumed`);
      second.socket.destroy();
    }
  } finally {
    await proxy.close();
  }
});

test('start-up errors name the key and the problem: missing file, key mismatch, expired', async () => {
  const missing = { certPath: `${pki.dir}/nope.pem`, keyPath: certA.keyPath };
  await assert.rejects(
    Switchyard.start(configFrom(tlsYaml([missing])), { announce: false, log: () => {} }),
    (err) => {
      assert.match(err.message, /listeners\.websecure\.tls\.certificates\[0\]\.cert/);
      assert.match(err.message, /cannot read the certificate file .*nope\.pem.*no such file/);
      return true;
    },
  );
  const mismatched = { certPath: certA.certPath, keyPath: certWild.keyPath };
  await assert.rejects(
    Switchyard.start(configFrom(tlsYaml([certA, mismatched])), { announce: false, log: () => {} }),
    /certificates\[1\]: the key .* does not match the certificate/,
  );
  const expired = pki.issue(['old.test'], {
    notBefore: '20200101000000Z',
    notAfter: '20200201000000Z',
  });
  await assert.rejects(
    Switchyard.start(configFrom(tlsYaml([expired])), { announce: false, log: () => {} }),
    /certificates\[0\]\.cert: the certificate .* expired on 2020-02-01T00:00:00\.000Z; renew it/,
  );
});

test('a certificate close to expiry is served with a warning in the log', async () => {
  const soon = pki.issue(['soon.test'], { days: 3 });
  const proxy = await startProxy(tlsYaml([soon]));
  try {
    const warning = proxy.logs.find(
      (l) => l.level === 'warn' && /expires in \d+ days/.test(l.message),
    );
    assert.ok(warning, 'expiry warning logged');
    assert.deepEqual(warning.names, ['soon.test']);
  } finally {
    await proxy.close();
  }
});

test('certificate files changed on disk are reloaded without dropping open connections', async () => {
  const live = { certPath: `${pki.dir}/live.pem`, keyPath: `${pki.dir}/live-key.pem` };
  copyFileSync(certA.certPath, live.certPath);
  copyFileSync(certA.keyPath, live.keyPath);
  const proxy = await startProxy(tlsYaml([live]));
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: pki.ca });
  try {
    const before = await get(`https://127.0.0.1:${proxy.port}/1`, { agent, servername: 'a.test' });
    assert.equal(before.status, 200);
    const next = pki.issue(['a.test', 'renewed.test']);
    // A renewal tool writes the key, then the certificate.
    writeFileSync(live.keyPath, next.key);
    writeFileSync(live.certPath, next.cert);
    const deadline = Date.now() + 10_000;
    const reloaded = () =>
      proxy.logs.some(
        (l) => l.message === 'certificates reloaded' && l.names.includes('renewed.test'),
      );
    while (!reloaded()) {
      if (Date.now() > deadline) throw new Error('no reload after the files changed');
      await new Promise((r) => setTimeout(r, 50));
    }
    const renewed = await handshake(proxy.port, { servername: 'renewed.test' });
    assert.equal(renewed.cn, 'a.test');
    assert.equal(
      renewed.socket.getPeerCertificate().subjectaltname,
      'DNS:a.test, DNS:renewed.test',
    );
    renewed.socket.destroy();
    // The keep-alive connection opened before the reload still works.
    let reused = false;
    const res = await new Promise((resolve, reject) => {
      const req = https.get(
        `https://127.0.0.1:${proxy.port}/2`,
        { agent, servername: 'a.test' },
        (r) => {
          r.resume();
          r.on('end', () => resolve(r));
        },
      );
      req.on('socket', (s) => (reused = s.listenerCount('secureConnect') === 0 && !s.connecting));
      req.on('error', reject);
    });
    assert.equal(res.statusCode, 200);
    assert.equal(reused, true, 'the request went on the connection opened before the reload');
  } finally {
    agent.destroy();
    await proxy.close();
  }
});

test('a reload (SIGHUP path) switches certificates; a bad certificate aborts it and the old one keeps serving', async () => {
  const proxy = await startProxy(tlsYaml([certA]));
  try {
    await proxy.proxy.reload(configFrom(tlsYaml([certWild, certA])));
    const now = await handshake(proxy.port, {
      servername: 'nomatch.test',
      checkServerIdentity: () => undefined,
    });
    assert.equal(now.cn, '*.wild.test', 'the new first certificate is the default');
    now.socket.destroy();
    const bad = { certPath: certA.certPath, keyPath: certWild.keyPath };
    await assert.rejects(proxy.proxy.reload(configFrom(tlsYaml([bad]))), /does not match/);
    const still = await handshake(proxy.port, { servername: 'x.wild.test' });
    assert.equal(still.cn, '*.wild.test');
    still.socket.destroy();
  } finally {
    await proxy.close();
  }
});

test('mTLS required: no client certificate, no connection; a verified subject reaches the upstream', async () => {
  const proxy = await startProxy(
    tlsYaml([certA], `      clientAuth: { ca: "${pki.caPath}", required: true }`),
  );
  try {
    await assert.rejects(async () => {
      // TLS 1.3 reports the rejection on the first read, so make a request.
      await get(`https://127.0.0.1:${proxy.port}/`, { servername: 'a.test' });
    });
    const res = await get(`https://127.0.0.1:${proxy.port}/`, {
      servername: 'a.test',
      cert: clientCert.cert,
      key: clientCert.key,
    });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok CN=alice,O=Example Org');
    // A certificate from another CA is refused.
    const other = createPki('Other CA').issue(['mallory'], { client: true });
    await assert.rejects(
      get(`https://127.0.0.1:${proxy.port}/`, {
        servername: 'a.test',
        cert: other.cert,
        key: other.key,
      }),
    );
  } finally {
    await proxy.close();
  }
});

test('mTLS optional: anonymous clients pass with an empty subject, verified ones carry it', async () => {
  const proxy = await startProxy(
    tlsYaml([certA], `      clientAuth: { ca: "${pki.caPath}", required: false }`),
  );
  try {
    const anonymous = await get(`https://127.0.0.1:${proxy.port}/`, { servername: 'a.test' });
    assert.equal(anonymous.body, 'ok ');
    const other = createPki('Other CA').issue(['mallory'], { client: true });
    const unverified = await get(`https://127.0.0.1:${proxy.port}/`, {
      servername: 'a.test',
      cert: other.cert,
      key: other.key,
    });
    assert.equal(unverified.body, 'ok ', 'an unverified certificate gives no subject');
    const verified = await get(`https://127.0.0.1:${proxy.port}/`, {
      servername: 'a.test',
      cert: clientCert.cert,
      key: clientCert.key,
    });
    assert.equal(verified.body, 'ok CN=alice,O=Example Org');
  } finally {
    await proxy.close();
  }
});

test('a TLS listener stops cleanly with a connection open', async () => {
  const proxy = await startProxy(tlsYaml([certA]));
  const conn = await handshake(proxy.port, { servername: 'a.test' });
  const closed = once(conn.socket, 'close');
  await proxy.close();
  await closed;
});
