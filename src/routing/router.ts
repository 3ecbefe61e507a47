import type { RouteConfig, RouteMatch } from '../config/types.js';
import { normalizeHost } from './host.js';
import { parseQuery, type QueryParams } from './query.js';

/** What the router looks at in a request. Every field is as received; the router normalizes. */
export interface MatchInput {
  /** e.g. `GET`. */
  method: string;
  /** The Host header as received: may carry a port, mixed case, an IPv6 literal, or be ''. */
  host: string;
  /** The path part of the request target, without `?query`, still percent-encoded. */
  path: string;
  /** The raw query string without the `?`; '' when there is none. */
  query: string;
  /** Node-style header map with lowercased names. */
  headers: Record<string, string | string[] | undefined>;
  /** The name of the listener the request arrived on. */
  listener: string;
}

export interface Router<T> {
  /** The value of the first route whose every condition holds, or undefined. */
  match(input: MatchInput): T | undefined;
  /** How many routes were compiled. */
  readonly size: number;
}

export interface RouteEntry<T> {
  config: RouteConfig;
  value: T;
}

/**
 * One route's conditions other than host, resolved once. Host is absent on purpose: a route is
 * only ever evaluated for a request whose host already selected it through the index. `null`
 * means "no such condition", so an unconditioned route costs one property read per field.
 */
interface CompiledRoute<T> {
  value: T;
  listener: string | null;
  methods: string[] | null;
  path: string | null;
  pathPrefix: string | null;
  pathRegex: RegExp | null;
  headerNames: string[] | null;
  headerValues: string[];
  queryKeys: string[] | null;
  queryValues: string[];
}

/** Route positions in ascending order. Shared and never mutated after compilation. */
type Candidates = readonly number[];

const NO_CANDIDATES: Candidates = [];
const WILDCARD_PREFIX = '*.';

/**
 * Compiles an ordered route list into a matcher. The first route (lowest position in `routes`)
 * whose every given condition holds wins; a route with no conditions matches every request.
 * An empty list (`host: []`, `methods: []`, `headers: {}`) counts as not given.
 *
 * Matching never scans the whole table. Routes with a host condition are indexed by host: an
 * exact-name map, and a wildcard map keyed by the suffix after `*.`. At compile time each exact
 * name gets the ordered union of its own routes and the wildcard routes that cover it, and each
 * wildcard suffix gets the ordered union of its routes and those of every less specific wildcard
 * suffix. A request then costs one map lookup (plus one per label of an unknown host) and walks
 * only the routes that could match, merged in order with the routes that have no host condition.
 *
 * The host-less routes are merged at request time rather than folded into every per-host list:
 * the merge of two sorted arrays allocates nothing, and folding would cost memory proportional to
 * (host names x host-less routes), which a few thousand hosts and a long catch-all tail would make
 * large. The result is identical to a linear first-match scan (see test/routing.test.mjs).
 */
export function createRouter<T>(routes: ReadonlyArray<RouteEntry<T>>): Router<T> {
  const compiled: CompiledRoute<T>[] = [];
  const exactRoutes = new Map<string, number[]>();
  const wildcardRoutes = new Map<string, number[]>();
  const hostless: number[] = [];
  const queryKeys = new Set<string>();

  for (let position = 0; position < routes.length; position++) {
    const { config, value } = routes[position];
    const match = config.match ?? {};
    compiled.push(compileRoute(config, match, value));
    for (const key of Object.keys(match.query ?? {})) queryKeys.add(key);

    const hosts = match.host ?? [];
    if (hosts.length === 0) {
      hostless.push(position);
      continue;
    }
    for (const pattern of hosts) {
      const host = normalizeHost(pattern);
      if (host.startsWith(WILDCARD_PREFIX)) {
        const suffix = host.slice(WILDCARD_PREFIX.length);
        if (suffix === '' || suffix.includes('*')) {
          throw new Error(`${config.name}: invalid host pattern "${pattern}"`);
        }
        addPosition(wildcardRoutes, suffix, position);
      } else {
        // `*` anywhere but a leading `*.` would silently never match; say so instead.
        if (host.includes('*'))
          throw new Error(`${config.name}: invalid host pattern "${pattern}"`);
        addPosition(exactRoutes, host, position);
      }
    }
  }

  // Each wildcard suffix's list covers every wildcard that matches a host ending in it: its own
  // routes and those of its less specific suffixes (`*.b.c` and `*.c` both cover `x.b.c`).
  const wildcardIndex = new Map<string, Candidates>();
  for (const suffix of wildcardRoutes.keys()) {
    let merged: Candidates = wildcardRoutes.get(suffix) ?? NO_CANDIDATES;
    for (let dot = suffix.indexOf('.'); dot !== -1; dot = suffix.indexOf('.', dot + 1)) {
      const broader = wildcardRoutes.get(suffix.slice(dot + 1));
      if (broader !== undefined) merged = mergeSorted(merged, broader);
    }
    wildcardIndex.set(suffix, merged);
  }

  const exactIndex = new Map<string, Candidates>();
  for (const [host, own] of exactRoutes) {
    const covering = lookupWildcard(wildcardIndex, host);
    exactIndex.set(host, covering.length === 0 ? own : mergeSorted(own, covering));
  }

  const indexesHosts = exactIndex.size > 0 || wildcardIndex.size > 0;

  return {
    size: compiled.length,
    match(input: MatchInput): T | undefined {
      let hosted = NO_CANDIDATES;
      if (indexesHosts) {
        const host = normalizeHost(input.host);
        hosted = exactIndex.get(host) ?? lookupWildcard(wildcardIndex, host);
      }

      // Merge the host's candidates with the host-less routes in route order. The two lists
      // are disjoint, since a route either has a host condition or it does not.
      let query: QueryParams | undefined;
      let h = 0;
      let n = 0;
      while (h < hosted.length || n < hostless.length) {
        const position =
          n === hostless.length || (h < hosted.length && hosted[h] < hostless[n])
            ? hosted[h++]
            : hostless[n++];
        const route = compiled[position];
        if (!matchesRequest(route, input)) continue;
        if (route.queryKeys !== null) {
          // Parsed at most once per request, and only when a candidate asks about the query.
          query ??= parseQuery(input.query, queryKeys);
          if (!matchesQuery(route, query)) continue;
        }
        return route.value;
      }
      return undefined;
    },
  };
}

