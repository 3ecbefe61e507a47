import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { OcspStapler } from './ocsp.js';

/** The listener `tls` section as written in the config (validated by the schema). */
export interface ListenerTlsSettings {
  certificates: Array<{ cert: string; key: string }>;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  clientAuth?: { ca: string; required?: boolean };
}

/**
 * Certificates that do not come from the listener's files (ACME, src/acme/). Asked only for
 * names no configured certificate serves; `alpnChallenge` answers TLS-ALPN-01 validations
 * (RFC 8737) with the special self-signed certificate while an order is pending.
 */
export interface CertificateProvider {
  certificateFor(name: string): { cert: string; key: string } | undefined;
  alpnChallenge(name: string): tls.SecureContext | undefined;
  /**
   * A TLS-ALPN-01 certificate another instance or worker is validating with (a shared store),
   * asked during a handshake that offers only acme-tls/1 when `alpnChallenge` has none.
   * Undefined when nothing is shared.
   */
  sharedAlpnChallenge?(name: string): Promise<tls.SecureContext | undefined> | undefined;
}

/** The ALPN protocol of RFC 8737 validations: such a connection only carries the handshake. */
export const ACME_TLS_ALPN = 'acme-tls/1';

/** Marks a socket whose ALPN callback picked acme-tls/1 (the SNI callback runs after it). */
const acmeHandshake = Symbol('switchyard.acmeHandshake');

/** Hook for OCSP stapling (src/server/ocsp.ts): the server's 'OCSPRequest' listener. */
type OcspCallback = (err: Error | null, response: Buffer | null) => void;
export type OcspRequestHandler = (
  certificate: Buffer,
  issuer: Buffer | null,
  callback: OcspCallback,
) => void;

type LogFn = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

/**
 * Mozilla's "intermediate" list: forward secrecy and AEAD only for TLS 1.2, and the three TLS 1.3
 * suites named explicitly (Node takes the TLS 1.3 suites from the same string).
 */
export const MODERN_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

interface TlsServerFlags {
  requestCert: boolean;
  rejectUnauthorized: boolean;
}

/** A certificate that expires within this window is reported at load time. */
export const EXPIRY_WARNING_MS = 30 * 24 * 3600 * 1000;

/** A user-facing certificate problem; the message names the config key and says what to do. */
export class TlsConfigError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'TlsConfigError';
    this.code = code;
  }
}

export interface LoadedCertificate {
  /** Lowercased DNS names from subjectAltName (or the subject CN when there is none). */
  names: string[];
  validTo: Date;
  context: tls.SecureContext;
  /** The PEM texts, so the default can be handed to `setSecureContext`. */
  cert: string;
  key: string;
}

/** The certificates of one listener at one point in time; replaced as a whole on reload. */
export interface CertificateSet {
  certificates: LoadedCertificate[];
  exact: Map<string, tls.SecureContext>;
  /** Keyed by the parent domain: `*.example.org` is stored under `example.org`. */
  wildcard: Map<string, tls.SecureContext>;
  defaultContext: tls.SecureContext;
  /** Protocol, cipher and client-CA options every context of this listener is built with. */
  baseOptions: tls.SecureContextOptions;
  /** The options the server's own (default) context is built from. */
  serverOptions: tls.SecureContextOptions;
  clientAuth: { ca: string; required: boolean } | null;
  files: string[];
}

function readPem(file: string, keyPath: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EACCES'
          ? 'permission denied'
          : (e.code ?? e.message);
    throw new TlsConfigError(
      'TLS_FILE_UNREADABLE',
      `${keyPath}: cannot read the ${what} file "${file}": ${reason}`,
    );
  }
}

/** DNS names a certificate serves: subjectAltName DNS entries, else the subject's CN. */
export function certificateNames(x509: X509Certificate): string[] {
  const names: string[] = [];
  const san = x509.subjectAltName;
  if (san) {
    for (const entry of san.split(/,\s*/)) {
      if (entry.startsWith('DNS:')) names.push(entry.slice(4).toLowerCase());
    }
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject);
    if (cn) names.push(cn[1].trim().toLowerCase());
  }
  return names;
}

