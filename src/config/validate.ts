/**
 * Checks that span keys: names that refer to each other, one target per route, routes hidden by
 * earlier ones, placeholders, addresses. Runs on a schema-valid raw config and its normalized
 * form; raw tells what was written, normalized gives comparable values.
 */
import type { RawConfig, RawRoute } from './schema.js';
import type { IssueCollector, PathSegment } from './source.js';
import type { Config, HostPort, RouteMatch } from './types.js';
import { formatHostPort, isLoopbackHost, normalizeCidr } from './net.js';
import { parsePasswordHash } from './password-hash.js';
import { checkTemplate } from './templates.js';
import { parseDuration, parseSize } from './units.js';

const TARGETS = ['upstream', 'redirect', 'respond'] as const;
const PATH_KEYS = ['path', 'pathPrefix', 'pathRegex'] as const;

export function validateConfig(raw: RawConfig, config: Config, issues: IssueCollector): void {
  checkListeners(raw, config, issues);
  checkUpstreams(raw, config, issues);
  checkRoutes(raw, config, issues);
  checkGlobal(raw, config, issues);
}

function checkListeners(raw: RawConfig, config: Config, issues: IssueCollector): void {
  if (config.listeners.length === 0) {
    issues.add(['listeners'], 'at least one listener is required');
  }
  const names = new Map<string, number>();
  const bound: { address: HostPort; label: string }[] = [];
  config.listeners.forEach((l, i) => {
    const first = names.get(l.name);
    if (first !== undefined) {
      issues.add(
        ['listeners', i, 'name'],
        `duplicate listener name "${l.name}" (also listeners[${first}])`,
      );
    } else {
      names.set(l.name, i);
    }
    if (raw.listeners[i].address !== undefined) {
      checkAddressConflict(
        l.address,
        ['listeners', i, 'address'],
        labelOf('listeners', i, raw.listeners[i].name),
        bound,
        issues,
      );
    }
    checkListenerLimits(raw.listeners[i].limits, i, issues);
    const tls = raw.listeners[i].tls;
    if (tls && (tls.certificates ?? []).length === 0 && raw.acme === undefined) {
      issues.add(
        ['listeners', i, 'tls'],
        'a TLS listener needs at least one certificate under tls.certificates, or acme configured',
      );
    }
  });
  if (config.admin) {
    checkAddressConflict(config.admin.address, ['admin', 'address'], 'admin', bound, issues);
  }
}

/**
 * 0 does not turn these limits off cleanly (requestTimeout: 0 does, see docs/listeners.md):
 * headersTimeout 0 would leave request heads, PROXY headers and the HTTP/2 sniff unbounded,
 * TLS handshakes at Node's 120 s and slow bodies without their grace; idleTimeout 0 keeps idle
 * connections open forever; maxHeaderSize 0 is Node's 16 KiB on HTTP/1.1 and an advertised
 * limit of 0 on HTTP/2, which strict clients obey by sending nothing.
 */
function checkListenerLimits(
  limits: RawConfig['listeners'][number]['limits'],
  i: number,
  issues: IssueCollector,
): void {
  if (limits === undefined) return;
  const at = (key: string): PathSegment[] => ['listeners', i, 'limits', key];
  if (limits.headersTimeout !== undefined && durationOrNaN(limits.headersTimeout) === 0)
    issues.add(
      at('headersTimeout'),
      `must be longer than 0, got "${limits.headersTimeout}" (it bounds request heads, TLS handshakes and PROXY headers; it cannot be turned off)`,
    );
  if (limits.idleTimeout !== undefined && durationOrNaN(limits.idleTimeout) === 0)
    issues.add(
      at('idleTimeout'),
      `must be longer than 0, got "${limits.idleTimeout}" (0 would keep idle keep-alive connections open forever)`,
    );
  if (limits.maxHeaderSize !== undefined && sizeOrNaN(limits.maxHeaderSize) === 0)
    issues.add(
      at('maxHeaderSize'),
      `must be larger than 0, got ${JSON.stringify(limits.maxHeaderSize)} (it is not a way to turn the limit off)`,
    );
}