function compileRoute<T>(config: RouteConfig, match: RouteMatch, value: T): CompiledRoute<T> {
  const headers = Object.entries(match.headers ?? {});
  const query = Object.entries(match.query ?? {});
  const methods = match.methods ?? [];
  let pathRegex: RegExp | null = null;
  if (match.pathRegex !== undefined) {
    try {
      pathRegex = new RegExp(match.pathRegex);
    } catch (err) {
      throw new Error(`${config.name}: invalid pathRegex: ${(err as Error).message}`);
    }
  }
  return {
    value,
    listener: match.listener ?? null,
    methods: methods.length === 0 ? null : allowedMethods(methods),
    path: match.path ?? null,
    pathPrefix: match.pathPrefix ?? null,
    pathRegex,
    headerNames: headers.length === 0 ? null : headers.map(([name]) => name.toLowerCase()),
    headerValues: headers.map(([, expected]) => expected),
    queryKeys: query.length === 0 ? null : query.map(([key]) => key),
    queryValues: query.map(([, expected]) => expected),
  };
}

/**
 * HEAD is allowed wherever GET is, as nginx's `limit_except GET` and Caddy's method matcher
 * do: a HEAD is a GET without the body, and a client probing a GET-only route should not get a
 * 404. The reverse does not hold: `methods: [HEAD]` does not admit GET.
 */
function allowedMethods(methods: string[]): string[] {
  const allowed = methods.map((method) => method.toUpperCase());
  if (allowed.includes('GET') && !allowed.includes('HEAD')) allowed.push('HEAD');
  return allowed;
}

/** Every condition except host (resolved by the index) and query (parsed lazily). */
function matchesRequest<T>(route: CompiledRoute<T>, input: MatchInput): boolean {
  if (route.listener !== null && route.listener !== input.listener) return false;
  if (route.methods !== null && !route.methods.includes(input.method)) return false;
  const path = input.path;
  if (route.path !== null && route.path !== path) return false;
  if (route.pathPrefix !== null && !path.startsWith(route.pathPrefix)) return false;
  if (route.pathRegex !== null && !route.pathRegex.test(path)) return false;
  const names = route.headerNames;
  if (names !== null) {
    const headers = input.headers;
    for (let i = 0; i < names.length; i++) {
      if (!headerHasValue(headers[names[i]], route.headerValues[i])) return false;
    }
  }
  return true;
}

/** Node joins most repeated headers into one string but keeps some (set-cookie) as arrays. */
function headerHasValue(actual: string | string[] | undefined, expected: string): boolean {
  if (actual === undefined) return false;
  if (typeof actual === 'string') return actual === expected;
  return actual.includes(expected);
}

function matchesQuery<T>(route: CompiledRoute<T>, query: QueryParams): boolean {
  const keys = route.queryKeys as string[];
  for (let i = 0; i < keys.length; i++) {
    const values = query.get(keys[i]);
    if (values === undefined || !values.includes(route.queryValues[i])) return false;
  }
  return true;
}

/**
 * The wildcard candidates for a host that has no exact entry: walk its labels from the most
 * specific suffix to the least (`a.b.c` tries `b.c`, then `c`). The first suffix found already
 * includes every broader one. The leftmost label must be non-empty, so `*.example.org` matches
 * `a.example.org` and `a.b.example.org` but never `example.org` itself.
 */
function lookupWildcard(index: ReadonlyMap<string, Candidates>, host: string): Candidates {
  if (index.size === 0) return NO_CANDIDATES;
  for (let dot = host.indexOf('.', 1); dot !== -1; dot = host.indexOf('.', dot + 1)) {
    const candidates = index.get(host.slice(dot + 1));
    if (candidates !== undefined) return candidates;
  }
  return NO_CANDIDATES;
}

function addPosition(map: Map<string, number[]>, key: string, position: number): void {
  const positions = map.get(key);
  if (positions === undefined) map.set(key, [position]);
  // A route may list the same host twice; positions arrive in ascending order.
  else if (positions[positions.length - 1] !== position) positions.push(position);
}

/** The ordered union of two ascending lists, without duplicates. */
function mergeSorted(a: Candidates, b: Candidates): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let next: number;
    if (j === b.length || (i < a.length && a[i] < b[j])) next = a[i++];
    else if (i === a.length || b[j] < a[i]) next = b[j++];
    else {
      next = a[i++];
      j++;
    }
    out.push(next);
  }
  return out;
}
