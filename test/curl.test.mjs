// The real curl binary against Switchyard: HTTP/2 over TLS (ALPN, the test CA via --cacert),
// h2c with prior knowledge, HTTP/1.1 keep-alive across two URLs in one curl run, --compressed,
// mTLS with --cert/--key (and a refused handshake without one), and a WebSocket upgrade when
// this curl speaks ws://. Skipped as a whole when curl is not on PATH (.ci/run installs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import { startOrigin, startProxy } from './helpers.mjs';
import { createPki } from './tls-certs.mjs';

function curlVersion() {
  try {
    return execFileSync('curl', ['--version'], { encoding: 'utf8' });
  } catch {
    return null;
  }
}
const version = curlVersion();
const skip = version === null ? 'curl is not on PATH (apt-get install curl)' : false;
const protocols = (version?.match(/^Protocols: (.*)$/m)?.[1] ?? '').split(' ');
const features = (version?.match(/^Features: (.*)$/m)?.[1] ?? '').split(' ');
const skipHttp2 = skip || (features.includes('HTTP2') ? false : 'this curl has no HTTP/2');
const skipWs =
  skip ||
  (protocols.includes('ws') ? false : 'this curl does not speak ws:// (curl 7.86+ with ws)');
const skipBrotli = skip || (features.includes('brotli') ? false : 'this curl has no brotli');

