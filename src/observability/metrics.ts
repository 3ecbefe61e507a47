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
  /** Passes active health checks. */
  readonly healthy: boolean;
  /** Taken out of rotation by passive health checks, for now. */
  readonly ejected: boolean;
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
 * One histogram series counted in plain numbers: non-cumulative bucket counts (the last slot is
 * above every bound), sum and count. Observing is a short linear search and two additions.
 */
class HistogramSlot {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    // Prometheus buckets are "less than or equal": the first bound that holds the value.
    while (i < bounds.length && value > bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/**
 * A histogram whose series are HistogramSlots, registered in the prom-client Registry as a
 * metric of its own: `get()` returns exactly what prom-client's Histogram returns (the same
 * value objects, so the text exposition and the AggregatorRegistry used with several workers
 * treat it the same), while observing costs no label hashing. Series appear on first use.
 */
class SlotHistogram<L extends string> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, HistogramSlot>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelName: L,
    private readonly bounds: readonly number[],
  ) {}

  /** The series of one label value; keep it, observing through it skips the lookup. */
  slot(value: string): HistogramSlot {
    let slot = this.series.get(value);
    if (slot === undefined) {
      slot = new HistogramSlot({ [this.labelName]: value }, this.bounds);
      this.series.set(value, slot);
    }
    return slot;
  }

  reset(): void {
    this.series.clear();
  }

  /** prom-client's `getForPromString` shape: bucket labels apart from the series' labels. */
  getForPromString() {
    const bucketName = `${this.name}_bucket`;
    const values: Array<{
      labels: Record<string, string | number>;
      sharedLabels: Record<string, string>;
      value: number;
      metricName: string;
    }> = [];
    for (const slot of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += slot.counts[i];
        values.push({
          labels: { le: this.bounds[i] },
          sharedLabels: slot.labels,
          value: acc,
          metricName: bucketName,
        });
      }
      values.push(
        {
          labels: { le: '+Inf' },
          sharedLabels: slot.labels,
          value: slot.count,
          metricName: bucketName,
        },
        { labels: {}, sharedLabels: slot.labels, value: slot.sum, metricName: `${this.name}_sum` },
        {
          labels: {},
          sharedLabels: slot.labels,
          value: slot.count,
          metricName: `${this.name}_count`,
        },
      );
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values,
      aggregator: this.aggregator,
    };
  }

  /** prom-client's `get` shape (for getMetricsAsJSON): the labels merged. */
  get() {
    const data = this.getForPromString();
    return {
      ...data,
      values: data.values.map(({ labels, sharedLabels, value, metricName }) => ({
        labels: { ...labels, ...sharedLabels },
        value,
        metricName,
      })),
    };
  }
}

/** Requests of one route with one upstream and one status: counted in a plain number. */
interface RequestSlot {
  readonly upstream: string;
  readonly code: number;
  value: number;
}

/**
 * Everything the request path counts for one route, resolved once per route name: request
 * counts by upstream and status, the duration histogram, bytes. Read at scrape time only.
 */
class RouteSlot {
  /** upstream -> status -> count. */
  readonly requests = new Map<string, Map<number, RequestSlot>>();
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    readonly route: string,
    readonly duration: HistogramSlot,
  ) {}

  request(upstream: string, code: number): RequestSlot {
    let byCode = this.requests.get(upstream);
    if (byCode === undefined) {
      byCode = new Map();
      this.requests.set(upstream, byCode);
    }
    let slot = byCode.get(code);
    if (slot === undefined) {
      slot = { upstream, code, value: 0 };
      byCode.set(code, slot);
    }
    return slot;
  }
}