function labelOf(list: string, i: number, name: string | undefined): string {
  return name === undefined ? `${list}[${i}]` : `${list}[${i}] ("${name}")`;
}

/**
 * Two sockets cannot bind the same port when the hosts are equal or one is the wildcard. Port 0
 * asks the system for a free port, so it never conflicts.
 */
function checkAddressConflict(
  address: HostPort,
  path: PathSegment[],
  label: string,
  bound: { address: HostPort; label: string }[],
  issues: IssueCollector,
): void {
  if (address.port === 0) {
    bound.push({ address, label });
    return;
  }
  const clash = bound.find(
    (b) =>
      b.address.port === address.port &&
      (b.address.host === address.host || b.address.host === '' || address.host === ''),
  );
  if (clash) {
    issues.add(path, `address ${formatHostPort(address)} is already used by ${clash.label}`);
  }
  bound.push({ address, label });
}

function checkUpstreams(raw: RawConfig, config: Config, issues: IssueCollector): void {
  for (const [name, u] of config.upstreams) {
    const at = (...rest: PathSegment[]) => ['upstreams', name, ...rest];
    if (u.servers.length === 0) {
      issues.add(at('servers'), 'an upstream needs at least one server');
    } else if (u.servers.every((s) => s.backup)) {
      issues.add(
        at('servers'),
        'every server is a backup; at least one must be a primary (backup: false)',
      );
    }
    const seen = new Map<string, number>();
    u.servers.forEach((s, i) => {
      const first = seen.get(s.origin);
      if (first !== undefined) {
        issues.add(
          at('servers', i, 'url'),
          `duplicate server ${s.origin} (also servers[${first}])`,
        );
      } else {
        seen.set(s.origin, i);
      }
    });
    if (u.protocol === 'h2' && u.servers.some((s) => s.origin.startsWith('http:'))) {
      issues.add(at('protocol'), 'h2 needs https:// servers; use h2c for cleartext HTTP/2');
    }
    if (u.protocol === 'h2c' && u.servers.some((s) => s.origin.startsWith('https:'))) {
      issues.add(
        at('protocol'),
        'h2c is cleartext HTTP/2 and needs http:// servers; use h2 for https://',
      );
    }
    const rawUpstream = raw.upstreams?.[name];
    if (rawUpstream?.hashKey !== undefined)
      checkTemplateAt(at('hashKey'), rawUpstream.hashKey, issues);
    if (rawUpstream?.hostHeader !== undefined)
      checkTemplateAt(at('hostHeader'), rawUpstream.hostHeader, issues);
    // 0 would run checks back to back (a busy loop) or fail every check at once.
    for (const key of ['interval', 'timeout'] as const) {
      const text = rawUpstream?.healthCheck?.[key];
      if (text !== undefined && durationOrNaN(text) === 0)
        issues.add(at('healthCheck', key), `must be longer than 0, got "${text}"`);
    }
    const checkBody = rawUpstream?.healthCheck?.body;
    if (checkBody !== undefined) {
      try {
        new RegExp(checkBody);
      } catch (e) {
        issues.add(
          at('healthCheck', 'body'),
          `invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`,
        );
      }
    }
  }
}

