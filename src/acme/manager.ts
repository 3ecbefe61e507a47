import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import type AcmeClient from 'acme-client';
import type { Config } from '../config/types.js';
import { managedNames } from './names.js';
import { RedisAcmeShare } from './redis-store.js';
import {
  DiskAcmeStore,
  type AcmeStore,
  type ChallengeKind,
  type StoredAccount,
  type StoredCertificate,
} from './store.js';

const requireLazily = createRequire(import.meta.url);
let acmeModule: typeof AcmeClient | null = null;
/** acme-client and its crypto libraries (about 25 MiB resident) load only when ACME is on. */
function acmeLib(): typeof AcmeClient {
  return (acmeModule ??= requireLazily('acme-client') as typeof AcmeClient);
}

type LogFn = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

/** The `acme` section as written in the config (validated by the schema). */
export interface AcmeSettings {
  email?: string;
  directory?: string;
  caRoot?: string;
  storage?: string;
}

export type ChallengeType = 'http-01' | 'tls-alpn-01';

export const DEFAULT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
export const DEFAULT_STORAGE = './var/acme';

/** Renewal starts when this share of a certificate's lifetime has passed (Caddy, certbot: 2/3). */
export const RENEW_AT_LIFETIME = 2 / 3;

/** setTimeout's limit is about 24.8 days; longer waits are re-armed. */
const MAX_TIMER_MS = 24 * 3600 * 1000;

export interface AcmeManagerOptions {
  log: LogFn;
  /** Default: files under `storage`, per directory URL. */
  store?: AcmeStore;
  /** Injected clock for renewal and backoff decisions. */
  now?: () => number;
  /** First delay after a failed order; doubles per failure up to `maxRetryMs`. Default 1 min. */
  retryBaseMs?: number;
  /** Default 12 h. */
  maxRetryMs?: number;
  /** With `redis.url`: the order lock's lifetime, renewed while ordering. Default 10 min. */
  lockTtlMs?: number;
  /** With `redis.url`: how often an instance waiting on another's order looks. Default 2 s. */
  pollMs?: number;
  /** With `redis.url`: the timeout of each Redis call. Default 2 s. */
  redisCommandTimeoutMs?: number;
}

/** A certificate the manager serves; its identity is what the TLS side caches contexts by. */
export interface ManagedCertificate {
  cert: string;
  key: string;
  names: string[];
  notBefore: number;
  notAfter: number;
  serialNumber: string;
}

interface Entry {
  certificate: ManagedCertificate | null;
  failures: number;
  nextAttemptAt: number;
  lastError: string | null;
}

export interface AcmeNameStatus {
  name: string;
  notAfter: string | null;
  renewAt: string | null;
  failures: number;
  nextAttemptAt: string | null;
  lastError: string | null;
}

/** The `acme` section of a config, or undefined when automatic HTTPS is off. */
export function acmeSettingsOf(config: Config): AcmeSettings | undefined {
  return config.features.acme as AcmeSettings | undefined;
}

/** Parses a stored or issued chain; null when it is unusable (bad PEM, key mismatch). */
export function parseCertificate(stored: StoredCertificate): ManagedCertificate | null {
  try {
    const x509 = new X509Certificate(stored.cert);
    if (!x509.checkPrivateKey(createPrivateKey(stored.key))) return null;
    const names = (x509.subjectAltName ?? '')
      .split(/,\s*/)
      .filter((e) => e.startsWith('DNS:'))
      .map((e) => e.slice(4).toLowerCase());
    return {
      cert: stored.cert,
      key: stored.key,
      names,
      notBefore: new Date(x509.validFrom).getTime(),
      notAfter: new Date(x509.validTo).getTime(),
      serialNumber: x509.serialNumber,
    };
  } catch {
    return null;
  }
}

/** When renewal of a certificate is due: at 2/3 of its lifetime. */
export function renewalTime(c: Pick<ManagedCertificate, 'notBefore' | 'notAfter'>): number {
  return c.notBefore + Math.floor((c.notAfter - c.notBefore) * RENEW_AT_LIFETIME);
}

/**
 * Automatic HTTPS: obtains certificates for route hosts no configured certificate serves, from
 * an RFC 8555 directory, answering HTTP-01 (through the plain listeners, see `httpChallenge`)
 * or TLS-ALPN-01 (through the TLS listeners, see `alpnChallenge`). Certificates are stored on
 * disk, loaded at start, renewed at 2/3 of their lifetime, and retried with exponential backoff.
 * Orders run one at a time in the background; the TLS side asks `certificateFor` per handshake.
 */
