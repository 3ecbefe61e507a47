import type { Server } from 'node:net';
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

// prom-client is loaded when the first Metrics is built, i.e. only with an admin listener.
const requireLazily = createRequire(import.meta.url);
let promClient: typeof PromClient | null = null;
function loadPromClient(): typeof PromClient {
  return (promClient ??= requireLazily('prom-client') as typeof PromClient);
}

/** What metrics read from a server's long-lived state at scrape time (a structural Host). */
export interface ServerView {
  readonly upstream: string;
  readonly origin: string;
  readonly healthy: boolean;
  readonly draining: boolean;
  readonly activeRequests: number;
  readonly totalRequests: number;
  readonly weight: number;
  readonly state: string;
}

export interface ListenerView {
  readonly name: string;
  readonly server: Server;
}

/** Where scrape-time values come from; read only when /metrics is scraped. */
export interface MetricsSources {
  servers(): Iterable<ServerView>;
  listeners(): Iterable<ListenerView>;
  activeRequests(): number;
}

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Every Prometheus metric Switchyard exposes, in its own registry (never prom-client's global
 * one, so several proxies in one process do not mix). Labels are only names from the config
 * (routes, upstreams, servers, listeners) and small closed sets (status codes, results): never a
 * raw path or header, so cardinality is bounded by the config.
 *
 * Counters are fed by the observability subscriber; gauges that mirror state (server health,
 * connections) are read at scrape time, so the request path pays nothing for them. Gauges name
 * their multi-worker aggregation (`aggregator`) so a primary can merge workers' registries with
 * prom-client's AggregatorRegistry.
 */
export class Metrics {
  readonly registry: PromClient.Registry;
  readonly requests: PromClient.Counter<'route' | 'upstream' | 'code'>;
  readonly requestDuration: PromClient.Histogram<'route'>;
  readonly upstreamDuration: PromClient.Histogram<'upstream'>;
  readonly requestBytes: PromClient.Counter<'route'>;
  readonly responseBytes: PromClient.Counter<'route'>;
  readonly retries: PromClient.Counter<'upstream'>;
  readonly upstreamErrors: PromClient.Counter<'upstream' | 'server'>;
  readonly ejections: PromClient.Counter<'upstream' | 'server'>;
  readonly healthChecks: PromClient.Counter<'upstream' | 'server' | 'result'>;
  readonly healthTransitions: PromClient.Counter<'upstream' | 'server' | 'healthy'>;
  readonly cacheRequests: PromClient.Counter<'result'>;
  readonly rateLimited: PromClient.Counter<'route'>;
  readonly rateLimitDecisions: PromClient.Counter<'route' | 'result'>;
  readonly denied: PromClient.Counter<'route' | 'by'>;
  readonly connections: PromClient.Counter<'listener'>;
  readonly tlsHandshakes: PromClient.Counter<'listener' | 'version' | 'result'>;
  readonly reloads: PromClient.Counter<'result'>;
  readonly requestErrors: PromClient.Counter<'route'>;
  readonly spansDropped: PromClient.Counter;
  readonly redisUp: PromClient.Gauge<'store'>;
  readonly redisErrors: PromClient.Counter<'store'>;