function loadCertificate(
  entry: { cert: string; key: string },
  keyPath: string,
  baseOptions: tls.SecureContextOptions,
  now: number,
  log: LogFn | null,
): LoadedCertificate {
  const cert = readPem(entry.cert, `${keyPath}.cert`, 'certificate');
  const key = readPem(entry.key, `${keyPath}.key`, 'private key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new TlsConfigError(
      'TLS_BAD_CERTIFICATE',
      `${keyPath}.cert: "${entry.cert}" is not a PEM certificate`,
    );
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new TlsConfigError(
      'TLS_BAD_KEY',
      `${keyPath}.key: "${entry.key}" is not a PEM private key (encrypted keys are not supported)`,
    );
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new TlsConfigError(
      'TLS_KEY_MISMATCH',
      `${keyPath}: the key "${entry.key}" does not match the certificate "${entry.cert}"; use the key the certificate was issued for`,
    );
  }
  const validTo = new Date(x509.validTo);
  const validFrom = new Date(x509.validFrom);
  if (validTo.getTime() <= now) {
    throw new TlsConfigError(
      'TLS_CERT_EXPIRED',
      `${keyPath}.cert: the certificate "${entry.cert}" expired on ${validTo.toISOString()}; renew it`,
    );
  }
  if (validFrom.getTime() > now) {
    throw new TlsConfigError(
      'TLS_CERT_NOT_YET_VALID',
      `${keyPath}.cert: the certificate "${entry.cert}" is not valid before ${validFrom.toISOString()}`,
    );
  }
  const names = certificateNames(x509);
  if (log !== null && validTo.getTime() - now < EXPIRY_WARNING_MS) {
    const days = Math.max(0, Math.floor((validTo.getTime() - now) / 86_400_000));
    log('warn', `certificate expires in ${days} days; renew it soon`, {
      key: `${keyPath}.cert`,
      file: entry.cert,
      names,
      validTo: validTo.toISOString(),
    });
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ...baseOptions, cert, key });
  } catch (err) {
    throw new TlsConfigError(
      'TLS_BAD_CERTIFICATE',
      `${keyPath}: cannot use "${entry.cert}": ${(err as Error).message}`,
    );
  }
  return { names, validTo, context, cert, key };
}

/**
 * Reads and checks every certificate of a listener. Throws a TlsConfigError for the first
 * problem, so a bad file is reported before anything is swapped in.
 */
export function loadCertificateSet(
  settings: ListenerTlsSettings,
  listenerName: string,
  log: LogFn | null,
  now = Date.now(),
): CertificateSet {
  // An unnamed listener is called `listeners[i]`, which is already its key path.
  const at = `${listenerName.startsWith('listeners[') ? '' : 'listeners.'}${listenerName}.tls`;
  // No certificate at all is allowed only with `acme` (config validation checks that): every
  // name then comes from the provider, and a name nobody serves fails its handshake.
  const noCertificate = !settings.certificates || settings.certificates.length === 0;
  let clientAuth: CertificateSet['clientAuth'] = null;
  const base: tls.SecureContextOptions = {
    minVersion: settings.minVersion ?? 'TLSv1.2',
    ciphers: MODERN_CIPHERS,
    honorCipherOrder: true,
  };
  const files: string[] = [];
  if (settings.clientAuth) {
    const ca = readPem(settings.clientAuth.ca, `${at}.clientAuth.ca`, 'client CA');
    clientAuth = { ca, required: settings.clientAuth.required ?? true };
    base.ca = ca;
    files.push(settings.clientAuth.ca);
  }
  const certificates = (settings.certificates ?? []).map((entry, i) => {
    files.push(entry.cert, entry.key);
    return loadCertificate(entry, `${at}.certificates[${i}]`, base, now, log);
  });
  const exact = new Map<string, tls.SecureContext>();
  const wildcard = new Map<string, tls.SecureContext>();
  for (const c of certificates) {
    for (const name of c.names) {
      // The first certificate naming a host wins, like the order of the list says.
      if (name.startsWith('*.')) {
        if (!wildcard.has(name.slice(2))) wildcard.set(name.slice(2), c.context);
      } else if (!exact.has(name)) {
        exact.set(name, c.context);
      }
    }
  }
  const first = noCertificate ? null : certificates[0];
  return {
    certificates,
    exact,
    wildcard,
    defaultContext: first?.context ?? tls.createSecureContext(base),
    baseOptions: base,
    serverOptions: first ? { ...base, cert: first.cert, key: first.key } : { ...base },
    clientAuth,
    files,
  };
}

/** The configured context for a name (exact, then a wildcard one level up), if any. */
export function configuredContext(
  set: CertificateSet,
  servername: string,
): tls.SecureContext | undefined {
  const name = servername.toLowerCase();
  const exact = set.exact.get(name);
  if (exact !== undefined) return exact;
  const dot = name.indexOf('.');
  return dot === -1 ? undefined : set.wildcard.get(name.slice(dot + 1));
}

/** Picks the context for an SNI name: exact name, then a wildcard one level up, then default. */
export function selectContext(set: CertificateSet, servername: string): tls.SecureContext {
  return configuredContext(set, servername) ?? set.defaultContext;
}

