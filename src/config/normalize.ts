/**
 * Raw (as written, schema-valid) config -> the normalized Config the rest of Switchyard reads:
 * durations in ms, sizes in bytes, defaults filled in, names resolved. Problems that only show
 * while converting (an address or URL that does not parse) are reported to the collector.
 */
import type { RawConfig, RawListener, RawRoute, RawUpstream } from './schema.js';
import { IssueCollector, type PathSegment } from './source.js';
import type {
  Config,
  HeaderOps,
  HostPort,
  ListenerConfig,
  RouteAction,
  RouteConfig,
  RouteMatch,
  UpstreamConfig,
} from './types.js';
import { normalizeCidr, parseAddress } from './net.js';
import { parseDuration, parseSize } from './units.js';

export const LISTENER_LIMIT_DEFAULTS = {
  maxConnections: 10000,
  maxConnectionsPerIp: 256,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  idleTimeoutMs: 5_000,
  maxHeaderSize: 16 * 1024,
  maxBodySize: 10 * 1024 * 1024,
} as const;

export const UPSTREAM_DEFAULTS = {
  balancer: 'round-robin',
  connectTimeoutMs: 5_000,
  readTimeoutMs: 60_000,
  sendTimeoutMs: 60_000,
  keepAlive: { maxIdle: 64, idleTimeoutMs: 30_000 },
  protocol: 'http1',
} as const;

export const SHUTDOWN_TIMEOUT_DEFAULT_MS = 30_000;

/** Keys passed through to features as written, by level. */
export const UPSTREAM_FEATURE_KEYS = [
  'healthCheck',
  'passiveHealth',
  'retries',
  'circuitBreaker',
  'sticky',
  'slowStart',
  'tls',
] as const;
export const ROUTE_FEATURE_KEYS = [
  'cache',
  'compression',
  'rateLimit',
  'ipFilter',
  'forwardAuth',
  'basicAuth',
  'waf',
  'accessLog',
] as const;
export const GLOBAL_FEATURE_KEYS = [
  'cache',
  'rateLimitStore',
  'redis',
  'waf',
  'acme',
  'tracing',
  'watch',
] as const;

export const REDIRECT_STATUSES = [301, 302, 303, 307, 308] as const;

const NO_ADDRESS: HostPort = { host: '', port: 0 };

