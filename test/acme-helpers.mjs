// Shared by the ACME tests: a DNS server that resolves every name to 127.0.0.1 for pebble, spare
// ports, and the certificate pebble's API serves.
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

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