function checkRoutes(raw: RawConfig, config: Config, issues: IssueCollector): void {
  const rawRoutes = raw.routes ?? [];
  const listenerNames = new Set(config.listeners.map((l) => l.name));
  const routeNames = new Map<string, number>();
  rawRoutes.forEach((r: RawRoute, i) => {
    const at = (...rest: PathSegment[]) => ['routes', i, ...rest];
    const route = config.routes[i];

    const targets = TARGETS.filter((t) => r[t] !== undefined);
    if (targets.length === 0) {
      issues.add(at(), 'a route needs one of upstream, redirect or respond');
    } else if (targets.length > 1) {
      issues.add(
        at(targets[1]),
        `a route has exactly one of upstream, redirect or respond; this one has ${listWords(targets)}`,
        'key',
      );
    }
    if (r.upstream !== undefined && !config.upstreams.has(r.upstream)) {
      issues.add(at('upstream'), `unknown upstream "${r.upstream}"`);
    }

    if (r.name !== undefined) {
      const first = routeNames.get(r.name);
      if (first !== undefined)
        issues.add(at('name'), `duplicate route name "${r.name}" (also routes[${first}])`);
      else routeNames.set(r.name, i);
    }

    const m = r.match ?? {};
    const pathKeys = PATH_KEYS.filter((k) => m[k] !== undefined);
    if (pathKeys.length > 1) {
      issues.add(
        at('match'),
        `use only one of path, pathPrefix or pathRegex (found ${listWords(pathKeys)})`,
      );
    }
    if (m.pathRegex !== undefined) {
      try {
        new RegExp(m.pathRegex);
      } catch (e) {
        issues.add(
          at('match', 'pathRegex'),
          `invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`,
        );
      }
    }
    if (m.listener !== undefined && !listenerNames.has(m.listener)) {
      issues.add(at('match', 'listener'), `unknown listener "${m.listener}"`);
    }

    for (const side of ['requestHeaders', 'responseHeaders'] as const) {
      for (const op of ['set', 'add'] as const) {
        for (const [name, value] of Object.entries(r[side]?.[op] ?? {})) {
          checkTemplateAt(at(side, op, name), value, issues);
        }
      }
    }
    if (r.redirect !== undefined)
      checkTemplateAt(at('redirect', 'location'), r.redirect.location, issues);
    for (const [name, value] of Object.entries(r.respond?.headers ?? {})) {
      checkTemplateAt(at('respond', 'headers', name), value, issues);
    }
    if (r.requestHeaders?.remove?.some((n) => n.toLowerCase() === 'host')) {
      issues.add(
        at('requestHeaders', 'remove'),
        "Host cannot be removed (HTTP/1.1 requires it); use the upstream's hostHeader to change it",
      );
    }
    if (r.forwardAuth !== undefined)
      checkHttpUrl(at('forwardAuth', 'url'), r.forwardAuth.url, issues);
    // A plain-text password (or a hash the verifiers reject) would fail only when `run` builds
    // the filter; `validate` must catch it too.
    for (const [user, hash] of Object.entries(r.basicAuth?.users ?? {})) {
      const parsed = parsePasswordHash(hash);
      if ('problem' in parsed) issues.add(at('basicAuth', 'users', user), parsed.problem);
    }
    if (r.rateLimit?.key !== undefined)
      checkTemplateAt(at('rateLimit', 'key'), r.rateLimit.key, issues);
    if (typeof r.cache === 'object' && r.cache.key !== undefined) {
      checkTemplateAt(at('cache', 'key'), r.cache.key, issues);
    }
    for (const list of ['allow', 'deny'] as const) {
      (r.ipFilter?.[list] ?? []).forEach((entry, j) => {
        if (normalizeCidr(entry) === undefined) {
          issues.add(
            at('ipFilter', list, j),
            `invalid address or CIDR "${entry}"; expected e.g. 10.0.0.0/8 or ::1`,
          );
        }
      });
    }

    if (targets.length > 0) {
      const shadow = config.routes
        .slice(0, i)
        .find((earlier) => covers(earlier.match, route.match));
      if (shadow) {
        const label = labelOf('routes', shadow.index, rawRoutes[shadow.index].name);
        const what = isEmptyMatch(shadow.match)
          ? 'every request'
          : 'every request this route could match';
        issues.add(at(), `can never match: ${label} matches ${what} first`);
      }
    }
  });
}