export class AcmeManager {
  private settings: AcmeSettings;
  private readonly log: LogFn;
  private readonly now: () => number;
  private readonly retryBaseMs: number;
  private readonly maxRetryMs: number;
  private store: AcmeStore;
  private client: AcmeClient.Client | null = null;
  private readonly entries = new Map<string, Entry>();
  private challengeTypes: ChallengeType[] = ['http-01', 'tls-alpn-01'];
  private readonly httpTokens = new Map<string, string>();
  private readonly alpnContexts = new Map<string, tls.SecureContext>();
  /** Contexts built from other processes' TLS-ALPN-01 certificates, by their stored JSON. */
  private readonly sharedAlpnContexts = new Map<string, tls.SecureContext>();
  private readonly waiters = new Map<string, Array<(c: ManagedCertificate) => void>>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;
  private readonly customStore: boolean;
  private readonly lockTtlMs: number;
  private readonly pollMs: number;
  private readonly redisCommandTimeoutMs: number;
  /** Certificates, account and order locks shared through Redis, when `redis.url` is set. */
  private shared: RedisAcmeShare | null = null;
  private sharedKey: string | undefined;

  constructor(settings: AcmeSettings, options: AcmeManagerOptions) {
    this.settings = settings;
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.retryBaseMs = options.retryBaseMs ?? 60_000;
    this.maxRetryMs = options.maxRetryMs ?? 12 * 3600 * 1000;
    this.customStore = options.store !== undefined;
    this.lockTtlMs = options.lockTtlMs ?? 10 * 60 * 1000;
    this.pollMs = options.pollMs ?? 2000;
    this.redisCommandTimeoutMs = options.redisCommandTimeoutMs ?? 2000;
    this.store = options.store ?? this.diskStore(settings);
    this.applyTrust(settings);
  }

  private diskStore(settings: AcmeSettings): AcmeStore {
    return new DiskAcmeStore(
      settings.storage ?? DEFAULT_STORAGE,
      settings.directory ?? DEFAULT_DIRECTORY,
    );
  }

