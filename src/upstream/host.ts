import { Pool } from 'undici';

/** The pool settings that, when changed by a reload, require a new pool for the same server. */
export interface PoolSettings {
  connectTimeoutMs: number;
  keepAliveIdleMs: number;
  maxConnections: number | null;
  protocol: 'http1' | 'h2' | 'h2c';
  /** Options from the upstream TLS feature, passed to undici's connector as they are. */
  tls?: Record<string, unknown>;
}

export type HostState = 'up' | 'down' | 'draining';

/**
 * One backend server and everything that must outlive a config reload: its connection pool,
 * health, admin state and counters. Hosts are shared across reloads through the HostRegistry;
 * never copy one, or health and in-flight counts split in two.
 */
export class Host {
  readonly upstream: string;
  readonly origin: string;
  /** host:port as used in URLs, for Location and cookie rewriting. */
  readonly authority: string;
  readonly hostname: string;
  weight: number;
  backup: boolean;
  /** Set by health checks (active or passive). */
  healthy = true;
  /** Set by the admin API: a draining host takes no new requests. */
  draining = false;
  activeRequests = 0;
  totalRequests = 0;
  /** Balancer scratch space (e.g. smooth round-robin's current weight), owned by the balancer. */
  lbState = 0;
  pool: Pool;
  private settingsKey: string;

  constructor(
    upstream: string,
    origin: string,
    weight: number,
    backup: boolean,
    settings: PoolSettings,
  ) {
    this.upstream = upstream;
    this.origin = origin;
    const url = new URL(origin);
    this.authority = url.host;
    this.hostname = url.hostname.replace(/^\[|\]$/g, '');
    this.weight = weight;
    this.backup = backup;
    this.settingsKey = JSON.stringify(settings);
    this.pool = createPool(origin, settings);
  }

  get available(): boolean {
    return this.healthy && !this.draining;
  }

  get state(): HostState {
    if (this.draining) return 'draining';
    return this.healthy ? 'up' : 'down';
  }

  /** Applies new settings from a reload; returns the old pool when it had to be replaced. */
  reconfigure(weight: number, backup: boolean, settings: PoolSettings): Pool | undefined {
    this.weight = weight;
    this.backup = backup;
    const key = JSON.stringify(settings);
    if (key === this.settingsKey) return undefined;
    const old = this.pool;
    this.settingsKey = key;
    this.pool = createPool(this.origin, settings);
    return old;
  }
}

function createPool(origin: string, settings: PoolSettings): Pool {
  return new Pool(origin, {
    connections: settings.maxConnections,
    pipelining: 1,
    keepAliveTimeout: settings.keepAliveIdleMs,
    keepAliveMaxTimeout: Math.max(settings.keepAliveIdleMs, 600_000),
    // Client-facing timeouts are set per request; these are only the connection-level bounds.
    connect: { timeout: settings.connectTimeoutMs, ...(settings.tls ?? {}) },
    allowH2: settings.protocol === 'h2',
    // Upstream response headers are bounded like client request headers.
    maxHeaderSize: 64 * 1024,
    strictContentLength: true,
  });
}
