import type { Pool } from 'undici';
import { createUpstreamConnector, needsUpstreamConnector } from './tls.js';
import { channels } from '../core/events.js';
import { systemClock, type Clock } from './clock.js';
import { H1Pool, h1ClientEnabled } from './h1/index.js';
import { undici } from './undici.js';

/** The pool settings that, when changed by a reload, require a new pool for the same server. */
export interface PoolSettings {
  connectTimeoutMs: number;
  keepAliveIdleMs: number;
  /** Idle connections kept per server (enforced by the built-in HTTP/1.1 client). */
  maxIdle: number;
  maxConnections: number | null;
  protocol: 'http1' | 'h2' | 'h2c';
  /** Options from the upstream TLS feature, passed to undici's connector as they are. */
  tls?: Record<string, unknown>;
}

export type HostState = 'up' | 'down' | 'draining';

/** What the admin API and metrics show for one server: a plain copy, safe to serialize. */
export interface HostSnapshot {
  url: string;
  weight: number;
  /** The weight balancers use right now (lower while slow start ramps the server up). */
  effectiveWeight: number;
  backup: boolean;
  state: HostState;
  /** Passes active checks and is not ejected. */
  healthy: boolean;
  ejected: boolean;
  /** Milliseconds until the ejection ends; 0 when not ejected. */
  ejectedForMs: number;
  ejections: number;
  draining: boolean;
  activeRequests: number;
  totalRequests: number;
  totalFailures: number;
  totalRetries: number;
  /** Peak-EWMA latency in ms (only maintained by the ewma balancer); 0 when unmeasured. */
  ewmaMs: number;
  /** The last active health check, or null when none ran. */
  lastCheck: { ok: boolean; status: number; error: string; at: number } | null;
}

/**
 * While a pick runs in panic mode (every server of a group ejected), ejections are ignored so
 * traffic reaches all servers instead of none, as Envoy does. Set and cleared synchronously
 * around one pick by UpstreamGroup.
 */
let ignoreEjections = false;

export function setIgnoreEjections(value: boolean): void {
  ignoreEjections = value;
}

/** Slow start never starts a server below this share of its weight (Envoy's min_weight_percent). */
const SLOW_START_MIN_FACTOR = 0.1;

/**
 * One backend server and everything that must outlive a config reload: its connection pool,
 * health, admin state and counters. Hosts are shared across reloads through the HostRegistry;
 * never copy one, or health and in-flight counts split in two.
 *
 * Availability has three independent inputs: `healthy` (active checks), the passive ejection
 * deadline and `draining` (admin). Ejection ends lazily: the first `available` read after the
 * deadline clears it, so no timer is needed and an injected clock drives it in tests.
 */
export class Host {
  readonly upstream: string;
  readonly origin: string;
  /** host:port as used in URLs, for Location and cookie rewriting. */
  readonly authority: string;
  readonly hostname: string;
  weight: number;
  backup: boolean;
  /** Set by active health checks (and tests); true until a check says otherwise. */
  healthy = true;
  /** Set by the admin API: a draining host takes no new requests. */
  draining = false;
  activeRequests = 0;
  totalRequests = 0;
  /** Attempts that failed (connect errors, resets, timeouts, counted 5xx). */
  totalFailures = 0;
  /** Attempts on this host that were retries of an attempt on another host. */
  totalRetries = 0;
  /** Balancer scratch space (e.g. smooth round-robin's current weight), owned by the balancer. */
  lbState = 0;

  // Passive health (outlier detection), owned by health/passive.ts.
  /** Clock time when the current ejection ends; 0 when not ejected. */
  ejectedUntil = 0;
  /** Ejections in the current streak: the next ejection lasts ejectFor times this plus one. */
  ejections = 0;
  /** Clock time when the last ejection ended (or was scheduled to end). */
  lastEjectionEnd = 0;
  consecutiveFailures = 0;
  failureStreakStart = 0;

  // Active health, owned by health/active.ts.
  checkPasses = 0;
  checkFailures = 0;
  lastCheck: HostSnapshot['lastCheck'] = null;

  // Peak EWMA, owned by lb/ewma.ts.
  ewmaMs = 0;
  ewmaStamp = 0;

  // Slow start: the share ramps from 10% to 100% between these clock times.
  slowStartMs = 0;
  private rampStart = 0;
  private rampEnd = 0;

  pool: Pool;
  /** The settings the pool was built with (health checkers reuse the connect and TLS options). */
  poolSettings: PoolSettings;
  readonly clock: Clock;
  private settingsKey: string;

  constructor(
    upstream: string,
    origin: string,
    weight: number,
    backup: boolean,
    settings: PoolSettings,
    clock: Clock = systemClock,
  ) {
    this.upstream = upstream;
    this.origin = origin;
    const url = new URL(origin);
    this.authority = url.host;
    this.hostname = url.hostname.replace(/^\[|\]$/g, '');
    this.weight = weight;
    this.backup = backup;
    this.clock = clock;
    this.poolSettings = settings;
    this.settingsKey = JSON.stringify(settings);
    this.pool = createPool(origin, settings);
  }

  /** Can take new requests: healthy, not draining, not ejected (unless in panic mode). */
  get available(): boolean {
    return this.healthy && !this.draining && (this.ejectedUntil === 0 || this.ejectionOver());
  }

