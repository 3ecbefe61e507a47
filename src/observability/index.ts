import type { ServerResponse } from 'node:http';
import type { Server, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config/types.js';
import type { ListenerInfo, RequestContext } from '../core/context.js';
import {
  channels,
  type CacheResult,
  type CacheResultEvent,
  type DeniedEvent,
  type HealthChangeEvent,
  type HealthCheckEvent,
  type RateLimitDecisionEvent,
  type RateLimitStoreErrorEvent,
  type RedisStateEvent,
} from '../core/events.js';
import { AccessLog, type RequestMeasures } from './access-log.js';
import type { LogFn } from './logger.js';
import { Metrics, type ServerView } from './metrics.js';
import { LiveStats } from './stats.js';
import { Tracing, type TracingSettings } from './tracing.js';

export { Metrics } from './metrics.js';
export { LiveStats } from './stats.js';
export type { ServerView } from './metrics.js';

export interface ObservabilitySources {
  version: string;
  /** Every upstream server (long-lived host state), read at scrape/snapshot time. */
  servers(): Iterable<ServerView>;
  log: LogFn;
}

interface OwnListener {
  name: string;
  server: Server;
  info: ListenerInfo;
}

const CACHE_RESULTS: readonly CacheResult[] = ['hit', 'miss', 'stale'];

/** Status reported for a request whose client went away before a response head (nginx's 499). */
const CLIENT_CLOSED = 499;

const kCounted = Symbol('switchyard.counted');
/** A connection's byte counters at the end of its previous exchange. */
class Counted {
  read = 0;
  written = 0;
}
/**
 * `_bytesDispatched` is node's count of the bytes the socket's handle has taken, what its
 * `bytesWritten` getter starts from before walking the write queue (a copy of it per call):
 * once a response has finished, that queue holds none of its bytes. The counters sit in one
 * object per socket, so the socket (of many shapes) is looked up once, not four times.
 */
type CountedSocket = Socket & { [kCounted]?: Counted; _bytesDispatched?: number };

/**
 * The observability of one running proxy: access log, tracing, metrics and the dashboard's live
 * stats, all fed by the diagnostics channels in core/events. It subscribes only to what the
 * config turns on, so with no admin listener, no access log and tracing off, requests publish
 * nothing at all (`hasSubscribers` is false).
 *
 * Channels are process-wide; a request is counted only when it arrived on one of this proxy's
 * listeners, so several proxies in one process (tests, embedding) keep their numbers apart.
 */
export class Observability {
  metrics: Metrics | null = null;
  stats: LiveStats | null = null;
  accessLog: AccessLog | null = null;
  tracing: Tracing | null = null;
  private readonly sources: ObservabilitySources;
  /** This proxy's listeners, by server: what the connection gauges read. */
  private readonly listeners = new Map<Server, OwnListener>();
  /**
   * Whether a request is this proxy's, by its ListenerInfo. A reload gives a listener it keeps a
   * new info object (its new limits), while requests that started before it still carry the
   * old one; every one counts, and the old ones are dropped once no request holds them.
   */
  private readonly ownInfos = new WeakSet<ListenerInfo>();
  private activeRequests = 0;
  private subscribedStart = false;
  private subscribedEnd = false;
  private subscribedFeatures = false;
  private subscribedCache = false;
  private routeNames: string[] = [];

  constructor(config: Config, sources: ObservabilitySources) {
    this.sources = sources;
    if (config.admin) this.startMetrics();
    this.applyConfig(config);
  }

  /** Metrics and dashboard stats exist once an admin listener does; they outlive reloads. */
  private startMetrics(): void {
    const sources = this.sources;
    this.metrics = new Metrics(
      {
        servers: () => sources.servers(),
        listeners: () => [...this.listeners.values()],
        activeRequests: () => this.activeRequests,
      },
      sources.version,
    );
    this.stats = new LiveStats();
  }

  /**
   * The first step of a reload, taken before anything switches: when the new config writes its
   * access log to another file (or in another format), that file is opened now, once, and
   * becomes the new log, so one that cannot be opened refuses the reload with nothing changed.
   * `commit` applies the config (closing what it replaces); `abandon` releases what was opened
   * when the reload fails later.
   */
  prepareReload(config: Config): { commit(): Promise<void>; abandon(): Promise<void> } {
    const current = this.accessLog;
    const opened =
      config.accessLog && !(current !== null && current.sameTarget(config.accessLog))
        ? new AccessLog(config.accessLog, config.routes, this.sources.log)
        : null;
    return {
      commit: () => this.reconfigure(config, opened),
      abandon: async () => opened?.close(),
    };
  }

  /**
   * Takes a new config's settings (reload), with the access log `prepareReload` opened for it if
   * any. Metrics and stats carry over.
   */
  async reconfigure(config: Config, openedLog: AccessLog | null = null): Promise<void> {
    const closing: Array<Promise<void>> = [];
    if (this.accessLog && (!config.accessLog || !this.accessLog.sameTarget(config.accessLog))) {
      closing.push(this.accessLog.close());
      this.accessLog = null;
    }
    if (openedLog !== null) this.accessLog = openedLog;
    if (this.tracing) {
      closing.push(this.tracing.close());
      this.tracing = null;
    }
    if (config.admin && this.metrics === null) this.startMetrics();
    this.applyConfig(config);
    await Promise.all(closing);
  }

  private applyConfig(config: Config): void {
    this.routeNames = config.routes.map((r) => r.name);
    const metrics = this.metrics;
    if (metrics !== null) {
      // Series that exist from the start read as 0 instead of "no data" in dashboards/alerts.
      for (const name of this.routeNames) metrics.rateLimited.labels(name).inc(0);
      for (const result of CACHE_RESULTS) metrics.cacheRequests.labels(result).inc(0);
    }
    if (config.accessLog) {
      if (this.accessLog === null)
        this.accessLog = new AccessLog(config.accessLog, config.routes, this.sources.log);
      else this.accessLog.setRoutes(config.routes, config.accessLog.sampleRatio);
    }
    const tracing = (config.features.tracing ?? {}) as TracingSettings;
    if (tracing.enabled !== false && this.tracing === null)
      this.tracing = new Tracing(tracing, this.sources.version, this.sources.log);
    this.subscribe();
  }

  /** Route names of the current config, in order (for the dashboard). */
  get routes(): readonly string[] {
    return this.routeNames;
  }

  /**
   * Counts a listener's requests and connections as this proxy's. Called again with a kept
   * listener's new info after a reload: its requests count from then on, its connections are
   * already counted.
   */
  addListener(name: string, info: ListenerInfo, server: Server): void {
    this.ownInfos.add(info);
    const known = this.listeners.get(server);
    if (known !== undefined) {
      known.info = info;
      return;
    }
    this.listeners.set(server, { name, server, info });
    const metrics = this.metrics;
    if (metrics === null) return;
    const connections = metrics.connections.labels(name);
    server.on('connection', () => connections.inc());
    server.on('secureConnection', (socket: TLSSocket) =>
      metrics.tlsHandshakes.inc({
        listener: name,
        version: socket.getProtocol() ?? 'unknown',
        result: 'ok',
      }),
    );
    server.on('tlsClientError', () =>
      metrics.tlsHandshakes.inc({ listener: name, version: 'unknown', result: 'error' }),
    );
  }

  /** Forgets a listener that is gone (drained): its connections and requests are no longer ours. */
  removeListener(info: ListenerInfo): void {
    this.ownInfos.delete(info);
    for (const [server, own] of this.listeners)
      if (own.info === info) this.listeners.delete(server);
  }

  /** Counts a config reload (ok or refused) in the metrics. */
  recordReload(ok: boolean): void {
    this.metrics?.reloads.inc({ result: ok ? 'ok' : 'refused' });
  }

  get active(): number {
    return this.activeRequests;
  }

  reopenLogs(): void {
    this.accessLog?.reopen();
  }

  private subscribe(): void {
    const wantStart = this.tracing !== null || this.metrics !== null;
    const wantEnd =
      this.metrics !== null || this.accessLog !== null || this.tracing?.exporter != null;
    if (wantStart !== this.subscribedStart) {
      if (wantStart) channels.requestStart.subscribe(this.onRequestStart);
      else channels.requestStart.unsubscribe(this.onRequestStart);
      this.subscribedStart = wantStart;
    }
    if (wantEnd !== this.subscribedEnd) {
      if (wantEnd) channels.requestEnd.subscribe(this.onRequestEnd);
      else channels.requestEnd.unsubscribe(this.onRequestEnd);
      this.subscribedEnd = wantEnd;
    }
    // The access log wants the cache status too, which arrives on its channel.
    const wantCache = this.metrics !== null || this.accessLog !== null;
    if (wantCache !== this.subscribedCache) {
      channels.cacheResult[wantCache ? 'subscribe' : 'unsubscribe'](this.onCacheResult);
      this.subscribedCache = wantCache;
    }
    const wantFeatures = this.metrics !== null;
    if (wantFeatures !== this.subscribedFeatures) {
      const method = wantFeatures ? 'subscribe' : 'unsubscribe';
      channels.rateLimited[method](this.onRateLimited);
      channels.rateLimitDecision[method](this.onRateLimitDecision);
      channels.healthChange[method](this.onHealthChange);
      channels.healthCheck[method](this.onHealthCheck);
      channels.serverEjected[method](this.onEjected);
      channels.upstreamRetry[method](this.onRetry);
      channels.upstreamAttempt[method](this.onUpstreamAttempt);
      channels.requestDenied[method](this.onDenied);
      channels.requestError[method](this.onRequestError);
      channels.redisState[method](this.onRedisState);
      channels.rateLimitStoreError[method](this.onRateLimitStoreError);
      this.subscribedFeatures = wantFeatures;
    }
  }

  private readonly onRequestStart = (message: unknown) => {
    const ctx = message as RequestContext;
    if (!this.ownInfos.has(ctx.listener)) return;
    this.activeRequests++;
    this.tracing?.start(ctx);
  };

  private readonly onRequestEnd = (message: unknown) => {
    const ctx = message as RequestContext;
    if (!this.ownInfos.has(ctx.listener)) return;
    // A request that started before this subscriber existed was never counted as active.
    if (this.activeRequests > 0) this.activeRequests--;
    const m = measure(ctx);
    const route = ctx.routeName;
    const metrics = this.metrics;
    if (metrics !== null)
      metrics.recordRequest(
        route,
        ctx.upstreamName,
        m.status,
        m.durationMs,
        ctx.upstreamHeadersTime > 0
          ? Math.max(0, ctx.upstreamHeadersTime - ctx.upstreamStartTime)
          : -1,
        m.bytesIn,
        m.bytesOut,
        ctx.retries,
      );
    const stats = this.stats;
    if (stats !== null) {
      stats.record(route, m.durationMs, m.status);
      if (m.status >= 500) {
        stats.recordError({
          time: new Date().toISOString(),
          status: m.status,
          method: ctx.method,
          host: ctx.host,
          path: ctx.path,
          route,
          upstream: ctx.upstreamName,
          requestId: ctx.requestId,
        });
      }
    }
    const log = this.accessLog;
    if (log !== null && log.wants(ctx, m.status)) log.write(ctx, m);
    this.tracing?.end(ctx, m.status, m.durationMs);
  };

  private readonly onCacheResult = (message: unknown) => {
    const { ctx, result } = message as CacheResultEvent;
    if (ctx && !this.ownInfos.has(ctx.listener)) return;
    if (ctx) ctx.cacheStatus = result;
    this.metrics?.cacheRequests.inc({ result });
    this.stats?.recordCache(result);
  };

  private readonly onRateLimited = (message: unknown) => {
    const { ctx } = message as { ctx: RequestContext };
    if (!this.ownInfos.has(ctx.listener)) return;
    this.metrics?.rateLimited.inc({ route: ctx.routeName });
    this.stats?.recordRateLimited(ctx.routeName);
  };

  private readonly onRateLimitDecision = (message: unknown) => {
    const { ctx, allowed } = message as RateLimitDecisionEvent;
    if (!this.ownInfos.has(ctx.listener)) return;
    this.metrics?.rateLimitDecisions.inc({
      route: ctx.routeName,
      result: allowed ? 'allowed' : 'limited',
    });
  };

  private readonly onHealthChange = (message: unknown) => {
    const e = message as HealthChangeEvent;
    if (!this.ownsServer(e.upstream, e.server)) return;
    this.metrics?.healthTransitions.inc({
      upstream: e.upstream,
      server: e.server,
      healthy: String(e.healthy),
    });
  };

  private readonly onHealthCheck = (message: unknown) => {
    const e = message as HealthCheckEvent;
    if (!this.ownsServer(e.upstream, e.server)) return;
    this.metrics?.healthChecks.inc({
      upstream: e.upstream,
      server: e.server,
      result: e.ok ? 'ok' : 'fail',
    });
  };

  private readonly onEjected = (message: unknown) => {
    const e = message as { upstream: string; server: string };
    if (!this.ownsServer(e.upstream, e.server)) return;
    this.metrics?.ejections.inc({ upstream: e.upstream, server: e.server });
  };

  private readonly onRetry = (message: unknown) => {
    // Retries are counted from ctx.retries at request end, so a retry publisher that also
    // bumps ctx.retries is not counted twice. This subscription only keeps the channel live.
    void message;
  };

  private readonly onUpstreamAttempt = (message: unknown) => {
    const e = message as { ctx: RequestContext; server: string; error?: unknown };
    if (!e.error || !this.ownInfos.has(e.ctx.listener)) return;
    this.metrics?.upstreamErrors.inc({ upstream: e.ctx.upstreamName, server: e.server });
  };

  // Redis events carry no request: a store belongs to the process, like its connection.
  private readonly onRedisState = (message: unknown) => {
    const { store, up, error } = message as RedisStateEvent;
    const metrics = this.metrics;
    if (metrics === null) return;
    metrics.redisUp.set({ store }, up ? 1 : 0);
    if (error !== undefined) metrics.redisErrors.inc({ store });
  };

  /** A rate-limit decision that Redis could not take counts as a Redis error of that store. */
  private readonly onRateLimitStoreError = (message: unknown) => {
    const { ctx, store } = message as RateLimitStoreErrorEvent;
    if (store !== 'redis' || !this.ownInfos.has(ctx.listener)) return;
    this.metrics?.redisErrors.inc({ store: 'ratelimit' });
  };

  private readonly onDenied = (message: unknown) => {
    const { ctx, by } = message as DeniedEvent;
    if (!this.ownInfos.has(ctx.listener)) return;
    this.metrics?.denied.inc({ route: ctx.routeName, by });
  };

  private readonly onRequestError = (message: unknown) => {
    const { ctx } = message as { ctx: RequestContext };
    if (!this.ownInfos.has(ctx.listener)) return;
    this.metrics?.requestErrors.inc({ route: ctx.routeName });
  };

  /** Server-level events carry names, not contexts: count only servers this proxy has. */
  private ownsServer(upstream: string, server: string): boolean {
    for (const s of this.sources.servers()) {
      if (s.upstream === upstream && s.origin === server) return true;
    }
    return false;
  }

  async close(): Promise<void> {
    this.metrics = null;
    this.stats?.close();
    this.stats = null;
    const accessLog = this.accessLog;
    const tracing = this.tracing;
    this.accessLog = null;
    this.tracing = null;
    this.subscribe();
    await Promise.all([accessLog?.close(), tracing?.close()]);
  }
}

/**
 * Status, duration and bytes of a finished request, measured once for every consumer. Bytes
 * come from the socket's counters: on HTTP/1.x a connection carries one exchange at a time, so
 * the difference since the previous exchange on it is this one (head and body, as sent on the
 * wire). HTTP/2 streams share a socket; there the declared lengths stand in.
 */
function measure(ctx: RequestContext): RequestMeasures {
  const durationMs = performance.now() - ctx.startTime;
  const res = ctx.clientResponse as unknown as ServerResponse;
  const status = ctx.status !== 0 ? ctx.status : res.headersSent ? res.statusCode : CLIENT_CLOSED;
  const req = ctx.req;
  let bytesIn = 0;
  let bytesOut = 0;
  const socket = req.socket as CountedSocket | null;
  if (req.httpVersionMajor < 2 && socket) {
    const read = socket.bytesRead;
    const written = socket._bytesDispatched ?? socket.bytesWritten;
    let counted = socket[kCounted];
    if (counted === undefined) socket[kCounted] = counted = new Counted();
    bytesIn = read - counted.read;
    bytesOut = written - counted.written;
    counted.read = read;
    counted.written = written;
  } else {
    bytesIn = Number(req.headers['content-length'] ?? 0) || 0;
    bytesOut = Number(res.getHeader?.('content-length') ?? 0) || 0;
  }
  return { status, durationMs, bytesIn, bytesOut };
}
