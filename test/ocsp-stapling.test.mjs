// OCSP stapling: certificates naming a responder (authorityInfoAccess) get its answer stapled to
// the handshake. The responder is `openssl ocsp` over the test CA's index, started by the test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { createPki } from './tls-certs.mjs';
import { startProxy } from './helpers.mjs';
import { buildCertId, parseOcspResponse } from '../dist/server/ocsp.js';

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

function openssl(args, cwd) {
  return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

let pki;
let responder;
let responderPort;
let proxy;
const leaves = {};

/** Issues a leaf for `name` whose AIA names `ocspUrl` (or none); the chain file holds the CA. */
function issue(name, ocspUrl) {
  const ext = [`subjectAltName=DNS:${name}`, 'extendedKeyUsage=serverAuth'];
  if (ocspUrl) ext.push(`authorityInfoAccess=OCSP;URI:${ocspUrl}`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-new',
      ...ec,
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    ].concat(ext.flatMap((e) => ['-addext', e])),
    pki.dir,
  );
  openssl(
    [
      'ca',
      '-batch',
      '-notext',
      '-config',
      'ca.cnf',
      '-cert',
      'ca.pem',
      '-keyfile',
      'ca-key.pem',
      '-in',
      `${name}.csr`,
      '-out',
      `${name}.pem`,
      '-days',
      '30',
    ],
    pki.dir,
  );
  const certPath = path.join(pki.dir, `${name}.pem`);
  const chainPath = path.join(pki.dir, `${name}-chain.pem`);
  writeFileSync(chainPath, execFileSync('cat', [certPath, pki.caPath]));
  return { certPath, chainPath, keyPath: path.join(pki.dir, `${name}-key.pem`) };
}

before(async () => {
  pki = createPki('OCSP Test CA');
  responderPort = await freePort();
  const deadPort = await freePort();
  const url = `http://127.0.0.1:${responderPort}`;
  leaves.good = issue('good.test', url);
  leaves.revoked = issue('revoked.test', url);
  leaves.none = issue('noaia.test', null);
  leaves.dead = issue('dead.test', `http://127.0.0.1:${deadPort}`);
  openssl(
    [
      'ca',
      '-config',
      'ca.cnf',
      '-cert',
      'ca.pem',
      '-keyfile',
      'ca-key.pem',
      '-revoke',
      leaves.revoked.certPath,
    ],
    pki.dir,
  );
  responder = spawn(
    'openssl',
    [
      'ocsp',
      '-index',
      'index.txt',
      '-port',
      String(responderPort),
      '-rsigner',
      'ca.pem',
      '-rkey',
      'ca-key.pem',
      '-CA',
      'ca.pem',
      '-nmin',
      '10',
    ],
    { cwd: pki.dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  responder.requests = 0;
  await new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk) => {
      output += chunk;
      if (/ACCEPT/.test(output)) resolve();
    };
    responder.stdout.on('data', onData);
    responder.stderr.on('data', onData);
    responder.once('exit', (code) => reject(new Error(`openssl ocsp exited (${code}): ${output}`)));
  });
  const certs = ['good', 'revoked', 'none', 'dead']
    .map((k) => `        - { cert: ${leaves[k].chainPath}, key: ${leaves[k].keyPath} }`)
    .join('\n');
  proxy = await startProxy(`
listeners:
  - name: websecure
    address: 127.0.0.1:0
    tls:
      certificates:
${certs}
routes:
  - respond: { status: 200, body: "ok\\n" }
`);
});

after(async () => {
  await proxy?.close();
  if (responder) {
    responder.kill();
    await once(responder, 'exit').catch(() => undefined);
  }
});

/** A handshake asking for a staple; resolves { staple (Buffer|null), authorized }. */
function handshake(servername) {
  return new Promise((resolve, reject) => {
    let staple = null;
    const socket = tls.connect(
      { host: '127.0.0.1', port: proxy.port, servername, ca: pki.ca, requestOCSP: true },
      () => {
        const authorized = socket.authorized;
        socket.end();
        resolve({ staple, authorized });
      },
    );
    socket.on('OCSPResponse', (response) => (staple = response));
    socket.on('error', reject);
  });
}

/** openssl's own verdict on a stapled response (signature and status). */
function opensslVerdict(staple, leaf) {
  const file = path.join(pki.dir, `staple-${Date.now()}-${Math.random()}.der`);
  writeFileSync(file, staple);
  return openssl(
    ['ocsp', '-respin', file, '-issuer', pki.caPath, '-cert', leaf.certPath, '-CAfile', pki.caPath],
    pki.dir,
  );
}

test('a certificate naming a responder gets a good, verifiable response stapled', async () => {
  const first = await handshake('good.test');
  assert.equal(first.authorized, true);
  assert.ok(first.staple && first.staple.length > 0, 'a staple on the first handshake');
  assert.match(opensslVerdict(first.staple, leaves.good), /good\.test\.pem: good/);
  const { X509Certificate } = await import('node:crypto');
  const der = (p) => new X509Certificate(execFileSync('cat', [p])).raw;
  const result = parseOcspResponse(
    first.staple,
    buildCertId(der(leaves.good.certPath), der(pki.caPath)),
  );
  assert.equal(result.status, 'good');
  assert.ok(result.nextUpdate > Date.now());
  // Cached until nextUpdate: the next handshake gets the same bytes.
  const second = await handshake('good.test');
  assert.deepEqual(second.staple, first.staple);
});

test('a revoked certificate gets its revoked response stapled (and an error logged)', async () => {
  const { staple } = await handshake('revoked.test');
  assert.ok(staple);
  assert.match(opensslVerdict(staple, leaves.revoked), /revoked\.test\.pem: revoked/);
  assert.ok(proxy.logs.some((l) => l.message.startsWith('OCSP: the certificate is revoked')));
});

test('no responder named: no staple; responder down: the handshake still completes', async () => {
  const none = await handshake('noaia.test');
  assert.equal(none.authorized, true);
  assert.equal(none.staple, null);
  const dead = await handshake('dead.test');
  assert.equal(dead.authorized, true);
  assert.equal(dead.staple, null);
  assert.ok(proxy.logs.some((l) => l.message.startsWith('OCSP: no fresh response')));
});
