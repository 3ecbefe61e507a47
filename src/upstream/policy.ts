import type { UpstreamConfig } from '../config/types.js';
import { parseDuration, parseSize } from '../config/units.js';

/**
 * The resilience settings of one upstream, parsed once from the raw `upstreams.NAME.*` keys
 * (the schema already checked their shape). A section that is absent is `null`, so the proxy's
 * hot path tests one field and pays nothing for a feature that is off.
 */

export type RetryCondition = 'connect-failure' | 'reset' | 'timeout' | number;

export interface RetrySettings {
  /** Extra attempts after the first, each on another server. */
  attempts: number;
  /** Share of requests that may be retried, on top of a small reserve (see RetryBudget). */
  budget: number;
  /** Bodies up to this size (with a Content-Length) are buffered so they can be replayed. */
  maxBodySize: number;
  connectFailure: boolean;
  reset: boolean;
  timeout: boolean;
  /** Upstream statuses that are retried (idempotent methods only). */
  statuses: ReadonlySet<number>;
}

export interface PassiveHealthSettings {
  maxFails: number;
  windowMs: number;
  ejectForMs: number;
  maxEjectForMs: number;
  maxEjectionPercent: number;
  failOn5xx: boolean;
}

export interface CircuitBreakerSettings {
  maxRequests: number;
  maxPending: number;
  /** Per server; null is unlimited. */
  maxConnections: number | null;
}

export interface StickySettings {
  cookie: string;
  /** Keys the cookie value; null derives one from the upstream's name and servers. */
  secret: string | null;
  maxAgeSeconds: number | null;
}

export interface HealthCheckSettings {
  path: string;
  method: string;
  host: string | null;
  intervalMs: number;
  timeoutMs: number;
  jitterMs: number;
  rise: number;
  fall: number;
  statusMin: number;
  statusMax: number;
  body: RegExp | null;
}

export interface UpstreamPolicy {
  retries: RetrySettings | null;
  passiveHealth: PassiveHealthSettings | null;
  circuitBreaker: CircuitBreakerSettings | null;
  sticky: StickySettings | null;
  healthCheck: HealthCheckSettings | null;
  slowStartMs: number;
}

type Raw = Record<string, unknown> | undefined;

const DEFAULT_RETRY_ON: RetryCondition[] = ['connect-failure', 'reset', 'timeout', 502, 503, 504];

function section(config: UpstreamConfig, key: string): Raw {
  const value = config.features[key];
  return value !== null && typeof value === 'object'
    ? (value as Record<string, unknown>)
    : undefined;
}

function ms(value: unknown, fallback: number): number {
  return typeof value === 'string' ? parseDuration(value) : fallback;
}

export function parseRetries(raw: Raw): RetrySettings | null {
  if (raw === undefined) return null;
  const attempts = typeof raw.attempts === 'number' ? raw.attempts : 2;
  if (attempts <= 0) return null;
  const on = Array.isArray(raw.retryOn) ? (raw.retryOn as RetryCondition[]) : DEFAULT_RETRY_ON;
  const statuses = new Set<number>();
  for (const c of on) if (typeof c === 'number' || /^[0-9]+$/.test(c)) statuses.add(Number(c));
  return {
    attempts,
    budget: typeof raw.budget === 'number' ? raw.budget : 0.2,
    maxBodySize:
      raw.maxBodySize === undefined ? 64 * 1024 : parseSize(raw.maxBodySize as string | number),
    connectFailure: on.includes('connect-failure'),
    reset: on.includes('reset'),
    timeout: on.includes('timeout'),
    statuses,
  };
}

export function parsePassiveHealth(raw: Raw): PassiveHealthSettings | null {
  if (raw === undefined) return null;
  const ejectForMs = ms(raw.ejectFor, 30_000);
  return {
    maxFails: typeof raw.maxFails === 'number' ? raw.maxFails : 3,
    windowMs: ms(raw.window, 10_000),
    ejectForMs,
    maxEjectForMs: Math.max(ejectForMs, ms(raw.maxEjectFor, 300_000)),
    maxEjectionPercent: typeof raw.maxEjectionPercent === 'number' ? raw.maxEjectionPercent : 50,
    failOn5xx: raw.failOn5xx === true,
  };
}

export function parseCircuitBreaker(raw: Raw): CircuitBreakerSettings | null {
  if (raw === undefined) return null;
  return {
    maxRequests: typeof raw.maxRequests === 'number' ? raw.maxRequests : 1000,
    maxPending: typeof raw.maxPending === 'number' ? raw.maxPending : 100,
    maxConnections: typeof raw.maxConnections === 'number' ? raw.maxConnections : null,
  };
}

export function parseSticky(raw: Raw): StickySettings | null {
  if (raw === undefined) return null;
  return {
    cookie: typeof raw.cookie === 'string' ? raw.cookie : 'sy_srv',
    secret: typeof raw.secret === 'string' && raw.secret !== '' ? raw.secret : null,
    maxAgeSeconds:
      typeof raw.maxAge === 'string' ? Math.floor(parseDuration(raw.maxAge) / 1000) : null,
  };
}

export function parseHealthCheck(raw: Raw): HealthCheckSettings | null {
  if (raw === undefined) return null;
  const intervalMs = Math.max(1, ms(raw.interval, 5_000));
  const expect = typeof raw.expectStatus === 'string' ? raw.expectStatus : '200-399';
  const [lo, hi = lo] = expect.split('-').map(Number);
  return {
    path: typeof raw.path === 'string' ? raw.path : '/',
    method: typeof raw.method === 'string' ? raw.method : 'GET',
    host: typeof raw.host === 'string' ? raw.host : null,
    intervalMs,
    timeoutMs: Math.max(1, ms(raw.timeout, 2_000)),
    jitterMs: ms(raw.jitter, Math.round(intervalMs / 10)),
    rise: typeof raw.healthyThreshold === 'number' ? raw.healthyThreshold : 2,
    fall: typeof raw.unhealthyThreshold === 'number' ? raw.unhealthyThreshold : 3,
    statusMin: lo,
    statusMax: hi,
    body: typeof raw.body === 'string' ? new RegExp(raw.body) : null,
  };
}

export function parsePolicy(config: UpstreamConfig): UpstreamPolicy {
  const slowStart = config.features.slowStart;
  return {
    retries: parseRetries(section(config, 'retries')),
    passiveHealth: parsePassiveHealth(section(config, 'passiveHealth')),
    circuitBreaker: parseCircuitBreaker(section(config, 'circuitBreaker')),
    sticky: parseSticky(section(config, 'sticky')),
    healthCheck: parseHealthCheck(section(config, 'healthCheck')),
    slowStartMs: typeof slowStart === 'string' ? parseDuration(slowStart) : 0,
  };
}
