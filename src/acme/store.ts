import { mkdir, readFile, rename, rm, writeFile, unlink } from 'node:fs/promises';
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
  /**
   * Pending challenge answers, so whichever process the CA's validation reaches can answer
   * (workers sharing `storage`). Optional: a store without them keeps answers in memory only.
   */
  writeChallenge?(kind: ChallengeKind, id: string, value: string, ttlMs: number): Promise<void>;
  readChallenge?(kind: ChallengeKind, id: string): Promise<string | null>;
  removeChallenge?(kind: ChallengeKind, id: string): Promise<void>;
}

/**
 * `http-01`: id is the token, value the key authorization. `tls-alpn-01`: id is the name, value
 * JSON `{ cert, key }` of the RFC 8737 certificate.
 */
export type ChallengeKind = 'http-01' | 'tls-alpn-01';

/** Tokens are base64url and names checked DNS names; anything else is never a file name. */
export function isChallengeId(id: string): boolean {
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/.test(id);
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

  private challengeFile(kind: ChallengeKind, id: string): string {
    if (!isChallengeId(id)) throw new Error(`not a challenge token or name: ${JSON.stringify(id)}`);
    return path.join(this.root, 'challenges', kind, id);
  }

  /** Kept with its expiry: a crash between writing and removing never leaves a live answer. */
  async writeChallenge(kind: ChallengeKind, id: string, value: string, ttlMs: number) {
    const record = { value, expiresAt: Date.now() + ttlMs };
    await writeFileAtomic(this.challengeFile(kind, id), JSON.stringify(record));
  }

  async readChallenge(kind: ChallengeKind, id: string): Promise<string | null> {
    if (!isChallengeId(id)) return null;
    const text = await readOptional(this.challengeFile(kind, id));
    if (text === null) return null;
    try {
      const record = JSON.parse(text) as { value?: unknown; expiresAt?: unknown };
      if (typeof record.value !== 'string' || !(Number(record.expiresAt) > Date.now())) return null;
      return record.value;
    } catch {
      return null;
    }
  }

  async removeChallenge(kind: ChallengeKind, id: string): Promise<void> {
    await rm(this.challengeFile(kind, id), { force: true });
  }
}