  /** A private ACME server (pebble, step-ca) is trusted through `caRoot` in addition to the
   * system roots. acme-client shares one HTTP client per process, like this manager. */
  private applyTrust(settings: AcmeSettings): void {
    // acme-client retries failed requests itself, up to 75 s per request; the manager's own
    // backoff (from `retryBaseMs`, doubling) is the one retry policy, so a failure ends quickly.
    (
      acmeLib().axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }
    ).acmeSettings.retryMaxAttempts = 0;
    if (settings.caRoot === undefined) {
      acmeLib().axios.defaults.httpsAgent = undefined;
      return;
    }
    let ca: string;
    try {
      ca = readFileSync(settings.caRoot, 'utf8');
    } catch (err) {
      throw new Error(
        `acme.caRoot: cannot read "${settings.caRoot}": ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        { cause: err },
      );
    }
    acmeLib().axios.defaults.httpsAgent = new https.Agent({ ca: [...tls.rootCertificates, ca] });
  }

  /**
   * Takes a (re)loaded config: the names to manage and the challenges the listeners allow
   * (HTTP-01 needs a plain listener, TLS-ALPN-01 a TLS one). `covered` says whether a
   * listener's own certificates already serve a name.
   */
  update(config: Config, covered: (listener: string, name: string) => boolean): void {
    const settings = acmeSettingsOf(config) ?? this.settings;
    if (
      settings.directory !== this.settings.directory ||
      settings.storage !== this.settings.storage ||
      settings.caRoot !== this.settings.caRoot ||
      settings.email !== this.settings.email
    ) {
      this.applyTrust(settings);
      this.client = null;
      if (!this.customStore) this.store = this.diskStore(settings);
    }
    this.settings = settings;
    this.updateShared((config.features.redis as { url?: string } | undefined)?.url);
    const types: ChallengeType[] = [];
    if (config.listeners.some((l) => l.tls === undefined)) types.push('http-01');
    if (config.listeners.some((l) => l.tls !== undefined)) types.push('tls-alpn-01');
    this.challengeTypes = types;
    const wanted = new Set(managedNames(config, covered));
    for (const name of this.entries.keys()) if (!wanted.has(name)) this.entries.delete(name);
    for (const name of wanted) {
      if (!this.entries.has(name)) {
        this.entries.set(name, {
          certificate: null,
          failures: 0,
          nextAttemptAt: 0,
          lastError: null,
        });
      }
    }
    if (this.timer !== null || this.running) this.schedule();
  }

  /** Opens (or closes) the Redis share when `redis.url` or the directory changes. */
  private updateShared(url: string | undefined): void {
    const directoryUrl = this.settings.directory ?? DEFAULT_DIRECTORY;
    const key = url === undefined ? undefined : `${url} ${directoryUrl}`;
    if (key === this.sharedKey) return;
    this.shared?.close();
    this.shared = null;
    this.sharedKey = key;
    if (url === undefined) return;
    this.shared = new RedisAcmeShare({
      url,
      directoryUrl,
      log: this.log,
      commandTimeoutMs: this.redisCommandTimeoutMs,
    });
  }

  /** Runs a Redis call; on failure logs and answers `fallback` (disk-only behaviour). */
  private async sharedCall<T>(what: string, fallback: T, fn: (s: RedisAcmeShare) => Promise<T>) {
    const shared = this.shared;
    if (shared === null) return fallback;
    try {
      return await fn(shared);
    } catch (err) {
      this.log('warn', `acme: redis ${what} failed; using local storage only`, {
        error: (err as Error).message,
      });
      return fallback;
    }
  }

  /** Loads stored certificates for the managed names, then starts ordering what is missing. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.loadStored();
    this.schedule();
  }

  private async loadStored(): Promise<void> {
    for (const [name, entry] of this.entries) {
      if (entry.certificate !== null) continue;
      let stored: StoredCertificate | null = null;
      try {
        stored = await this.store.readCertificate(name);
      } catch (err) {
        this.log('warn', 'acme: cannot read a stored certificate; ordering a new one', {
          name,
          error: String(err),
        });
      }
      let parsed = stored === null ? null : this.usable(name, stored);
      if (stored !== null && parsed === null) {
        this.log('warn', 'acme: stored certificate is unusable (expired, wrong key or name)', {
          name,
        });
      }
      if (this.shared !== null) {
        const fromRedis = await this.sharedCall('read', null, (s) => s.readCertificate(name));
        const remote = fromRedis === null ? null : this.usable(name, fromRedis);
        if (remote !== null && (parsed === null || remote.notAfter > parsed.notAfter)) {
          parsed = remote;
          await this.writeLocal(name, remote);
          this.log('info', 'acme: certificate loaded from redis', { name });
        } else if (parsed !== null && (remote === null || remote.notAfter < parsed.notAfter)) {
          const local = parsed;
          await this.sharedCall('write', undefined, (s) =>
            s.writeCertificate(name, {
              cert: local.cert,
              key: local.key,
              notAfter: local.notAfter,
            }),
          );
        }
      }
      if (parsed === null) continue;
      this.install(name, entry, parsed);
    }
  }

  /** A stored certificate for `name` that can serve now, or null. */
  private usable(name: string, stored: StoredCertificate): ManagedCertificate | null {
    const parsed = parseCertificate(stored);
    if (parsed === null || parsed.notAfter <= this.now() || !parsed.names.includes(name)) {
      return null;
    }
    return parsed;
  }

  private async writeLocal(name: string, c: ManagedCertificate): Promise<void> {
    try {
      await this.store.writeCertificate(name, { cert: c.cert, key: c.key });
    } catch (err) {
      this.log('warn', 'acme: cannot store a certificate on disk', {
        name,
        error: String(err),
      });
    }
  }

  stop(): void {
    this.stopped = true;
    this.shared?.close();
    this.shared = null;
    this.sharedKey = undefined;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The managed certificate for a name, while it is valid. Called per TLS handshake. */
  certificateFor(name: string): ManagedCertificate | undefined {
    const c = this.entries.get(name)?.certificate;
    return c && c.notAfter > Date.now() ? c : undefined;
  }

  /** The TLS-ALPN-01 certificate while a validation for `name` is pending. */
  alpnChallenge(name: string): tls.SecureContext | undefined {
    return this.alpnContexts.get(name);
  }

  /** The key authorization to answer /.well-known/acme-challenge/TOKEN with, if pending. */
  httpChallenge(token: string): string | undefined {
    return this.httpTokens.get(token);
  }

  /**
   * The answer for an HTTP-01 token: this process's own pending one at once, else a promise of
   * the one another instance or worker is ordering with (disk store, then Redis), since the CA's
   * validation may reach any of them.
   */
  lookupHttpChallenge(token: string): string | Promise<string | undefined> {
    return this.httpTokens.get(token) ?? this.readSharedChallenge('http-01', token);
  }

  /** A TLS-ALPN-01 certificate another instance or worker is validating `name` with. */
  async sharedAlpnChallenge(name: string): Promise<tls.SecureContext | undefined> {
    const local = this.alpnContexts.get(name);
    if (local !== undefined) return local;
    const stored = await this.readSharedChallenge('tls-alpn-01', name);
    if (stored === undefined) return undefined;
    let context = this.sharedAlpnContexts.get(stored);
    if (context === undefined) {
      try {
        const { cert, key } = JSON.parse(stored) as { cert: string; key: string };
        context = tls.createSecureContext({ cert, key });
      } catch {
        return undefined;
      }
      // A handful are pending at a time; drop old ones rather than grow.
      if (this.sharedAlpnContexts.size >= 32) this.sharedAlpnContexts.clear();
      this.sharedAlpnContexts.set(stored, context);
    }
    return context;
  }

  /** Disk first (workers share `storage`), then Redis; quiet, since this runs per request. */
  private async readSharedChallenge(kind: ChallengeKind, id: string) {
    try {
      const fromDisk = await this.store.readChallenge?.(kind, id);
      if (fromDisk) return fromDisk;
    } catch {
      // An unreadable file is no answer; Redis may still have it.
    }
    const shared = this.shared;
    if (shared === null) return undefined;
    try {
      return (await shared.readChallenge(kind, id)) ?? undefined;
    } catch {
      return undefined;
    }
  }

  /** Makes a pending answer visible to every worker (disk) and instance (Redis). */
  private async publishChallenge(kind: ChallengeKind, id: string, value: string): Promise<void> {
    try {
      await this.store.writeChallenge?.(kind, id, value, this.lockTtlMs);
    } catch (err) {
      this.log('warn', 'acme: cannot store a challenge answer on disk; only this process answers', {
        kind,
        error: String(err),
      });
    }
    await this.sharedCall('challenge write', undefined, (s) =>
      s.writeChallenge(kind, id, value, this.lockTtlMs),
    );
  }

  private async withdrawChallenge(kind: ChallengeKind, id: string): Promise<void> {
    await this.store.removeChallenge?.(kind, id).catch(() => undefined);
    await this.sharedCall('challenge remove', undefined, (s) => s.removeChallenge(kind, id));
  }

  /** Resolves once `name` has a certificate other than `previous` (at once when it has one). */
  whenCertificate(name: string, previous?: ManagedCertificate): Promise<ManagedCertificate> {
    const current = this.entries.get(name)?.certificate;
    if (current && current !== previous) return Promise.resolve(current);
    return new Promise((resolve) => {
      const list = this.waiters.get(name) ?? [];
      list.push(resolve);
      this.waiters.set(name, list);
    });
  }

  status(): AcmeNameStatus[] {
    const iso = (t: number | null) => (t === null || t === 0 ? null : new Date(t).toISOString());
    return [...this.entries].map(([name, e]) => ({
      name,
      notAfter: iso(e.certificate?.notAfter ?? null),
      renewAt: iso(e.certificate ? renewalTime(e.certificate) : null),
      failures: e.failures,
      nextAttemptAt: iso(e.nextAttemptAt),
      lastError: e.lastError,
    }));
  }

  private install(name: string, entry: Entry, certificate: ManagedCertificate): void {
    entry.certificate = certificate;
    const waiting = this.waiters.get(name);
    if (waiting) {
      this.waiters.delete(name);
      for (const resolve of waiting) resolve(certificate);
    }
  }

  private dueAt(entry: Entry): number {
    const renewAt = entry.certificate === null ? 0 : renewalTime(entry.certificate);
    return Math.max(renewAt, entry.nextAttemptAt);
  }

  private schedule(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.running) return;
    let next = Infinity;
    for (const entry of this.entries.values()) next = Math.min(next, this.dueAt(entry));
    if (next === Infinity) return;
    const delay = Math.min(Math.max(0, next - this.now()), MAX_TIMER_MS);
    this.timer = setTimeout(() => void this.runDue(), delay);
    this.timer.unref();
  }

  /** Orders every due name, one at a time, then arms the timer for the next due one. */
  private async runDue(): Promise<void> {
    this.timer = null;
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      for (const [name, entry] of [...this.entries]) {
        if (this.stopped) break;
        if (this.entries.get(name) !== entry || this.dueAt(entry) > this.now()) continue;
        await this.obtain(name, entry);
      }
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private async getClient(): Promise<AcmeClient.Client> {
    if (this.client !== null) return this.client;
    const directoryUrl = this.settings.directory ?? DEFAULT_DIRECTORY;
    let account = await this.store.readAccount();
    if (account === null && this.shared !== null) {
      account = await this.sharedCall('read', null, (s) => s.readAccount());
      if (account !== null) await this.store.writeAccount(account);
    }
    if (account === null) {
      const created: StoredAccount = {
        key: (await acmeLib().crypto.createPrivateEcdsaKey()).toString(),
        url: '',
      };
      // Another instance may have created one meanwhile: the first one in Redis wins.
      account = await this.sharedCall('write', created, (s) => s.offerAccount(created));
      await this.store.writeAccount(account);
    } else if (this.shared !== null) {
      const local = account;
      await this.sharedCall('write', local, (s) => s.offerAccount(local));
    }
    this.client = new (acmeLib().Client)({
      directoryUrl,
      accountKey: account.key,
      ...(account.url ? { accountUrl: account.url } : {}),
      // Polling for a challenge or order to become valid: quick first, then spaced out.
      backoffAttempts: 10,
      backoffMin: 250,
      backoffMax: 10_000,
    });
    return this.client;
  }

  /**
   * Orders a certificate for `name`; with Redis, first takes the name's order lock so only one
   * instance orders, and the others wait for its certificate in Redis and serve that one.
   */
  private async obtain(name: string, entry: Entry): Promise<void> {
    if (this.shared === null) return this.order(name, entry);
    if (await this.adoptShared(name, entry)) return;
    const deadline = Date.now() + this.lockTtlMs;
    let waitingLogged = false;
    for (;;) {
      const shared: RedisAcmeShare | null = this.shared;
      if (shared === null) return this.order(name, entry);
      let token: string | null;
      try {
        token = await shared.lock(name, this.lockTtlMs);
      } catch (err) {
        this.log('warn', 'acme: redis order lock unavailable; ordering without it', {
          name,
          error: (err as Error).message,
        });
        return this.order(name, entry);
      }
      if (token !== null) return this.orderLocked(shared, name, entry, token);
      if (!waitingLogged) {
        waitingLogged = true;
        this.log('info', 'acme: another instance is ordering; waiting for its certificate', {
          name,
        });
      }
      for (;;) {
        if (this.stopped || this.shared !== shared) return;
        if (Date.now() >= deadline) {
          this.fail(name, entry, new Error('timed out waiting for another instance to order'));
          return;
        }
        await new Promise<void>((resolve) => setTimeout(resolve, this.pollMs).unref());
        if (this.stopped || this.shared !== shared) return;
        if (await this.adoptShared(name, entry)) return;
        const locked = await this.sharedCall('lock check', false, (s) => s.isLocked(name));
        if (!locked) break; // the holder finished without a certificate or died: try to order
      }
    }
  }

  /** Serves a certificate another instance stored in Redis when it is newer and not yet due. */
  private async adoptShared(name: string, entry: Entry): Promise<boolean> {
    const fromRedis = await this.sharedCall('read', null, (s) => s.readCertificate(name));
    const remote = fromRedis === null ? null : this.usable(name, fromRedis);
    if (remote === null || renewalTime(remote) <= this.now()) return false;
    if (entry.certificate !== null && remote.notAfter <= entry.certificate.notAfter) return false;
    await this.writeLocal(name, remote);
    entry.failures = 0;
    entry.nextAttemptAt = 0;
    entry.lastError = null;
    if (this.entries.get(name) === entry) this.install(name, entry, remote);
    this.log('info', 'acme: certificate loaded from redis', {
      name,
      notAfter: new Date(remote.notAfter).toISOString(),
    });
    return true;
  }

  /** Orders while holding the lock, renewing it meanwhile; releases it only if still ours. */
  private async orderLocked(
    shared: RedisAcmeShare,
    name: string,
    entry: Entry,
    token: string,
  ): Promise<void> {
    const renew = setInterval(
      () => {
        shared.renew(name, token, this.lockTtlMs).catch(() => undefined);
      },
      Math.max(1000, Math.floor(this.lockTtlMs / 3)),
    );
    renew.unref();
    try {
      await this.order(name, entry);
    } finally {
      clearInterval(renew);
      await shared.unlock(name, token).catch(() => undefined);
    }
  }

  private fail(name: string, entry: Entry, err: unknown): void {
    const renewing = entry.certificate !== null;
    entry.failures++;
    const delay = Math.min(this.retryBaseMs * 2 ** (entry.failures - 1), this.maxRetryMs);
    entry.nextAttemptAt = this.now() + delay;
    entry.lastError = (err as Error).message;
    this.log(renewing ? 'warn' : 'error', 'acme: order failed; will retry', {
      name,
      error: entry.lastError,
      failures: entry.failures,
      retryInMs: delay,
      ...(renewing && entry.certificate
        ? { validUntil: new Date(entry.certificate.notAfter).toISOString() }
        : {}),
    });
  }

  private async order(name: string, entry: Entry): Promise<void> {
    const renewing = entry.certificate !== null;
    this.log('info', renewing ? 'acme: renewing certificate' : 'acme: obtaining certificate', {
      name,
      directory: this.settings.directory ?? DEFAULT_DIRECTORY,
      challenges: this.challengeTypes,
    });
    try {
      const client = await this.getClient();
      const [key, csr] = await acmeLib().crypto.createCsr(
        { commonName: name, altNames: [name] },
        await acmeLib().crypto.createPrivateEcdsaKey(),
      );
      const chain = await client.auto({
        csr,
        ...(this.settings.email ? { email: this.settings.email } : {}),
        termsOfServiceAgreed: true,
        // acme-client would fetch the challenge itself first (through DNS); the CA checks anyway.
        skipChallengeVerification: true,
        challengePriority: this.challengeTypes,
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          // acme-client's types know http-01 and dns-01 only; tls-alpn-01 arrives all the same.
          const type = challenge.type as string;
          if (challenge.type === 'http-01') {
            this.httpTokens.set(challenge.token, keyAuthorization);
            await this.publishChallenge('http-01', challenge.token, keyAuthorization);
          } else if (type === 'tls-alpn-01') {
            const [alpnKey, alpnCert] = await acmeLib().crypto.createAlpnCertificate(
              authz,
              keyAuthorization,
            );
            const alpnName = authz.identifier.value.toLowerCase();
            this.alpnContexts.set(
              alpnName,
              tls.createSecureContext({ key: alpnKey, cert: alpnCert }),
            );
            await this.publishChallenge(
              'tls-alpn-01',
              alpnName,
              JSON.stringify({ cert: alpnCert.toString(), key: alpnKey.toString() }),
            );
          } else {
            throw new Error(
              `the ACME server offers no challenge Switchyard can answer (got ${type})`,
            );
          }
        },
        challengeRemoveFn: async (authz, challenge) => {
          if (challenge.type === 'http-01') {
            this.httpTokens.delete(challenge.token);
            await this.withdrawChallenge('http-01', challenge.token);
          } else {
            const alpnName = authz.identifier.value.toLowerCase();
            this.alpnContexts.delete(alpnName);
            await this.withdrawChallenge('tls-alpn-01', alpnName);
          }
        },
      });
      const accountUrl = client.getAccountUrl();
      const stored = await this.store.readAccount();
      if (stored !== null && stored.url !== accountUrl) {
        const updated = { key: stored.key, url: accountUrl };
        await this.store.writeAccount(updated);
        await this.sharedCall('write', undefined, (s) => s.writeAccount(updated));
      }
      const certificate = parseCertificate({ cert: chain, key: key.toString() });
      if (certificate === null) throw new Error('the ACME server returned an unusable certificate');
      await this.store.writeCertificate(name, { cert: certificate.cert, key: certificate.key });
      await this.sharedCall('write', undefined, (s) =>
        s.writeCertificate(name, {
          cert: certificate.cert,
          key: certificate.key,
          notAfter: certificate.notAfter,
        }),
      );
      entry.failures = 0;
      entry.nextAttemptAt = 0;
      entry.lastError = null;
      if (this.entries.get(name) === entry) this.install(name, entry, certificate);
      this.log('info', renewing ? 'acme: certificate renewed' : 'acme: certificate obtained', {
        name,
        notAfter: new Date(certificate.notAfter).toISOString(),
        renewAt: new Date(renewalTime(certificate)).toISOString(),
      });
    } catch (err) {
      this.fail(name, entry, err);
    }
  }
}
