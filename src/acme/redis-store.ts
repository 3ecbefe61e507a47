import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import {
  directoryFolder,
  isChallengeId,
  type ChallengeKind,
  type StoredAccount,
  type StoredCertificate,
} from './store.js';

// Loaded on first use: a proxy without Redis never pays the module's memory.
const requireLazily = createRequire(import.meta.url);
function loadRedis(): typeof import('ioredis').Redis {
  return (requireLazily('ioredis') as typeof import('ioredis')).Redis;
}

type LogFn = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

export const KEY_PREFIX = 'switchyard:acme:';

/** Deletes the lock only while it still holds our token (never another instance's lock). */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
/** Extends the lock only while it still holds our token. */
const RENEW_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

type RedisWithScripts = Redis & {
  switchyardAcmeRelease(key: string, token: string): Promise<number>;
  switchyardAcmeRenew(key: string, token: string, ttlMs: number): Promise<number>;
};

export interface SharedCertificate extends StoredCertificate {
  /** Expiry (ms since the epoch), so a reader can compare without parsing. */
  notAfter: number;
}

export interface RedisAcmeShareOptions {
  url: string;
  directoryUrl: string;
  log: LogFn;
  commandTimeoutMs?: number;
}

/**
 * ACME state shared by every instance that uses the same Redis: the account, each certificate
 * with its key and expiry, and one order lock per name. Keys live under
 * `switchyard:acme:<directory>:` so staging and production never mix. Every call has a timeout;
 * while Redis is unreachable calls fail at once (the manager then works from disk only).
 */
export class RedisAcmeShare {
  private readonly redis: RedisWithScripts;
  private readonly prefix: string;
  private readonly log: LogFn;
  private down = false;
  private closed = false;

  constructor(options: RedisAcmeShareOptions) {
    this.log = options.log;
    this.prefix = `${KEY_PREFIX}${directoryFolder(options.directoryUrl)}:`;
    this.redis = new (loadRedis())(options.url, {
      commandTimeout: options.commandTimeoutMs ?? 2000,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: true,
      retryStrategy: (times) => Math.min(200 * times, 2000),
      autoResendUnfulfilledCommands: false,
    }) as RedisWithScripts;
    this.redis.defineCommand('switchyardAcmeRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT });
    this.redis.defineCommand('switchyardAcmeRenew', { numberOfKeys: 1, lua: RENEW_SCRIPT });
    this.redis.on('error', (err: Error) => this.markDown(err.message));
    this.redis.on('close', () => this.markDown('connection closed'));
    this.redis.on('ready', () => {
      if (this.down) this.log('info', 'acme: redis is reachable again; sharing certificates');
      this.down = false;
    });
  }

  private markDown(reason: string): void {
    if (this.down || this.closed) return;
    this.down = true;
    this.log('warn', 'acme: redis unreachable; certificates are stored on disk only', {
      error: reason,
    });
  }

  /** Fails fast while the connection is known to be down: nothing waits on a dead Redis. */
  private check(): void {
    if (this.closed) throw new Error('acme redis share is closed');
    if (this.down && this.redis.status !== 'ready') throw new Error('redis is unreachable');
  }

  private parse<T>(text: string | null): T | null {
    if (text === null) return null;
    try {
      return JSON.parse(text) as T;
    } catch {
      return null;
    }
  }

  async readAccount(): Promise<StoredAccount | null> {
    this.check();
    const account = this.parse<Partial<StoredAccount>>(
      await this.redis.get(this.prefix + 'account'),
    );
    if (account === null || typeof account.key !== 'string') return null;
    return { key: account.key, url: typeof account.url === 'string' ? account.url : '' };
  }

  /** Stores the account unless one is there; returns the account that is stored afterwards. */
  async offerAccount(account: StoredAccount): Promise<StoredAccount> {
    this.check();
    const set = await this.redis.set(this.prefix + 'account', JSON.stringify(account), 'NX');
    if (set === 'OK') return account;
    return (await this.readAccount()) ?? account;
  }

  async writeAccount(account: StoredAccount): Promise<void> {
    this.check();
    await this.redis.set(this.prefix + 'account', JSON.stringify(account));
  }

  async readCertificate(name: string): Promise<SharedCertificate | null> {
    this.check();
    const c = this.parse<Partial<SharedCertificate>>(
      await this.redis.get(this.prefix + 'cert:' + name),
    );
    if (c === null || typeof c.cert !== 'string' || typeof c.key !== 'string') return null;
    return { cert: c.cert, key: c.key, notAfter: Number(c.notAfter) || 0 };
  }

  /** Kept until the certificate expires. */
  async writeCertificate(name: string, certificate: SharedCertificate): Promise<void> {
    this.check();
    const ttl = Math.max(1000, certificate.notAfter - Date.now());
    await this.redis.set(this.prefix + 'cert:' + name, JSON.stringify(certificate), 'PX', ttl);
  }

  /** SET NX PX: the token when this instance now holds the order lock for `name`, else null. */
  async lock(name: string, ttlMs: number): Promise<string | null> {
    this.check();
    const token = randomBytes(16).toString('hex');
    const set = await this.redis.set(this.prefix + 'lock:' + name, token, 'PX', ttlMs, 'NX');
    return set === 'OK' ? token : null;
  }

  async isLocked(name: string): Promise<boolean> {
    this.check();
    return (await this.redis.exists(this.prefix + 'lock:' + name)) === 1;
  }

  async renew(name: string, token: string, ttlMs: number): Promise<boolean> {
    this.check();
    return (await this.redis.switchyardAcmeRenew(this.prefix + 'lock:' + name, token, ttlMs)) === 1;
  }

  async unlock(name: string, token: string): Promise<void> {
    this.check();
    await this.redis.switchyardAcmeRelease(this.prefix + 'lock:' + name, token);
  }

  /** A pending challenge answer, for whichever instance the CA's validation reaches. */
  async writeChallenge(kind: ChallengeKind, id: string, value: string, ttlMs: number) {
    this.check();
    await this.redis.set(`${this.prefix}challenge:${kind}:${id}`, value, 'PX', ttlMs);
  }

  async readChallenge(kind: ChallengeKind, id: string): Promise<string | null> {
    if (!isChallengeId(id)) return null;
    this.check();
    return this.redis.get(`${this.prefix}challenge:${kind}:${id}`);
  }

  async removeChallenge(kind: ChallengeKind, id: string): Promise<void> {
    this.check();
    await this.redis.del(`${this.prefix}challenge:${kind}:${id}`);
  }

  close(): void {
    this.closed = true;
    this.redis.disconnect();
  }
}
