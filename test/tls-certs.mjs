// Test PKI made with the openssl CLI: a CA, then server and client certificates it signs
// (any names, validity in the past or future). Everything lives in a fresh temporary directory.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** Creates a CA in a new temp dir. Returns { dir, caPath, ca (PEM), issue(...) }. */
export function createPki(caName = 'Switchyard Test CA') {
  const dir = mkdtempSync(path.join(tmpdir(), 'sy-pki-'));
  openssl(
    [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca.pem',
      '-days',
      '365',
      '-subj',
      `/CN=${caName}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  writeFileSync(
    path.join(dir, 'ca.cnf'),
    [
      '[ ca ]',
      'default_ca = CA_default',
      '[ CA_default ]',
      `database = ${dir}/index.txt`,
      `new_certs_dir = ${dir}`,
      `serial = ${dir}/serial`,
      'default_md = sha256',
      'policy = policy_any',
      'copy_extensions = copy',
      'unique_subject = no',
      '[ policy_any ]',
      'commonName = supplied',
      'organizationName = optional',
      '',
    ].join('\n'),
  );
  writeFileSync(path.join(dir, 'index.txt'), '');
  writeFileSync(path.join(dir, 'serial'), '1000\n');
  let n = 0;
  return {
    dir,
    caPath: path.join(dir, 'ca.pem'),
    ca: readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    /**
     * Issues a certificate. names: DNS names (the first is also the CN); client: clientAuth
     * usage; days: validity; notBefore/notAfter: 'YYYYMMDDHHMMSSZ' to place it in time.
     * Returns { cert, key, certPath, keyPath }.
     */
    issue(names, { client = false, days = 90, notBefore, notAfter, org } = {}) {
      const id = `leaf${++n}`;
      const subject = `/CN=${names[0]}${org ? `/O=${org}` : ''}`;
      const ext = [
        `subjectAltName=${names.map((name) => `DNS:${name}`).join(',')}`,
        `extendedKeyUsage=${client ? 'clientAuth' : 'serverAuth'}`,
      ];
      const addext = ext.flatMap((e) => ['-addext', e]);
      openssl(
        [
          'req',
          '-new',
          ...EC,
          '-keyout',
          `${id}-key.pem`,
          '-out',
          `${id}.csr`,
          '-subj',
          subject,
        ].concat(addext),
        dir,
      );
      const dates =
        notBefore !== undefined
          ? ['-startdate', notBefore, '-enddate', notAfter]
          : ['-days', String(days)];
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
          `${id}.csr`,
          '-out',
          `${id}.pem`,
          ...dates,
        ],
        dir,
      );
      const certPath = path.join(dir, `${id}.pem`);
      const keyPath = path.join(dir, `${id}-key.pem`);
      return {
        certPath,
        keyPath,
        cert: readFileSync(certPath, 'utf8'),
        key: readFileSync(keyPath, 'utf8'),
      };
    },
  };
}