function checkGlobal(raw: RawConfig, config: Config, issues: IssueCollector): void {
  if (
    config.admin &&
    config.admin.token === undefined &&
    !isLoopbackHost(config.admin.address.host)
  ) {
    issues.add(
      ['admin', 'address'],
      'an admin listener without admin.token must bind to loopback (127.0.0.1 or ::1)',
    );
  }
  if (raw.tracing?.otlp !== undefined)
    checkHttpUrl(['tracing', 'otlp', 'endpoint'], raw.tracing.otlp.endpoint, issues);
  if (raw.acme?.directory !== undefined)
    checkHttpUrl(['acme', 'directory'], raw.acme.directory, issues);
  (raw.waf?.rules ?? []).forEach((rule, i) => {
    if ((rule.operator ?? 'regex') !== 'regex') return;
    // As the waf compiles it: a leading PCRE-style `(?i)`, `(?s)`, `(?m)` becomes flags.
    const inline = /^\(\?([ims]+)\)/.exec(rule.pattern);
    try {
      new RegExp(
        inline === null ? rule.pattern : rule.pattern.slice(inline[0].length),
        inline === null ? '' : [...new Set(inline[1])].join(''),
      );
    } catch (e) {
      issues.add(
        ['waf', 'rules', i, 'pattern'],
        `invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`,
      );
    }
  });
  if (raw.rateLimitStore === 'redis' && raw.redis === undefined) {
    issues.add(['rateLimitStore'], 'the redis store needs redis.url to be configured');
  }
  if (raw.cache?.store === 'redis' && raw.redis === undefined) {
    issues.add(['cache', 'store'], 'the redis store needs redis.url to be configured');
  }
  if (raw.cache?.store === 'disk' && raw.cache.path === undefined) {
    issues.add(['cache'], 'the disk store needs cache.path');
  }
}

function checkHttpUrl(path: PathSegment[], text: string, issues: IssueCollector): void {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:'))
    issues.add(path, `expected an http:// or https:// URL, got "${text}"`);
}

/** Milliseconds, or NaN for a malformed duration (normalization reports those). */
function durationOrNaN(text: string): number {
  try {
    return parseDuration(text);
  } catch {
    return NaN;
  }
}

/** Bytes, or NaN for a malformed size (normalization reports those). */
function sizeOrNaN(value: string | number): number {
  try {
    return parseSize(value);
  } catch {
    return NaN;
  }
}

/** ['a', 'b', 'c'] -> 'a, b and c'. */
function listWords(words: readonly string[]): string {
  return words.length <= 1
    ? words.join('')
    : `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

function checkTemplateAt(path: PathSegment[], text: string, issues: IssueCollector): void {
  const problem = checkTemplate(text);
  if (problem !== undefined) issues.add(path, problem);
}

function isEmptyMatch(m: RouteMatch): boolean {
  return Object.keys(m).length === 0;
}

/**
 * Whether every request matching `later` also matches `earlier`, so `later` is never reached.
 * Sound but not complete: it only answers yes when each condition of `earlier` is implied by a
 * condition of `later` in an obvious way (equal values, subsets, a longer path prefix).
 */
export function covers(earlier: RouteMatch, later: RouteMatch): boolean {
  if (earlier.listener !== undefined && earlier.listener !== later.listener) return false;
  if (earlier.host !== undefined) {
    if (later.host === undefined || !later.host.every((h) => earlier.host!.includes(h)))
      return false;
  }
  if (earlier.methods !== undefined) {
    if (later.methods === undefined || !later.methods.every((m) => earlier.methods!.includes(m)))
      return false;
  }
  if (!mapCovers(earlier.headers, later.headers) || !mapCovers(earlier.query, later.query))
    return false;
  if (earlier.path !== undefined)
    return (
      later.path === earlier.path && later.pathPrefix === undefined && later.pathRegex === undefined
    );
  if (earlier.pathPrefix !== undefined) {
    const narrower = later.path ?? later.pathPrefix;
    return narrower !== undefined && startsWithSegment(narrower, earlier.pathPrefix);
  }
  if (earlier.pathRegex !== undefined)
    return (
      later.pathRegex === earlier.pathRegex &&
      later.path === undefined &&
      later.pathPrefix === undefined
    );
  return true;
}

/**
 * `/api/v1` is under `/api` and `/api/`, but `/apix` is only under `/api` for a plain string
 * prefix. Requiring a segment boundary keeps the answer right whichever way the router compares.
 */
function startsWithSegment(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith('/') || path.length === prefix.length || path[prefix.length] === '/';
}

function mapCovers(earlier?: Record<string, string>, later?: Record<string, string>): boolean {
  if (earlier === undefined) return true;
  return Object.entries(earlier).every(([k, v]) => later?.[k] === v);
}