/** Runs curl; resolves { code, stdout, stderr } (a non-zero exit is a result, not an error). */
function curl(args) {
  return new Promise((resolve) => {
    // Asynchronous: the proxy runs in this process and must keep serving while curl runs.
    execFile(
      'curl',
      ['--silent', '--show-error', '--max-time', '10', ...args],
      { encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const TEXT = 'switchyard compresses this line for curl.\n'.repeat(200);

let pki;
let clientCert;
let origin;
let wss;
let proxy;
const ports = {};
const seenPaths = [];

before(async () => {
  if (skip) return;
  pki = createPki();
  const serverCert = pki.issue(['curl.test']);
  clientCert = pki.issue(['alice'], { client: true, org: 'Example Org' });
  origin = await startOrigin((req, res) => {
    seenPaths.push(req.url);
    if (req.url === '/text') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(TEXT);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        path: req.url,
        host: req.headers.host,
        subject: req.headers['x-client-subject'] ?? null,
        proto: req.headers['x-forwarded-proto'],
      }),
    );
  });
  wss = new WebSocketServer({ server: origin.server });
  wss.on('connection', (ws) => ws.send('hello from the origin'));
  const certs = `certificates: [{ cert: "${serverCert.certPath}", key: "${serverCert.keyPath}" }]`;
  proxy = await startProxy(`
listeners:
  - { name: websecure, address: "127.0.0.1:0", tls: { ${certs} } }
  - { name: h2c, address: "127.0.0.1:0", http2: true }
  - { name: plain, address: "127.0.0.1:0" }
  - name: mtls
    address: "127.0.0.1:0"
    tls:
      ${certs}
      clientAuth: { ca: "${pki.caPath}", required: true }
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - match: { path: /text }
    upstream: app
    compression: true
  - upstream: app
    requestHeaders: { set: { X-Client-Subject: "{tls_client_subject}" } }
`);
  for (const [name, listener] of proxy.proxy.listeners) ports[name] = new URL(listener.url()).port;
});

after(async () => {
  await proxy?.close();
  wss?.close();
  await origin?.close();
});

/** curl options that reach a TLS listener as https://curl.test:PORT with the test CA. */
function tlsArgs(port) {
  return ['--resolve', `curl.test:${port}:127.0.0.1`, '--cacert', pki.caPath];
}

test('curl --http2 over TLS negotiates HTTP/2 with the test CA', { skip: skipHttp2 }, async () => {
  const port = ports.websecure;
  const res = await curl([
    ...tlsArgs(port),
    '--http2',
    '-w',
    '\n%{http_version} %{http_code}',
    `https://curl.test:${port}/over-h2?x=1`,
  ]);
  assert.equal(res.code, 0, res.stderr);
  const [body, meta] = res.stdout.split('\n');
  assert.equal(meta, '2 200');
  const seen = JSON.parse(body);
  assert.equal(seen.path, '/over-h2?x=1');
  assert.equal(seen.host, `curl.test:${port}`, ':authority becomes Host');
  assert.equal(seen.proto, 'https');
  // The same listener still speaks HTTP/1.1 to a client that asks for it.
  const h1 = await curl([
    ...tlsArgs(port),
    '--http1.1',
    '-o',
    '/dev/null',
    '-w',
    '%{http_version}',
    `https://curl.test:${port}/`,
  ]);
  assert.equal(h1.stdout, '1.1', h1.stderr);
});

test('curl without the CA refuses the proxy certificate', { skip }, async () => {
  const port = ports.websecure;
  const res = await curl([
    '--resolve',
    `curl.test:${port}:127.0.0.1`,
    '--cacert',
    createPki('Unrelated CA').caPath,
    `https://curl.test:${port}/`,
  ]);
  assert.equal(res.code, 60, `expected a certificate error: ${res.stderr}`);
});

test(
  'curl --http2-prior-knowledge speaks h2c to a plain listener with http2',
  { skip: skipHttp2 },
  async () => {
    const res = await curl([
      '--http2-prior-knowledge',
      '-w',
      '\n%{http_version} %{http_code}',
      `http://127.0.0.1:${ports.h2c}/h2c`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    const [body, meta] = res.stdout.split('\n');
    assert.equal(meta, '2 200');
    assert.equal(JSON.parse(body).path, '/h2c');
    assert.equal(JSON.parse(body).proto, 'http');
  },
);

test('curl keeps one HTTP/1.1 connection open for two URLs', { skip }, async () => {
  const base = `http://127.0.0.1:${ports.plain}`;
  const res = await curl([
    '--http1.1',
    '-w',
    '\n%{num_connects} %{http_version} %{http_code}\n',
    `${base}/first`,
    `${base}/second`,
  ]);
  assert.equal(res.code, 0, res.stderr);
  const lines = res.stdout.trim().split('\n');
  assert.equal(lines.length, 4, res.stdout);
  assert.equal(JSON.parse(lines[0]).path, '/first');
  assert.equal(lines[1], '1 1.1 200', 'the first URL opens the connection');
  assert.equal(JSON.parse(lines[2]).path, '/second');
  assert.equal(lines[3], '0 1.1 200', 'the second URL reuses it');
});

for (const [encoding, label, skipIt] of [
  ['gzip', 'gzip', skip],
  ['br', 'brotli', skipBrotli],
]) {
  test(`curl --compressed gets ${label} from a compression route`, { skip: skipIt }, async () => {
    const res = await curl([
      '--compressed',
      '-H',
      `Accept-Encoding: ${encoding}`,
      '-D',
      '-',
      '-w',
      '\n%{size_download}',
      `http://127.0.0.1:${ports.plain}/text`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    const end = res.stdout.indexOf('\r\n\r\n');
    const head = res.stdout.slice(0, end).toLowerCase();
    const rest = res.stdout.slice(end + 4);
    const cut = rest.lastIndexOf('\n');
    const body = rest.slice(0, cut);
    const downloaded = Number(rest.slice(cut + 1));
    assert.match(head, /^http\/1\.1 200/);
    assert.match(head, new RegExp(`\\r\\ncontent-encoding: ${encoding}\\r\\n`));
    assert.match(head, /\r\nvary: [^\r]*accept-encoding/);
    assert.equal(body, TEXT, 'curl decoded the body');
    assert.ok(downloaded < TEXT.length / 4, `compressed on the wire (${downloaded} bytes)`);
  });
}

test(
  'curl with a client certificate passes mTLS; without one the handshake fails',
  { skip },
  async () => {
    const port = ports.mtls;
    const url = `https://curl.test:${port}/mtls`;
    const withCert = await curl([
      ...tlsArgs(port),
      '--cert',
      clientCert.certPath,
      '--key',
      clientCert.keyPath,
      '-w',
      '\n%{http_code}',
      url,
    ]);
    assert.equal(withCert.code, 0, withCert.stderr);
    const [body, status] = withCert.stdout.split('\n');
    assert.equal(status, '200');
    assert.equal(JSON.parse(body).subject, 'CN=alice,O=Example Org');

    const without = await curl([
      ...tlsArgs(port),
      '-w',
      '%{http_code}',
      `https://curl.test:${port}/mtls-anonymous`,
    ]);
    // 35: handshake failed (TLS 1.2); with TLS 1.3 the server's alert arrives after curl's side
    // of the handshake is done, so curl reports it on its first read (56) or send (55).
    assert.ok([35, 55, 56].includes(without.code), `curl exit ${without.code}: ${without.stderr}`);
    assert.equal(without.stdout, '000', 'no HTTP response at all');
    assert.ok(!seenPaths.includes('/mtls-anonymous'), 'the request never reached the upstream');
  },
);

test('curl opens a WebSocket through the proxy (ws://)', { skip: skipWs }, async () => {
  // curl prints the 101 head with --include, then the frames' payload, and --max-time ends it.
  const out = path.join(pki.dir, 'ws-out.txt');
  writeFileSync(out, '');
  const res = await curl([
    '--include',
    '--no-buffer',
    '--max-time',
    '3',
    '-o',
    out,
    `ws://127.0.0.1:${ports.plain}/socket`,
  ]);
  const text = readFileSync(out, 'utf8');
  assert.match(text, /^HTTP\/1\.1 101/, `curl exit ${res.code}: ${res.stderr}`);
  assert.match(text, /upgrade: websocket/i);
  assert.match(text, /hello from the origin/);
});
