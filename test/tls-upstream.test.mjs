// TLS to upstreams: verification on by default (untrusted or misnamed = 502), a private CA,
// the SNI server name, client certificates, insecureSkipVerify, and HTTP/2 to upstreams over
// TLS (protocol: h2) and cleartext (protocol: h2c).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http2 from 'node:http2';
import { once } from 'node:events';
import { startProxy, request, configFrom } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';
import { Switchyard } from '../dist/main.js';

let pki;
let backendCert;
let clientCert;
const servers = [];
const urls = {};

async function listen(server) {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  servers.push(server);
  return server.address().port;
}

function describe(req) {
  const peer = req.socket.getPeerCertificate?.();
  return JSON.stringify({
    version: req.httpVersion,
    sni: req.socket.servername ?? null,
    client: peer?.subject?.CN ?? null,
    host: req.headers.host ?? req.headers[':authority'],
  });
}

before(async () => {
  pki = createPki();
  backendCert = pki.issue(['backend.test']);
  clientCert = pki.issue(['proxy-client'], { client: true });
  const handler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(describe(req));
  };
  urls.https = `https://127.0.0.1:${await listen(
    https.createServer({ cert: backendCert.cert, key: backendCert.key }, handler),
  )}`;
  urls.mtls = `https://127.0.0.1:${await listen(
    https.createServer(
      {
        cert: backendCert.cert,
        key: backendCert.key,
        ca: pki.ca,
        requestCert: true,
        rejectUnauthorized: true,
      },
      handler,
    ),
  )}`;
  urls.h2 = `https://127.0.0.1:${await listen(
    http2.createSecureServer({ cert: backendCert.cert, key: backendCert.key }, handler),
  )}`;
  urls.h2c = `http://127.0.0.1:${await listen(http2.createServer(handler))}`;
});

after(async () => {
  for (const server of servers) {
    server.closeAllConnections?.();
    server.close();
  }
});

function upstreamYaml(upstreams) {
  const names = Object.keys(upstreams);
  return `
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
${names.map((n) => `  ${n}: ${upstreams[n]}`).join('\n')}
routes:
${names.map((n) => `  - { match: { pathPrefix: /${n}/ }, upstream: ${n} }`).join('\n')}
`;
}

test('verification is on by default; a private CA and serverName make it pass', async () => {
  const proxy = await startProxy(
    upstreamYaml({
      trusted: `{ servers: [{ url: "${urls.https}" }], tls: { ca: "${pki.caPath}", serverName: backend.test } }`,
      untrusted: `{ servers: [{ url: "${urls.https}" }], tls: { serverName: backend.test } }`,
      noconfig: `{ servers: [{ url: "${urls.https}" }] }`,
      misnamed: `{ servers: [{ url: "${urls.https}" }], tls: { ca: "${pki.caPath}", serverName: other.test } }`,
      skip: `{ servers: [{ url: "${urls.https}" }], tls: { insecureSkipVerify: true } }`,
    }),
  );
  try {
    const ok = await request(`${proxy.url}/trusted/x`, { headers: { host: 'public.example' } });
    assert.equal(ok.status, 200);
    const seen = JSON.parse(ok.text);
    assert.equal(seen.sni, 'backend.test', 'SNI is the configured name, not the client Host');
    assert.equal(seen.host, 'public.example');
    for (const name of ['untrusted', 'noconfig', 'misnamed']) {
      const res = await request(`${proxy.url}/${name}/x`);
      assert.equal(res.status, 502, name);
      assert.doesNotMatch(res.text, /127\.0\.0\.1|backend/);
    }
    const skipped = await request(`${proxy.url}/skip/x`);
    assert.equal(skipped.status, 200);
  } finally {
    await proxy.close();
  }
});

test('a client certificate is presented to upstreams that require one', async () => {
  const proxy = await startProxy(
    upstreamYaml({
      withcert: `{ servers: [{ url: "${urls.mtls}" }], tls: { ca: "${pki.caPath}", serverName: backend.test, cert: "${clientCert.certPath}", key: "${clientCert.keyPath}" } }`,
      nocert: `{ servers: [{ url: "${urls.mtls}" }], tls: { ca: "${pki.caPath}", serverName: backend.test } }`,
    }),
  );
  try {
    const ok = await request(`${proxy.url}/withcert/x`);
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.text).client, 'proxy-client');
    const refused = await request(`${proxy.url}/nocert/x`);
    assert.equal(refused.status, 502);
  } finally {
    await proxy.close();
  }
});

test('protocol h2 (TLS, ALPN) and h2c (prior knowledge) reach HTTP/2-only upstreams', async () => {
  const proxy = await startProxy(
    upstreamYaml({
      h2: `{ servers: [{ url: "${urls.h2}" }], protocol: h2, tls: { ca: "${pki.caPath}", serverName: backend.test } }`,
      h2c: `{ servers: [{ url: "${urls.h2c}" }], protocol: h2c }`,
    }),
  );
  try {
    for (const name of ['h2', 'h2c']) {
      const res = await request(`${proxy.url}/${name}/x`, { headers: { host: 'front.test' } });
      assert.equal(res.status, 200, name);
      const seen = JSON.parse(res.text);
      assert.equal(seen.version, '2.0', name);
      assert.equal(seen.host, 'front.test', name);
    }
    // Concurrent requests share the HTTP/2 connection.
    const many = await Promise.all(Array.from({ length: 20 }, () => request(`${proxy.url}/h2c/y`)));
    assert.ok(many.every((r) => r.status === 200));
  } finally {
    await proxy.close();
  }
});

test('a missing upstream CA file is a clear start-up error', async () => {
  const yaml = upstreamYaml({
    broken: `{ servers: [{ url: "${urls.https}" }], tls: { ca: "${pki.dir}/missing-ca.pem" } }`,
  });
  await assert.rejects(
    Switchyard.start(configFrom(yaml), { announce: false, log: () => {} }),
    /upstreams\.broken\.tls\.ca: cannot read the CA file .*missing-ca\.pem.*no such file/,
  );
});
