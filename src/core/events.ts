import diagnostics_channel from 'node:diagnostics_channel';
import type { RequestContext } from './context.js';

/**
 * Features and the core publish what happened on diagnostics channels; observability subscribes.
 * Publishers must guard with `channel.hasSubscribers` so an unobserved event costs nothing.
 */
export const channels = {
  /** A request finished (response ended or connection aborted). Message: RequestContext. */
  requestEnd: diagnostics_channel.channel('switchyard:request:end'),
  /** An unexpected error while serving a request. Message: { ctx, error }. */
  requestError: diagnostics_channel.channel('switchyard:request:error'),
  /** An upstream attempt finished. Message: { ctx, server, status, error, durationMs }. */
  upstreamAttempt: diagnostics_channel.channel('switchyard:upstream:attempt'),
  /**
   * A request arrived and has its context, before routing. Message: RequestContext. Tracing
   * subscribes here to start the request's span (ctx.trace); metrics count active requests.
   */
  requestStart: diagnostics_channel.channel('switchyard:request:start'),
  /**
   * The cache decided how a request is served. Message: CacheResultEvent. Observability counts
   * `switchyard_cache_requests_total{result}` and copies `result` into ctx.cacheStatus for the log.
   */
  cacheResult: diagnostics_channel.channel('switchyard:cache:result'),
  /** A request was refused by a rate limit (429). Message: { ctx: RequestContext }. */
  rateLimited: diagnostics_channel.channel('switchyard:ratelimit:limited'),
  /** A rate-limit decision was taken (allowed or not). Message: RateLimitDecisionEvent. */
  rateLimitDecision: diagnostics_channel.channel('switchyard:ratelimit:decision'),
  /** A server changed health (active checks or passive ejection). Message: HealthChangeEvent. */
  healthChange: diagnostics_channel.channel('switchyard:health:change'),
  /** An active health check finished. Message: HealthCheckEvent. */
  healthCheck: diagnostics_channel.channel('switchyard:health:check'),
  /** Passive health ejected a server. Message: { upstream, server, ejectForMs }. */
  serverEjected: diagnostics_channel.channel('switchyard:health:ejected'),
  /** A request is retried on another server. Message: { ctx, server, attempt }. */
  upstreamRetry: diagnostics_channel.channel('switchyard:upstream:retry'),
  /**
   * A request was answered 503 at once because the upstream's circuit breaker is open.
   * Message: { ctx, upstream, reason: 'maxRequests' | 'maxPending' }.
   */
  upstreamShed: diagnostics_channel.channel('switchyard:upstream:shed'),
  /**
   * Every server of an upstream is ejected or unhealthy-passive, so ejections are ignored for
   * this pick (panic mode, as in Envoy). Message: { ctx, upstream }.
   */
  upstreamPanic: diagnostics_channel.channel('switchyard:upstream:panic'),
  /**
   * The WAF scored a request at or above its threshold (mode detect or block). Message:
   * WafMatchEvent. Published whether or not the request was blocked.
   */
  wafMatch: diagnostics_channel.channel('switchyard:waf:match'),
  /**
   * A rate-limit store could not decide (e.g. Redis unreachable or too slow) and the route
   * failed open or closed. Message: RateLimitStoreErrorEvent.
   */
  rateLimitStoreError: diagnostics_channel.channel('switchyard:ratelimit:store-error'),
  /** A request was blocked or flagged by ipFilter, WAF or auth. Message: DeniedEvent. */
  requestDenied: diagnostics_channel.channel('switchyard:request:denied'),
  /**
   * The admin API asks for a cache purge. Message: CachePurgeEvent. The cache feature subscribes
   * (once per store) and sets `message.result` to a promise of how many entries it removed;
   * with no subscriber the admin API answers 501.
   */
  cachePurge: diagnostics_channel.channel('switchyard:cache:purge'),
  /**
   * A Redis-backed store's connection came up or went down, or a call to Redis failed.
   * Message: RedisStateEvent. Metrics keep `switchyard_redis_up{store}` and count
   * `switchyard_redis_errors_total{store}`.
   */
  redisState: diagnostics_channel.channel('switchyard:redis:state'),
};

export type CacheResult = 'hit' | 'miss' | 'stale' | 'expired' | 'bypass' | 'revalidated';

export interface CacheResultEvent {
  ctx: RequestContext;
  result: CacheResult;
}

export interface RateLimitDecisionEvent {
  ctx: RequestContext;
  allowed: boolean;
}

export interface WafMatchEvent {
  ctx: import('./context.js').RequestContext;
  /** Ids of the rules that matched, in evaluation order. */
  ruleIds: number[];
  /** The total anomaly score. */
  score: number;
  blocked: boolean;
}

export interface RateLimitStoreErrorEvent {
  ctx: import('./context.js').RequestContext;
  /** 'redis' (the memory store never fails). */
  store: string;
  /** True when the request was let through (failOpen). */
  failedOpen: boolean;
  /** What the route did instead: decided with the per-instance store, let it through, or 429. */
  fallback?: 'local' | 'open' | 'closed';
  error: string;
}

export interface RedisStateEvent {
  /** Which store: 'cache' or 'ratelimit'. */
  store: string;
  /** Whether the store's connection is usable now. */
  up: boolean;
  /** Set when this event reports a failure (a connection error or a failed command). */
  error?: string;
}

export interface HealthChangeEvent {
  upstream: string;
  /** The server's origin, e.g. http://10.0.0.5:8080. */
  server: string;
  healthy: boolean;
  /** What changed it: 'active', 'passive' or 'admin'. */
  source: string;
}

export interface HealthCheckEvent {
  upstream: string;
  server: string;
  ok: boolean;
  durationMs: number;
}

export interface DeniedEvent {
  ctx: RequestContext;
  /** 'ipFilter', 'waf', 'basicAuth', 'forwardAuth', ... */
  by: string;
}

export type CachePurgeRequest =
  { url: string } | { prefix: string } | { tag: string } | { all: true };

export interface CachePurgeEvent {
  purge: CachePurgeRequest;
  /** Set by the subscriber: resolves to the number of entries removed. */
  result?: Promise<number>;
}