/** Normalizes a schema-valid raw config. Issues go to `issues`; check its count afterwards. */
export function normalizeConfig(raw: RawConfig, issues = new IssueCollector()): Config {
  const duration = (path: PathSegment[], text: string | undefined, def: number): number => {
    if (text === undefined) return def;
    try {
      return parseDuration(text);
    } catch (e) {
      issues.add(path, (e as Error).message);
      return def;
    }
  };
  const size = (path: PathSegment[], v: string | number | undefined, def: number): number => {
    if (v === undefined) return def;
    try {
      return parseSize(v);
    } catch (e) {
      issues.add(path, (e as Error).message);
      return def;
    }
  };
  const address = (path: PathSegment[], text: string): HostPort => {
    const parsed = parseAddress(text);
    if (typeof parsed === 'string') {
      issues.add(path, parsed);
      return NO_ADDRESS;
    }
    return parsed;
  };

  const listeners = raw.listeners.map((l: RawListener, i): ListenerConfig => {
    const at = (...rest: PathSegment[]) => ['listeners', i, 'limits', ...rest];
    const lim = l.limits ?? {};
    const D = LISTENER_LIMIT_DEFAULTS;
    return {
      name: l.name ?? `listeners[${i}]`,
      address: address(['listeners', i, 'address'], l.address),
      addressText: l.address,
      ...(l.tls === undefined ? {} : { tls: clone(l.tls) as Record<string, unknown> }),
      http2: l.http2 ?? l.tls !== undefined,
      proxyProtocol: l.proxyProtocol ?? false,
      limits: {
        maxConnections: lim.maxConnections ?? D.maxConnections,
        maxConnectionsPerIp: lim.maxConnectionsPerIp ?? D.maxConnectionsPerIp,
        headersTimeoutMs: duration(at('headersTimeout'), lim.headersTimeout, D.headersTimeoutMs),
        requestTimeoutMs: duration(at('requestTimeout'), lim.requestTimeout, D.requestTimeoutMs),
        idleTimeoutMs: duration(at('idleTimeout'), lim.idleTimeout, D.idleTimeoutMs),
        maxHeaderSize: size(at('maxHeaderSize'), lim.maxHeaderSize, D.maxHeaderSize),
        maxBodySize: size(at('maxBodySize'), lim.maxBodySize, D.maxBodySize),
        ...(lim.minBodyRate === undefined
          ? {}
          : { minBodyRate: size(at('minBodyRate'), lim.minBodyRate, 0) }),
      },
    };
  });

  const upstreams = new Map<string, UpstreamConfig>();
  for (const [name, u] of Object.entries(raw.upstreams ?? {}) as [string, RawUpstream][]) {
    const at = (...rest: PathSegment[]) => ['upstreams', name, ...rest];
    const D = UPSTREAM_DEFAULTS;
    const balancer = u.balancer ?? D.balancer;
    const hashKey = u.hashKey ?? (balancer === 'consistent-hash' ? '{client_ip}' : undefined);
    upstreams.set(name, {
      name,
      balancer,
      ...(hashKey === undefined ? {} : { hashKey }),
      servers: u.servers.map((s, i) => ({
        url: s.url,
        origin: serverOrigin(s.url, at('servers', i, 'url'), issues),
        weight: s.weight ?? 1,
        backup: s.backup ?? false,
      })),
      ...(u.hostHeader === undefined ? {} : { hostHeader: u.hostHeader }),
      connectTimeoutMs: duration(at('connectTimeout'), u.connectTimeout, D.connectTimeoutMs),
      readTimeoutMs: duration(at('readTimeout'), u.readTimeout, D.readTimeoutMs),
      sendTimeoutMs: duration(at('sendTimeout'), u.sendTimeout, D.sendTimeoutMs),
      keepAlive: {
        maxIdle: u.keepAlive?.maxIdle ?? D.keepAlive.maxIdle,
        idleTimeoutMs: duration(
          at('keepAlive', 'idleTimeout'),
          u.keepAlive?.idleTimeout,
          D.keepAlive.idleTimeoutMs,
        ),
      },
      protocol: u.protocol ?? D.protocol,
      features: pick(u, UPSTREAM_FEATURE_KEYS),
    });
  }

  const routes = (raw.routes ?? []).map((r: RawRoute, i): RouteConfig => {
    const at = (...rest: PathSegment[]) => ['routes', i, ...rest];
    const timeouts: RouteConfig['timeouts'] = {};
    if (r.timeouts?.read !== undefined)
      timeouts.readMs = duration(at('timeouts', 'read'), r.timeouts.read, 0);
    if (r.timeouts?.connect !== undefined) {
      timeouts.connectMs = duration(at('timeouts', 'connect'), r.timeouts.connect, 0);
    }
    if (r.timeouts?.send !== undefined)
      timeouts.sendMs = duration(at('timeouts', 'send'), r.timeouts.send, 0);
    return {
      name: r.name ?? `routes[${i}]`,
      index: i,
      match: normalizeMatch(r.match ?? {}),
      action: routeAction(r),
      ...(r.rewrite === undefined ? {} : { rewrite: { ...r.rewrite } }),
      ...(r.requestHeaders === undefined ? {} : { requestHeaders: headerOps(r.requestHeaders) }),
      ...(r.responseHeaders === undefined ? {} : { responseHeaders: headerOps(r.responseHeaders) }),
      ...(r.timeouts === undefined ? {} : { timeouts }),
      features: pick(r, ROUTE_FEATURE_KEYS),
    };
  });

  const trustedProxies = (raw.trustedProxies ?? []).map((t, i) => {
    const cidr = normalizeCidr(t);
    if (cidr === undefined) {
      issues.add(
        ['trustedProxies', i],
        `invalid address or CIDR "${t}"; expected e.g. 10.0.0.0/8 or ::1`,
      );
    }
    return cidr ?? t;
  });

  const config: Config = {
    listeners,
    upstreams,
    routes,
    trustedProxies,
    workers: raw.workers ?? 1,
    shutdownTimeoutMs: duration(
      ['shutdownTimeout'],
      raw.shutdownTimeout,
      SHUTDOWN_TIMEOUT_DEFAULT_MS,
    ),
    errorPages: { ...(raw.errorPages ?? {}) },
    features: pick(raw, GLOBAL_FEATURE_KEYS),
  };
  if (raw.admin) {
    const token = raw.admin.token === '' ? undefined : raw.admin.token;
    config.admin = {
      address: address(['admin', 'address'], raw.admin.address),
      addressText: raw.admin.address,
      ...(token === undefined ? {} : { token }),
    };
  }
  if (raw.accessLog) {
    config.accessLog = {
      format: raw.accessLog.format ?? 'json',
      output: raw.accessLog.output ?? 'stdout',
      sampleRatio: raw.accessLog.sampleRatio ?? 1,
    };
  }
  return config;
}