/**
 * TLS termination state for one listener: the current certificate set, the SNI callback that
 * reads it, and reloading (on demand and when the files change). A reload swaps the set
 * atomically; handshakes in progress and open connections keep the context they started with,
 * so nothing is dropped.
 */
export class TlsTerminator {
  private set: CertificateSet;
  private settings: ListenerTlsSettings;
  private readonly listenerName: string;
  private readonly log: LogFn;
  private server: tls.Server | null = null;
  private watchers: FSWatcher[] = [];
  private watchTimer: NodeJS.Timeout | null = null;
  private provider: CertificateProvider | null = null;
  /** Provider certificates turned into contexts with this set's options, built once each. */
  private providedContexts = new WeakMap<object, tls.SecureContext>();
  private ocspHandler: OcspRequestHandler | null = null;
  private alpn: string[] = ['http/1.1'];

  constructor(settings: ListenerTlsSettings, listenerName: string, log: LogFn) {
    this.settings = settings;
    this.listenerName = listenerName;
    this.log = log;
    this.set = loadCertificateSet(settings, listenerName, log);
  }

  get current(): CertificateSet {
    return this.set;
  }

  /** Options for tls.Server / https.Server / http2.createSecureServer. */
  serverOptions(alpn: string[]): tls.TlsOptions {
    const set = this.set;
    this.alpn = alpn;
    return {
      ...set.serverOptions,
      // A callback rather than ALPNProtocols: it can accept acme-tls/1 for a pending TLS-ALPN-01
      // validation. Without an overlap the handshake fails, as with ALPNProtocols.
      ALPNCallback: this.alpnCallback,
      SNICallback: this.sniCallback,
      requestCert: set.clientAuth !== null,
      rejectUnauthorized: set.clientAuth?.required ?? false,
    };
  }

  /** Certificates for names the configured ones do not serve (ACME). */
  setProvider(provider: CertificateProvider | null): void {
    this.provider = provider;
  }

  /** Staples OCSP responses through `handler` (installed on the server by `attach`). */
  setOcspHandler(handler: OcspRequestHandler | null): void {
    this.ocspHandler = handler;
    if (handler !== null) this.listenOcsp();
  }

  private ocspListening = false;

  /** Installed only once stapling is on: clients that ask for a staple then cost a JS call. */
  private listenOcsp(): void {
    const server = this.server;
    if (server === null || this.ocspListening) return;
    this.ocspListening = true;
    server.on('OCSPRequest', (certificate: Buffer, issuer: Buffer | null, cb: OcspCallback) => {
      const handler = this.ocspHandler;
      if (handler === null) cb(null, null);
      else handler(certificate, issuer, cb);
    });
  }

  private pickAlpn(socket: tls.TLSSocket | undefined, servername: string, offered: string[]) {
    if (
      offered.length === 1 &&
      offered[0] === ACME_TLS_ALPN &&
      this.provider !== null &&
      servername &&
      (this.provider.alpnChallenge(servername.toLowerCase()) !== undefined ||
        this.provider.sharedAlpnChallenge !== undefined)
    ) {
      // With a shared store the challenge may be another instance's: the SNI callback (which
      // may wait) looks it up and fails the handshake when no instance has one pending.
      // Node runs the ALPN callback before the SNI one: the mark tells SNI which cert to use.
      if (socket !== undefined)
        (socket as unknown as Record<symbol, boolean>)[acmeHandshake] = true;
      return ACME_TLS_ALPN;
    }
    for (const p of this.alpn) if (offered.includes(p)) return p;
    return undefined;
  }

  private readonly alpnCallback = (() => {
    // A plain function: node calls it with the TLSSocket as `this`.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const terminator = this;
    return function (
      this: tls.TLSSocket | undefined,
      info: { servername: string; protocols: string[] },
    ): string | undefined {
      return terminator.pickAlpn(this, info.servername, info.protocols);
    };
  })();

  private readonly selectForSocket = (socket: tls.TLSSocket | undefined, servername: string) => {
    const set = this.set;
    const configured = configuredContext(set, servername);
    if (configured !== undefined) return configured;
    const provider = this.provider;
    if (provider === null) return set.defaultContext;
    const name = servername.toLowerCase();
    if (
      socket !== undefined &&
      (socket as unknown as Record<symbol, boolean>)[acmeHandshake] === true
    ) {
      const challenge = provider.alpnChallenge(name);
      if (challenge !== undefined) return challenge;
    }
    const provided = provider.certificateFor(name);
    if (provided === undefined) return set.defaultContext;
    let context = this.providedContexts.get(provided);
    if (context === undefined) {
      context = tls.createSecureContext({
        ...set.baseOptions,
        cert: provided.cert,
        key: provided.key,
      });
      this.providedContexts.set(provided, context);
    }
    return context;
  };