/** Per upstream: response-head latency and retries. */
class UpstreamSlot {
  retries = 0;
  constructor(
    readonly upstream: string,
    readonly duration: HistogramSlot,
  ) {}
}

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
  readonly requestDuration: SlotHistogram<'route'>;
  readonly upstreamDuration: SlotHistogram<'upstream'>;
  readonly requestBytes: PromClient.Counter<'route'>;
  readonly responseBytes: PromClient.Counter<'route'>;
  readonly retries: PromClient.Counter<'upstream'>;
  /**
   * The request path's counts (requests, durations, bytes, retries) live in these plain slots
   * and are copied into the metrics above when /metrics is scraped, so a request pays a map
   * lookup and a few additions instead of prom-client's per-call label validation and hashing.
   */
  private readonly routeSlots = new Map<string, RouteSlot>();
  private readonly upstreamSlots = new Map<string, UpstreamSlot>();
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
    const routeSlots = this.routeSlots;
    const upstreamSlots = this.upstreamSlots;
    // Each collect() runs just before its metric is read: it replaces the metric's values with
    // the slots' totals (the slots are the only source, so reset-then-inc is exact).
    this.requests = new client.Counter({
      name: 'switchyard_requests_total',
      help: 'Requests served, by route, upstream ("" when none) and status code (499: client went away first).',
      labelNames: ['route', 'upstream', 'code'],
      registers,
      collect() {
        this.reset();
        for (const r of routeSlots.values())
          for (const byCode of r.requests.values())
            for (const slot of byCode.values())
              this.inc({ route: r.route, upstream: slot.upstream, code: slot.code }, slot.value);
      },
    });
    this.requestDuration = new SlotHistogram(
      'switchyard_request_duration_seconds',
      'Time from request arrival to the end of the response, by route.',
      'route',
      DURATION_BUCKETS,
    );
    this.upstreamDuration = new SlotHistogram(
      'switchyard_upstream_response_duration_seconds',
      "Time from sending a request upstream to the upstream's response head, by upstream.",
      'upstream',
      DURATION_BUCKETS,
    );
    this.registry.registerMetric(this.requestDuration as unknown as PromClient.Metric);
    this.registry.registerMetric(this.upstreamDuration as unknown as PromClient.Metric);
    this.requestBytes = new client.Counter({
      name: 'switchyard_request_bytes_total',
      help: 'Bytes received from clients (HTTP/1.x: head and body), by route.',
      labelNames: ['route'],
      registers,
      collect() {
        this.reset();
        for (const r of routeSlots.values())
          if (r.bytesIn > 0) this.inc({ route: r.route }, r.bytesIn);
      },
    });
    this.responseBytes = new client.Counter({
      name: 'switchyard_response_bytes_total',
      help: 'Bytes sent to clients (HTTP/1.x: head and body), by route.',
      labelNames: ['route'],
      registers,
      collect() {
        this.reset();
        for (const r of routeSlots.values())
          if (r.bytesOut > 0) this.inc({ route: r.route }, r.bytesOut);
      },
    });
    this.retries = new client.Counter({
      name: 'switchyard_upstream_retries_total',
      help: 'Requests retried on another server, by upstream.',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const u of upstreamSlots.values())
          if (u.retries > 0) this.inc({ upstream: u.upstream }, u.retries);
      },
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
      help: 'Whether a server passes health checks, active and passive (1), or not (0).',
      labelNames: ['upstream', 'server'],
      registers,
      aggregator: 'min',
      collect() {
        this.reset();
        for (const s of sources.servers())
          this.set({ upstream: s.upstream, server: s.origin }, s.healthy && !s.ejected ? 1 : 0);
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
        // A listener moved to a new address by a reload has its old sockets draining under
        // the same name for a while: both count.
        const totals = new Map<string, number>();
        for (const [name, n] of counts) totals.set(name, (totals.get(name) ?? 0) + n);
        for (const [name, n] of totals) this.set({ listener: name }, n);
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

  /**
   * Counts one finished request in every request metric. `upstreamMs` is the upstream's
   * response-head latency, negative when no upstream answered. Plain arguments, no object, so
   * the request path allocates nothing here once a series exists.
   */
  recordRequest(
    routeName: string,
    upstreamName: string,
    status: number,
    durationMs: number,
    upstreamMs: number,
    bytesIn: number,
    bytesOut: number,
    retries: number,
  ): void {
    let route = this.routeSlots.get(routeName);
    if (route === undefined) {
      route = new RouteSlot(routeName, this.requestDuration.slot(routeName));
      this.routeSlots.set(routeName, route);
    }
    route.request(upstreamName, status).value++;
    route.duration.observe(durationMs / 1000);
    route.bytesIn += bytesIn;
    route.bytesOut += bytesOut;
    if (upstreamMs >= 0 || retries > 0) {
      let upstream = this.upstreamSlots.get(upstreamName);
      if (upstream === undefined) {
        upstream = new UpstreamSlot(upstreamName, this.upstreamDuration.slot(upstreamName));
        this.upstreamSlots.set(upstreamName, upstream);
      }
      if (upstreamMs >= 0) upstream.duration.observe(upstreamMs / 1000);
      upstream.retries += retries;
    }
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