/** `http://Host:3001` -> `http://host:3001`; default ports filled in. */
function serverOrigin(text: string, path: PathSegment[], issues: IssueCollector): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    issues.add(path, `invalid URL "${text}"; expected http://host:port or https://host:port`);
    return text;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    issues.add(
      path,
      `unsupported scheme "${url.protocol.slice(0, -1)}" in "${text}"; use http or https`,
    );
    return text;
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    issues.add(
      path,
      `a server URL has no path or query ("${text}"); use rewrite.addPrefix on the route`,
    );
    return text;
  }
  if (url.username !== '' || url.password !== '') {
    issues.add(
      path,
      `a server URL cannot carry credentials ("${text}"); use requestHeaders instead`,
    );
    return text;
  }
  const port = url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
  return `${url.protocol}//${url.hostname}:${port}`;
}

function normalizeMatch(m: NonNullable<RawRoute['match']>): RouteMatch {
  const out: RouteMatch = {};
  if (m.host !== undefined)
    out.host = (Array.isArray(m.host) ? m.host : [m.host]).map((h) => h.toLowerCase());
  if (m.path !== undefined) out.path = m.path;
  if (m.pathPrefix !== undefined) out.pathPrefix = m.pathPrefix;
  if (m.pathRegex !== undefined) out.pathRegex = m.pathRegex;
  if (m.methods !== undefined) out.methods = m.methods.map((x) => x.toUpperCase());
  // An empty mapping is no condition at all; leaving it out keeps "match everything" obvious.
  if (m.headers !== undefined && Object.keys(m.headers).length > 0) {
    out.headers = Object.fromEntries(
      Object.entries(m.headers).map(([k, v]) => [k.toLowerCase(), v]),
    );
  }
  if (m.query !== undefined && Object.keys(m.query).length > 0) out.query = { ...m.query };
  if (m.listener !== undefined) out.listener = m.listener;
  return out;
}

/** The route's target; validate.ts reports a route with none or several. */
function routeAction(r: RawRoute): RouteAction {
  if (r.upstream !== undefined) return { type: 'upstream', upstream: r.upstream };
  if (r.redirect !== undefined) {
    return {
      type: 'redirect',
      location: r.redirect.location,
      status: (r.redirect.status ?? 302) as (typeof REDIRECT_STATUSES)[number],
    };
  }
  return {
    type: 'respond',
    status: r.respond?.status ?? 200,
    body: r.respond?.body ?? '',
    headers: { ...(r.respond?.headers ?? {}) },
  };
}

function headerOps(h: {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}): HeaderOps {
  return { set: { ...(h.set ?? {}) }, add: { ...(h.add ?? {}) }, remove: [...(h.remove ?? [])] };
}

function pick(source: object, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = (source as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = clone(v);
  }
  return out;
}

/** Feature values are handed over as copies, so no feature can change another's view. */
function clone<T>(v: T): T {
  return structuredClone(v);
}