  private readonly sniCallback = (() => {
    // A plain function so node's `this` (the TLSSocket, whose ALPN is already chosen) is seen.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const terminator = this;
    return function (
      this: tls.TLSSocket | undefined,
      servername: string,
      cb: (err: Error | null, ctx?: tls.SecureContext) => void,
    ) {
      const provider = terminator.provider;
      if (
        this !== undefined &&
        (this as unknown as Record<symbol, boolean>)[acmeHandshake] === true &&
        provider !== null &&
        provider.alpnChallenge(servername.toLowerCase()) === undefined
      ) {
        const shared = provider.sharedAlpnChallenge?.(servername.toLowerCase());
        if (shared === undefined) {
          cb(new Error('no pending TLS-ALPN-01 challenge for this name'));
          return;
        }
        shared.then(
          (context) =>
            context === undefined
              ? cb(new Error('no pending TLS-ALPN-01 challenge for this name'))
              : cb(null, context),
          (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
        );
        return;
      }
      cb(null, terminator.selectForSocket(this, servername));
    };
  })();

  /** Ties the terminator to its server and starts watching the certificate files. */
  attach(server: tls.Server): void {
    this.server = server;
    this.watchFiles();
    // Stapling is on for every TLS listener; for a certificate naming no responder it costs a
    // hash and a lookup, and only in handshakes whose client asks for a staple.
    if (this.ocspHandler === null) this.ocspHandler = new OcspStapler({ log: this.log }).handle;
    // A TLS-ALPN-01 validation connection carries nothing after the handshake (RFC 8737 §3).
    // Appended, not prepended: the HTTP/2 routing (http2.ts) takes node's own connection
    // listener as the first one.
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      if ((socket as unknown as Record<symbol, boolean>)[acmeHandshake] === true) socket.destroy();
    });
    if (this.ocspHandler !== null) this.listenOcsp();
  }

  /**
   * Loads a new set (from new settings, or the same files again) without touching the live
   * one; returns the function that swaps it in. Throws TlsConfigError on a bad file.
   */
  prepare(settings: ListenerTlsSettings = this.settings): () => void {
    const next = loadCertificateSet(settings, this.listenerName, this.log);
    return () => {
      this.settings = settings;
      this.set = next;
      this.providedContexts = new WeakMap();
      const server = this.server as (tls.Server & TlsServerFlags) | null;
      if (server !== null) {
        server.setSecureContext(next.serverOptions);
        // Read by node for each new connection, so turning mTLS on or off needs no restart.
        server.requestCert = next.clientAuth !== null;
        server.rejectUnauthorized = next.clientAuth?.required ?? false;
      }
      this.watchFiles();
    };
  }

  /** Reloads from the files; on a problem logs it and keeps serving the old certificates. */
  reload(reason: string): boolean {
    try {
      this.prepare()();
      this.log('info', 'certificates reloaded', {
        listener: this.listenerName,
        reason,
        names: this.set.certificates.flatMap((c) => c.names),
      });
      return true;
    } catch (err) {
      this.log('error', 'certificate reload failed; the old certificates keep serving', {
        listener: this.listenerName,
        reason,
        error: (err as Error).message,
      });
      return false;
    }
  }

  private watchFiles(): void {
    this.unwatch();
    // Watch the directories: tools that renew certificates usually write a new file and rename
    // it over the old one, which a watch on the old file itself would miss.
    const byDir = new Map<string, Set<string>>();
    for (const file of this.set.files) {
      const abs = path.resolve(file);
      const dir = path.dirname(abs);
      if (!byDir.has(dir)) byDir.set(dir, new Set());
      byDir.get(dir)?.add(path.basename(abs));
    }
    for (const [dir, names] of byDir) {
      try {
        const watcher = watch(dir, { persistent: false }, (_event, filename) => {
          if (filename !== null && !names.has(filename.toString())) return;
          this.scheduleReload();
        });
        watcher.on('error', () => undefined);
        this.watchers.push(watcher);
      } catch (err) {
        this.log('warn', 'cannot watch certificate files; reload with SIGHUP after renewing', {
          listener: this.listenerName,
          directory: dir,
          error: String(err),
        });
      }
    }
  }

  private scheduleReload(): void {
    // A renewal writes cert and key one after the other: wait for the writes to settle.
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    this.watchTimer = setTimeout(() => {
      this.watchTimer = null;
      this.reload('certificate files changed');
    }, 200);
    this.watchTimer.unref();
  }

  private unwatch(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  close(): void {
    this.unwatch();
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    this.watchTimer = null;
  }
}