  constructor(sources: MetricsSources, version: string) {
    const client = loadPromClient();
    this.registry = new client.Registry();
    const registers = [this.registry];
    this.requests = new client.Counter({
      name: 'switchyard_requests_total',
      help: 'Requests served, by route, upstream ("" when none) and status code (499: client went away first).',
      labelNames: ['route', 'upstream', 'code'],
      registers,
    });
    this.requestDuration = new client.Histogram({
      name: 'switchyard_request_duration_seconds',
      help: 'Time from request arrival to the end of the response, by route.',
      labelNames: ['route'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.upstreamDuration = new client.Histogram({
      name: 'switchyard_upstream_response_duration_seconds',
      help: "Time from sending a request upstream to the upstream's response head, by upstream.",
      labelNames: ['upstream'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.requestBytes = new client.Counter({
      name: 'switchyard_request_bytes_total',
      help: 'Bytes received from clients (HTTP/1.x: head and body), by route.',
      labelNames: ['route'],
      registers,
    });
    this.responseBytes = new client.Counter({
      name: 'switchyard_response_bytes_total',
      help: 'Bytes sent to clients (HTTP/1.x: head and body), by route.',
      labelNames: ['route'],
      registers,
    });
    this.retries = new client.Counter({
      name: 'switchyard_upstream_retries_total',
      help: 'Requests retried on another server, by upstream.',
      labelNames: ['upstream'],
      registers,
    });
    this.upstreamErrors = new client.Counter({
      name: 'switchyard_upstream_errors_total',
      help: 'Upstream attempts that failed (refused, reset, timed out, bad response).',
      labelNames: ['upstream', 'server'],
      registers,
    });
    this.ejections = new client.Counter({
      name: 'switchyard_upstream_ejections_total',
      help: 'Servers ejected by passive health checks.',
      labelNames: ['upstream', 'server'],
      registers,
    });
    this.healthChecks = new client.Counter({
      name: 'switchyard_health_checks_total',
      help: 'Active health check results.',
      labelNames: ['upstream', 'server', 'result'],
      registers,
    });
    this.healthTransitions = new client.Counter({
      name: 'switchyard_upstream_health_changes_total',
      help: 'Times a server became healthy ("true") or unhealthy ("false").',
      labelNames: ['upstream', 'server', 'healthy'],
      registers,
    });
    this.cacheRequests = new client.Counter({
      name: 'switchyard_cache_requests_total',
      help: 'Cache lookups by result (hit, miss, stale, expired, bypass, revalidated).',
      labelNames: ['result'],
      registers,
    });
    this.rateLimited = new client.Counter({
      name: 'switchyard_ratelimited_total',
      help: 'Requests refused with 429 by a rate limit, by route.',
      labelNames: ['route'],
      registers,
    });
    this.rateLimitDecisions = new client.Counter({
      name: 'switchyard_ratelimit_decisions_total',
      help: 'Rate-limit decisions, by route and result (allowed, limited).',
      labelNames: ['route', 'result'],
      registers,
    });
    this.denied = new client.Counter({
      name: 'switchyard_denied_total',
      help: 'Requests denied or flagged by access control, by route and feature.',
      labelNames: ['route', 'by'],
      registers,
    });
    this.connections = new client.Counter({
      name: 'switchyard_connections_total',
      help: 'Client connections accepted, by listener.',
      labelNames: ['listener'],
      registers,
    });
    this.tlsHandshakes = new client.Counter({
      name: 'switchyard_tls_handshakes_total',
      help: 'TLS handshakes, by listener, protocol version and result (ok, error).',
      labelNames: ['listener', 'version', 'result'],
      registers,
    });
    this.reloads = new client.Counter({
      name: 'switchyard_config_reloads_total',
      help: 'Config reloads, by result (ok, refused).',
      labelNames: ['result'],
      registers,
    });
    this.requestErrors = new client.Counter({
      name: 'switchyard_request_internal_errors_total',
      help: 'Unexpected errors while serving a request (answered 500), by route.',
      labelNames: ['route'],
      registers,
    });
    this.spansDropped = new client.Counter({
      name: 'switchyard_tracing_spans_dropped_total',
      help: 'Spans dropped because the export queue was full.',
      registers,
    });
    // Set from the stores' connection events; 'min' so one worker that lost Redis shows as 0.
    this.redisUp = new client.Gauge({
      name: 'switchyard_redis_up',
      help: "Whether a Redis-backed store's connection is usable (1) or not (0), by store (cache, ratelimit).",
      labelNames: ['store'],
      registers,
      aggregator: 'min',
    });
    this.redisErrors = new client.Counter({
      name: 'switchyard_redis_errors_total',
      help: 'Redis connection errors and failed calls (cache reads/writes, rate-limit decisions), by store.',
      labelNames: ['store'],
      registers,
    });
    new client.Gauge({
      name: 'switchyard_active_requests',
      help: 'Requests in flight.',
      registers,
      aggregator: 'sum',
      collect() {
        this.set(sources.activeRequests());
      },
    });
    new client.Gauge({
      name: 'switchyard_upstream_server_healthy',
      help: 'Whether a server passes health checks (1) or not (0).',
      labelNames: ['upstream', 'server'],
      registers,
      aggregator: 'min',
      collect() {
        this.reset();
        for (const s of sources.servers())
          this.set({ upstream: s.upstream, server: s.origin }, s.healthy ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'switchyard_upstream_server_draining',
      help: 'Whether a server is drained by the admin API (1) or not (0).',
      labelNames: ['upstream', 'server'],
      registers,
      aggregator: 'max',
      collect() {
        this.reset();
        for (const s of sources.servers())
          this.set({ upstream: s.upstream, server: s.origin }, s.draining ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'switchyard_upstream_server_active_requests',
      help: 'Requests in flight to a server.',
      labelNames: ['upstream', 'server'],
      registers,
      aggregator: 'sum',
      collect() {
        this.reset();
        for (const s of sources.servers())
          this.set({ upstream: s.upstream, server: s.origin }, s.activeRequests);
      },
    });
    new client.Gauge({
      name: 'switchyard_upstream_server_weight',
      help: 'Configured balancing weight of a server.',
      labelNames: ['upstream', 'server'],
      registers,
      aggregator: 'max',
      collect() {
        this.reset();
        for (const s of sources.servers())
          this.set({ upstream: s.upstream, server: s.origin }, s.weight);
      },
    });
    new client.Gauge({
      name: 'switchyard_active_connections',
      help: 'Open client connections, by listener.',
      labelNames: ['listener'],
      registers,
      aggregator: 'sum',
      async collect() {
        this.reset();
        const counts = await Promise.all(
          [...sources.listeners()].map(
            (l) =>
              new Promise<[string, number]>((resolve) =>
                l.server.getConnections((err, n) => resolve([l.name, err ? 0 : n])),
              ),
          ),
        );
        for (const [name, n] of counts) this.set({ listener: name }, n);
      },
    });
    new client.Gauge({
      name: 'switchyard_info',
      help: 'Always 1; the version label names the running build.',
      labelNames: ['version'],
      registers,
      aggregator: 'max',
    }).set({ version }, 1);
    client.collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
