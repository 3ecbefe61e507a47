// Shared by the ACME tests: a DNS server that resolves every name to 127.0.0.1 for pebble, spare
// ports, and the certificate pebble's API serves.
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';

export async function startDns() {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    let offset = 12;
    while (offset < msg.length && msg[offset] !== 0) offset += msg[offset] + 1;
    const questionEnd = offset + 5;
    if (questionEnd > msg.length) return;
    const qtype = msg.readUInt16BE(offset + 1);
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(0x8400 | (msg.readUInt16BE(2) & 0x0100), 2); // QR, AA, RD copied
    header.writeUInt16BE(1, 4); // one question
    const answers = [];
    if (qtype === 1) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // the question's name
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(4, 10);
      Buffer.from([127, 0, 0, 1]).copy(rr, 12);
      answers.push(rr);
    }
    header.writeUInt16BE(answers.length, 6);
    socket.send(
      Buffer.concat([header, msg.subarray(12, questionEnd), ...answers]),
      rinfo.port,
      rinfo.address,
    );
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { port: socket.address().port, close: () => socket.close() };
}

export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

export function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The CA and certificate pebble's own HTTPS API uses (it must name 127.0.0.1). */
export function makeApiCertificate(dir) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'api-ca-key.pem',
      '-out',
      'api-ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=pebble API test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign',
    ],
    dir,
  );
  openssl(
    ['req', '-new', ...ec, '-keyout', 'api-key.pem', '-out', 'api.csr', '-subj', '/CN=127.0.0.1'],
    dir,
  );
  writeFileSync(
    path.join(dir, 'api.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'api.csr',
      '-CA',
      'api-ca.pem',
      '-CAkey',
      'api-ca-key.pem',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'api.ext',
      '-out',
      'api.pem',
    ],
    dir,
  );
}

/**
 * Starts pebble on loopback ports with the DNS server above. `output()` is everything pebble
 * printed so far (tests count issued certificates in it); `stop()` ends both.
 */
export async function startPebble() {
  const dir = mkdtempSync(path.join(tmpdir(), 'sy-acme-'));
  makeApiCertificate(dir);
  const dns = await startDns();
  const ports = {
    http: await freePort(),
    tls: await freePort(),
    api: await freePort(),
    management: await freePort(),
  };
  writeFileSync(
    path.join(dir, 'pebble.json'),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${ports.api}`,
        managementListenAddress: `127.0.0.1:${ports.management}`,
        certificate: path.join(dir, 'api.pem'),
        privateKey: path.join(dir, 'api-key.pem'),
        httpPort: ports.http,
        tlsPort: ports.tls,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  const pebble = spawn(
    'pebble',
    ['-config', path.join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dns.port}`],
    {
      env: {
        ...process.env,
        PEBBLE_VA_NOSLEEP: '1',
        PEBBLE_WFE_NONCEREJECT: '0',
        PEBBLE_AUTHZREUSE: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  await new Promise((resolve, reject) => {
    const onData = (chunk) => {
      output += chunk;
      if (output.includes('ACME directory available')) resolve();
    };
    pebble.stdout.on('data', onData);
    pebble.stderr.on('data', onData);
    pebble.once('exit', (code) => reject(new Error(`pebble exited (${code}):\n${output}`)));
  });
  return {
    dir,
    ports,
    output: () => output,
    async stop() {
      pebble.kill();
      await once(pebble, 'exit').catch(() => undefined);
      dns.close();
    },
  };
}

/** pebble's issuing root, from its management API (`dir` and `managementPort` of startPebble). */
export function pebbleRoot(dir, managementPort) {
  return new Promise((resolve, reject) => {
    https
      .get(
        `https://127.0.0.1:${managementPort}/roots/0`,
        { ca: readFileSync(path.join(dir, 'api-ca.pem')) },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve(body));
        },
      )
      .on('error', reject);
  });
}

/** A TLS handshake with SNI; resolves { authorized, error, peer, alpn, response } after a GET. */
export function fetchOverTls(port, servername, ca) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: '127.0.0.1', port, servername, ca, ALPNProtocols: ['http/1.1'] },
      () => {
        const result = {
          authorized: socket.authorized,
          error: socket.authorizationError,
          peer: socket.getPeerCertificate(true),
          alpn: socket.alpnProtocol,
        };
        socket.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
        let data = '';
        socket.setEncoding('utf8');
        socket.on('data', (c) => (data += c));
        socket.on('end', () => resolve({ ...result, response: data }));
      },
    );
    socket.on('error', reject);
  });
}
