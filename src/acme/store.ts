import { mkdir, readFile, rename, writeFile, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

/**
 * Where ACME state lives: the account (key and URL) and one certificate plus key per name.
 * Kept per directory URL, so a staging account never signs for production and back.
 */
export interface AcmeStore {
  readAccount(): Promise<StoredAccount | null>;
  writeAccount(account: StoredAccount): Promise<void>;
  readCertificate(name: string): Promise<StoredCertificate | null>;
  writeCertificate(name: string, certificate: StoredCertificate): Promise<void>;
}

export interface StoredAccount {
  /** PEM private key of the ACME account. */
  key: string;
  /** The account URL (kid) the server gave; empty until registered. */
  url: string;
}

export interface StoredCertificate {
  /** PEM chain: the leaf first, then the intermediates. */
  cert: string;
  /** PEM private key of the leaf. */
  key: string;
}

/** Writes through a temporary file and a rename, so a reader never sees half a file. */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

async function readOptional(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** A file-system-safe folder name for a directory URL: host, port and path. */
export function directoryFolder(directoryUrl: string): string {
  const url = new URL(directoryUrl);
  return `${url.host}${url.pathname}`
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '_')
    .replace(/^_+|_+$/g, '');
}

/** Names are checked DNS names (see names.ts), so they are safe as file names. */
export class DiskAcmeStore implements AcmeStore {
  private readonly root: string;

  constructor(storage: string, directoryUrl: string) {
    this.root = path.join(path.resolve(storage), directoryFolder(directoryUrl));
  }

  get location(): string {
    return this.root;
  }

  async readAccount(): Promise<StoredAccount | null> {
    const text = await readOptional(path.join(this.root, 'account.json'));
    if (text === null) return null;
    const parsed = JSON.parse(text) as Partial<StoredAccount>;
    if (typeof parsed.key !== 'string') return null;
    return { key: parsed.key, url: typeof parsed.url === 'string' ? parsed.url : '' };
  }

  async writeAccount(account: StoredAccount): Promise<void> {
    await writeFileAtomic(path.join(this.root, 'account.json'), JSON.stringify(account, null, 2));
  }

  async readCertificate(name: string): Promise<StoredCertificate | null> {
    const dir = path.join(this.root, 'certificates', name);
    const [cert, key] = await Promise.all([
      readOptional(path.join(dir, 'cert.pem')),
      readOptional(path.join(dir, 'key.pem')),
    ]);
    return cert !== null && key !== null ? { cert, key } : null;
  }

  async writeCertificate(name: string, certificate: StoredCertificate): Promise<void> {
    const dir = path.join(this.root, 'certificates', name);
    // The key first: a crash between the two leaves a new key with the old certificate, which
    // loading detects (they do not match) and orders again, never a certificate without its key.
    await writeFileAtomic(path.join(dir, 'key.pem'), certificate.key);
    await writeFileAtomic(path.join(dir, 'cert.pem'), certificate.cert, 0o644);
  }
}
