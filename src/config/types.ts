/**
 * The normalized configuration: what the rest of Switchyard consumes after loading and
 * validation. Durations are milliseconds, sizes are bytes, names are resolved. The raw, as-written
 * shape lives in schema.ts (the single source of the JSON Schema and the raw TypeScript types);
 * normalize.ts turns one into the other.
 */

export interface HostPort {
  /** '' means all interfaces (the config said `:port`). IPv6 without brackets. */
  host: string;
  port: number;
}

export interface ListenerLimits {
  maxConnections: number;
  maxConnectionsPerIp: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  maxHeaderSize: number;
  maxBodySize: number;
  /** Bytes per second; absent means the listener's built-in default. 0 turns the check off. */
  minBodyRate?: number;
}

export interface ListenerConfig {
  name: string;
  address: HostPort;
  /** The address as written, for messages. */
  addressText: string;
  /** TLS settings are consumed by the TLS feature; the core treats a listener with tls as https. */
  tls?: Record<string, unknown>;
  http2: boolean;
  proxyProtocol: boolean;
  limits: ListenerLimits;
}

export interface ServerConfig {
  /** As written, e.g. http://127.0.0.1:3001 */
  url: string;
  /** scheme://host:port, without a path: the key for pools and host state. */
  origin: string;
  weight: number;
  backup: boolean;
}

export interface UpstreamConfig {
  name: string;
  balancer: string;
  hashKey?: string;
  servers: ServerConfig[];
  /** A template for the Host header sent upstream; undefined passes the client's Host through. */
  hostHeader?: string;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  sendTimeoutMs: number;
  keepAlive: { maxIdle: number; idleTimeoutMs: number };
  protocol: 'http1' | 'h2' | 'h2c';
  /** Keys owned by later features (healthCheck, passiveHealth, retries, circuitBreaker, sticky,
   * slowStart, tls), validated by the schema and passed through as written. */
  features: Record<string, unknown>;
}

export interface RouteMatch {
  /** Lowercased; exact names or `*.suffix` wildcards. */
  host?: string[];
  path?: string;
  pathPrefix?: string;
  pathRegex?: string;
  /** Uppercased. */
  methods?: string[];
  /** Lowercased header names to exact values. */
  headers?: Record<string, string>;
  query?: Record<string, string>;
  listener?: string;
}

export interface HeaderOps {
  set: Record<string, string>;
  add: Record<string, string>;
  remove: string[];
}

export type RouteAction =
  | { type: 'upstream'; upstream: string }
  | { type: 'redirect'; location: string; status: 301 | 302 | 303 | 307 | 308 }
  | { type: 'respond'; status: number; body: string; headers: Record<string, string> };

export interface RouteConfig {
  /** As configured, or `routes[i]` when unnamed. */
  name: string;
  index: number;
  match: RouteMatch;
  action: RouteAction;
  rewrite?: { stripPrefix?: string; addPrefix?: string };
  requestHeaders?: HeaderOps;
  responseHeaders?: HeaderOps;
  timeouts?: { readMs?: number; connectMs?: number; sendMs?: number };
  /** Per-route keys owned by features (cache, compression, rateLimit, ipFilter, forwardAuth,
   * basicAuth, waf), validated by the schema and passed through as written. Absent keys are
   * absent here, so a route without features pays nothing for them. */
  features: Record<string, unknown>;
}

export interface AdminConfig {
  address: HostPort;
  addressText: string;
  token?: string;
}

export interface AccessLogConfig {
  format: 'json' | 'combined';
  output: string;
  /** 0..1; responses with status 500 or more are always logged. */
  sampleRatio: number;
}

export interface Config {
  listeners: ListenerConfig[];
  upstreams: Map<string, UpstreamConfig>;
  routes: RouteConfig[];
  /** CIDR strings; empty means no peer is trusted (the default). */
  trustedProxies: string[];
  admin?: AdminConfig;
  accessLog?: AccessLogConfig;
  workers: number | 'auto';
  shutdownTimeoutMs: number;
  /** Status code to file path. */
  errorPages: Record<string, string>;
  /** Global keys owned by features (cache, rateLimitStore, redis, waf, acme, tracing),
   * validated by the schema and passed through as written. */
  features: Record<string, unknown>;
  /** Where the config came from, for messages; undefined when built in memory. */
  sourcePath?: string;
}

/** One problem found while loading a config. `line`/`column` are 1-based; 0 when unknown. */
export interface ConfigIssue {
  path: string;
  message: string;
  line: number;
  column: number;
}