  get ejected(): boolean {
    return this.ejectedUntil !== 0 && this.clock.now() < this.ejectedUntil;
  }

  get state(): HostState {
    if (this.draining) return 'draining';
    return this.healthy && !this.ejected ? 'up' : 'down';
  }

  /** The weight balancers use: the configured one, or less while slow start ramps up. */
  get effectiveWeight(): number {
    return this.rampEnd === 0 ? this.weight : this.rampedWeight();
  }

  private rampedWeight(): number {
    const now = this.clock.now();
    if (now >= this.rampEnd) {
      this.rampEnd = 0;
      return this.weight;
    }
    const share = (now - this.rampStart) / (this.rampEnd - this.rampStart);
    return this.weight * Math.max(SLOW_START_MIN_FACTOR, share);
  }

  private ejectionOver(): boolean {
    if (ignoreEjections) return true;
    if (this.clock.now() < this.ejectedUntil) return false;
    this.ejectedUntil = 0;
    this.consecutiveFailures = 0;
    this.startSlowStart();
    if (channels.healthChange.hasSubscribers)
      channels.healthChange.publish({
        upstream: this.upstream,
        server: this.origin,
        healthy: this.healthy,
        source: 'passive',
      });
    return true;
  }

  /** Starts the slow-start ramp (a no-op without slowStart): the server is back or new. */
  startSlowStart(): void {
    if (this.slowStartMs <= 0) return;
    this.rampStart = this.clock.now();
    this.rampEnd = this.rampStart + this.slowStartMs;
  }

  /** Records an active-check verdict; returns true when it changed the host's health. */
  setHealthy(healthy: boolean, source: string): boolean {
    if (this.healthy === healthy) return false;
    this.healthy = healthy;
    if (healthy) this.startSlowStart();
    if (channels.healthChange.hasSubscribers)
      channels.healthChange.publish({
        upstream: this.upstream,
        server: this.origin,
        healthy,
        source,
      });
    return true;
  }

  /** Admin drain/enable. Enabling a drained host ramps it up like a returning one. */
  setDraining(draining: boolean): void {
    if (this.draining === draining) return;
    this.draining = draining;
    if (!draining) this.startSlowStart();
    if (channels.healthChange.hasSubscribers)
      channels.healthChange.publish({
        upstream: this.upstream,
        server: this.origin,
        healthy: this.healthy && !this.ejected && !draining,
        source: 'admin',
      });
  }

  snapshot(): HostSnapshot {
    const now = this.clock.now();
    const ejected = this.ejectedUntil !== 0 && now < this.ejectedUntil;
    return {
      url: this.origin,
      weight: this.weight,
      effectiveWeight: this.effectiveWeight,
      backup: this.backup,
      state: this.state,
      healthy: this.healthy && !ejected,
      ejected,
      ejectedForMs: ejected ? Math.ceil(this.ejectedUntil - now) : 0,
      ejections: this.ejections,
      draining: this.draining,
      activeRequests: this.activeRequests,
      totalRequests: this.totalRequests,
      totalFailures: this.totalFailures,
      totalRetries: this.totalRetries,
      ewmaMs: this.ewmaMs,
      lastCheck: this.lastCheck,
    };
  }

  /** Applies new settings from a reload; returns the old pool when it had to be replaced. */
  reconfigure(weight: number, backup: boolean, settings: PoolSettings): Pool | undefined {
    this.weight = weight;
    this.backup = backup;
    const key = JSON.stringify(settings);
    if (key === this.settingsKey) return undefined;
    const old = this.pool;
    this.settingsKey = key;
    this.poolSettings = settings;
    this.pool = createPool(this.origin, settings);
    return old;
  }
}

function createPool(origin: string, settings: PoolSettings): Pool {
  if (h1ClientEnabled && settings.protocol === 'http1' && origin.startsWith('http:')) {
    // Plain HTTP/1.1 upstreams use Switchyard's own client (docs/performance.md): the same
    // dispatch(opts, handler) contract as undici's Pool, which TLS and HTTP/2 upstreams keep.
    return new H1Pool(origin, {
      connectTimeoutMs: settings.connectTimeoutMs,
      keepAliveIdleMs: settings.keepAliveIdleMs,
      maxConnections: settings.maxConnections,
      maxIdle: settings.maxIdle,
    }) as unknown as Pool;
  }
  return new (undici().Pool)(origin, {
    connections: settings.maxConnections,
    // HTTP/2 multiplexes: up to 100 streams per connection instead of one request at a time.
    pipelining: settings.protocol === 'http1' ? 1 : 100,
    keepAliveTimeout: settings.keepAliveIdleMs,
    keepAliveMaxTimeout: Math.max(settings.keepAliveIdleMs, 600_000),
    // Client-facing timeouts are set per request; these are only the connection-level bounds.
    // TLS and h2c upstreams get a connector with a fixed SNI name and HTTP/2 options.
    connect: needsUpstreamConnector(origin, settings)
      ? createUpstreamConnector(origin, settings)
      : { timeout: settings.connectTimeoutMs, ...(settings.tls ?? {}) },
    allowH2: settings.protocol !== 'http1',
    // Upstream response headers are bounded like client request headers.
    maxHeaderSize: 64 * 1024,
    strictContentLength: true,
  });
}
