/**
 * RFC 9111 decisions, made once when a response is stored so that a hit only compares numbers.
 *
 * `http-cache-semantics` decides whether a response may be stored at all (method, status,
 * no-store, private, Authorization in a shared cache, explicit freshness or a status cacheable by
 * default). Freshness itself is computed here, because the library gets several edges wrong for
 * a shared cache (each has a test in test/cache-policy.test.mjs):
 *   - it answers every request for a `must-revalidate` response with "revalidate", even while
 *     the response is fresh; must-revalidate only forbids serving it once stale;
 *   - it gives `proxy-revalidate` (and so `s-maxage`, which implies it) a lifetime of zero,
 *     where RFC 9111 §5.2.2.8 only forbids serving such a response stale;
 *   - a negative or malformed `Age` is taken at face value (`Age: -3600` makes a response
 *     fresher than its origin said);
 *   - conflicting duplicate directives (`max-age=60, max-age=3600`) keep the last one, where
 *     §4.2.1 says an invalid lifetime should make the response stale;
 *   - `immutable` alone gets a day of freshness; RFC 8246 only skips revalidation of a response
 *     that is already fresh;
 *   - its Last-Modified heuristic is unbounded; ours is capped by the route's `ttl` (or a day).
 */
import CachePolicy from 'http-cache-semantics';
import type { OutgoingHeaders } from '../../core/context.js';

/** Statuses a cache may give heuristic freshness to (RFC 9110 §15.1). */
const HEURISTIC_STATUSES = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);

/** Parsed Cache-Control: directive name -> value (true when it has none). */
export type Directives = Map<string, string | true>;

/** Sentinel for a directive given twice with different values. */
const CONFLICT = '\0conflict';

export function headerText(value: string | string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value.join(', ');
  return String(value);
}

/**
 * Parses a Cache-Control value. Quoted strings may hold commas (`no-cache="a, b"`); names are
 * case-insensitive. A directive repeated with a different value is marked as conflicting.
 */
export function parseCacheControl(text: string | undefined): Directives {
  const out: Directives = new Map();
  if (text === undefined || text === '') return out;
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && (text[i] === ',' || text[i] === ' ' || text[i] === '\t')) i++;
    let start = i;
    while (i < n && text[i] !== '=' && text[i] !== ',') i++;
    const name = text.slice(start, i).trim().toLowerCase();
    let value: string | true = true;
    if (i < n && text[i] === '=') {
      i++;
      while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
      if (text[i] === '"') {
        i++;
        let v = '';
        while (i < n && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < n) i++;
          v += text[i++];
        }
        i++;
        value = v;
        while (i < n && text[i] !== ',') i++;
      } else {
        start = i;
        while (i < n && text[i] !== ',') i++;
        value = text.slice(start, i).trim();
      }
    }
    if (name === '') continue;
    const previous = out.get(name);
    if (previous !== undefined && previous !== value) out.set(name, CONFLICT);
    else out.set(name, value);
  }
  return out;
}

/** A delta-seconds directive value; undefined when absent, NaN when malformed or conflicting. */
export function deltaSeconds(d: Directives, name: string): number | undefined {
  const v = d.get(name);
  if (v === undefined) return undefined;
  if (v === true || !/^[0-9]+$/.test(v)) return NaN;
  return Math.min(Number(v), 2 ** 31);
}

export interface FreshnessOptions {
  /**
   * The route's `ttl` (seconds) when configured: freshness for a response that gives none, and
   * the heuristic's ceiling. Undefined (the default) keeps to RFC 9111: only a Last-Modified
   * heuristic, capped at HEURISTIC_CAP_S, and no freshness at all without one.
   */
  defaultTtl: number | undefined;
}

/** Ceiling of the Last-Modified heuristic when the route sets no `ttl` (one day). */
export const HEURISTIC_CAP_S = 86_400;

/** What is known about a stored response; all of it plain data so stores can serialize it. */
export interface ResponseFacts {
  /** Why it must not be stored, or null when it may be. */
  notStorable: string | null;
  /** Freshness lifetime in seconds (0 = stale at once). */
  lifetime: number;
  /** Corrected initial age in seconds (RFC 9111 §4.2.3). */
  initialAge: number;
  /** Reuse needs a successful revalidation every time (no-cache). */
  noCache: boolean;
  /** Never served stale (must-revalidate, proxy-revalidate, s-maxage). */
  mustRevalidate: boolean;
  /** RFC 5861 windows from the response, in seconds. */
  staleWhileRevalidate: number;
  staleIfError: number;
  etag: string | undefined;
  lastModified: number | undefined;
}

function toPlainHeaders(headers: OutgoingHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers) {
    const v = headerText(headers[name]);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

const MONTHS: Record<string, number> = {
  jan: 0,
  feb: 1,
  mar: 2,
  apr: 3,
  may: 4,
  jun: 5,
  jul: 6,
  aug: 7,
  sep: 8,
  oct: 9,
  nov: 10,
  dec: 11,
};
const DAY = '(?:mon|tue|wed|thu|fri|sat|sun)';
const LONG_DAY = '(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)';
const MONTH = '(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)';
const TIME = '([0-9]{2}):([0-9]{2}):([0-9]{2})';
/** IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = new RegExp(`^${DAY}, ([0-9]{2}) ${MONTH} ([0-9]{4}) ${TIME} gmt$`, 'i');
/** Obsolete RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`. */
const RFC850_DATE = new RegExp(`^${LONG_DAY}, ([0-9]{2})-${MONTH}-([0-9]{2}) ${TIME} gmt$`, 'i');
/** Obsolete asctime(): `Sun Nov  6 08:49:37 1994`. */
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([0-9]{2}| [0-9]) ${TIME} ([0-9]{4})$`, 'i');

function utc(year: number, month: string, day: number, h: string, m: string, sec: string) {
  const hours = Number(h);
  const minutes = Number(m);
  const seconds = Number(sec);
  if (day < 1 || day > 31 || hours > 23 || minutes > 59 || seconds > 60) return undefined;
  return Date.UTC(year, MONTHS[month.toLowerCase()], day, hours, minutes, seconds);
}

/**
 * An HTTP-date (RFC 9110 §5.6.7) in epoch milliseconds, or undefined when it is not one.
 * Stricter than Date.parse, which takes `UTC`, other zones, missing commas, one-digit hours and
 * more: an Expires in any of those forms is invalid and so means "already expired" (RFC 9111
 * §5.3). Names are matched without regard to case; a two-digit RFC 850 year more than 50 years
 * ahead is taken as the past century's (RFC 9110 §5.6.7).
 */
export function parseHttpDate(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = text.trim();
  let m = IMF_FIXDATE.exec(value);
  if (m !== null) return utc(Number(m[3]), m[2], Number(m[1]), m[4], m[5], m[6]);
  m = RFC850_DATE.exec(value);
  if (m !== null) {
    const thisYear = new Date().getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(m[3]);
    if (year > thisYear + 50) year -= 100;
    return utc(year, m[2], Number(m[1]), m[4], m[5], m[6]);
  }
  m = ASCTIME_DATE.exec(value);
  if (m !== null) return utc(Number(m[6]), m[1], Number(m[2].trim()), m[3], m[4], m[5]);
  return undefined;
}

/**
 * Status codes whose semantics this cache knows (those RFC 9110 defines). Only `must-understand`
 * asks about this (RFC 9111 §5.2.2.3); other final statuses are storable with explicit freshness.
 */
const UNDERSTOOD_STATUSES = new Set([
  200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403,
  404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501,
  502, 503, 504, 505,
]);

/** The statuses http-cache-semantics stores; it refuses every other one outright. */
const LIBRARY_STATUSES = new Set([
  200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
]);

/**
 * Cache-Control as http-cache-semantics should see it. The library matches directive names
 * case-sensitively (`No-StOrE` would be stored), so names are lowercased; with `must-understand`
 * on a status we understand, `no-store` is dropped, as RFC 9111 §5.2.2.3 says.
 */
function libraryCacheControl(cc: Directives, dropNoStore: boolean): string | undefined {
  if (cc.size === 0) return undefined;
  const parts: string[] = [];
  for (const [name, value] of cc) {
    if (dropNoStore && name === 'no-store') continue;
    if (value === true) parts.push(name);
    else if (value === CONFLICT) parts.push(`${name}=invalid`);
    else parts.push(`${name}="${value.replace(/["\\]/g, '\\$&')}"`);
  }
  return parts.join(', ');
}

/**
 * Decides whether a response may be stored and computes its freshness, from the request that
 * produced it. `requestTime`/`responseTime` are epoch milliseconds around the upstream exchange.
 */
export function analyzeResponse(
  request: { method: string; headers: Record<string, string | string[] | undefined> },
  status: number,
  headers: OutgoingHeaders,
  requestTime: number,
  responseTime: number,
  options: FreshnessOptions,
): ResponseFacts {
  const cc = parseCacheControl(headerText(headers['cache-control']));
  const facts: ResponseFacts = {
    notStorable: null,
    lifetime: 0,
    initialAge: 0,
    noCache: cc.has('no-cache'),
    mustRevalidate: cc.has('must-revalidate') || cc.has('proxy-revalidate') || cc.has('s-maxage'),
    staleWhileRevalidate: deltaSeconds(cc, 'stale-while-revalidate') || 0,
    staleIfError: deltaSeconds(cc, 'stale-if-error') || 0,
    etag: headerText(headers.etag),
    lastModified: parseHttpDate(headerText(headers['last-modified'])),
  };
  const reqHeaders: Record<string, string> = {};
  for (const name of ['cache-control', 'authorization', 'host']) {
    const v = headerText(request.headers[name]);
    if (v !== undefined) reqHeaders[name] = v;
  }
  const resHeaders = toPlainHeaders(headers);
  // Pragma: no-cache only counts when Cache-Control is absent (RFC 9111 §5.4).
  if (resHeaders['cache-control'] === undefined && /no-cache/i.test(resHeaders.pragma ?? '')) {
    facts.noCache = true;
  }
  const mustUnderstand = cc.has('must-understand');
  if (mustUnderstand && !UNDERSTOOD_STATUSES.has(status)) {
    facts.notStorable = 'must-understand';
    return facts;
  }
  const libHeaders = { ...resHeaders };
  const libCc = libraryCacheControl(cc, mustUnderstand);
  if (libCc === undefined) delete libHeaders['cache-control'];
  else libHeaders['cache-control'] = libCc;
  // The library refuses final statuses it does not list (400, 500, 599, ...), which RFC 9111 §3
  // lets a cache store given explicit freshness; 302 stands in for them: listed, but not
  // cacheable by default, so the library still asks for Expires, max-age, s-maxage or public.
  const libStatus = status >= 200 && !LIBRARY_STATUSES.has(status) ? 302 : status;
  const policy = new CachePolicy(
    { method: request.method, headers: reqHeaders, url: '/' },
    { status: libStatus, headers: libHeaders },
    { shared: true, immutableMinTimeToLive: 0 },
  );
  if (!policy.storable()) {
    facts.notStorable = 'uncacheable';
    return facts;
  }
  const vary = resHeaders.vary;
  if (vary !== undefined && vary.split(',').some((v) => v.trim() === '*')) {
    facts.notStorable = 'vary-star';
    return facts;
  }
  if (headers['set-cookie'] !== undefined) {
    // Allowed by RFC 9111, but one client's cookie must never reach another (Varnish and
    // nginx refuse too); an origin that wants caching sends its cookie elsewhere.
    facts.notStorable = 'set-cookie';
    return facts;
  }

  // Age (RFC 9111 §4.2.3), ignoring a malformed or negative Age header.
  const date = parseHttpDate(resHeaders.date) ?? responseTime;
  const ageText = resHeaders.age?.split(',')[0].trim();
  const ageValue = ageText !== undefined && /^[0-9]+$/.test(ageText) ? Number(ageText) : 0;
  const apparentAge = Math.max(0, (responseTime - date) / 1000);
  const correctedAge = ageValue + Math.max(0, (responseTime - requestTime) / 1000);
  facts.initialAge = Math.max(apparentAge, correctedAge);

  // Freshness lifetime (RFC 9111 §4.2.1): s-maxage, then max-age, then Expires, then heuristics.
  const sMaxAge = deltaSeconds(cc, 's-maxage');
  const maxAge = deltaSeconds(cc, 'max-age');
  if (sMaxAge !== undefined) {
    facts.lifetime = Number.isNaN(sMaxAge) ? 0 : sMaxAge;
  } else if (maxAge !== undefined) {
    facts.lifetime = Number.isNaN(maxAge) ? 0 : maxAge;
  } else if (resHeaders.expires !== undefined) {
    const expires = parseHttpDate(resHeaders.expires);
    facts.lifetime = expires === undefined ? 0 : Math.max(0, (expires - date) / 1000);
  } else if (HEURISTIC_STATUSES.has(status) || cc.has('public')) {
    if (facts.lastModified !== undefined && facts.lastModified < date) {
      const cap = options.defaultTtl ?? HEURISTIC_CAP_S;
      facts.lifetime = Math.min(((date - facts.lastModified) / 1000) * 0.1, cap);
    } else if (options.defaultTtl !== undefined) {
      facts.lifetime = options.defaultTtl;
    }
  }
  if (facts.noCache) facts.lifetime = 0;
  return facts;
}

/** The request directives that matter to reuse (RFC 9111 §5.2.1). */
export interface RequestDirectives {
  noCache: boolean;
  noStore: boolean;
  onlyIfCached: boolean;
  maxAge: number | undefined;
  minFresh: number | undefined;
  /** Seconds of staleness accepted; Infinity for a bare max-stale. */
  maxStale: number | undefined;
}

/** Null when the request says nothing about caching (the common case: nothing is parsed). */
export function requestDirectives(headers: {
  'cache-control'?: string;
  pragma?: string;
}): RequestDirectives | null {
  const text = headers['cache-control'];
  if (text === undefined) {
    if (headers.pragma !== undefined && /no-cache/i.test(headers.pragma)) {
      return {
        noCache: true,
        noStore: false,
        onlyIfCached: false,
        maxAge: undefined,
        minFresh: undefined,
        maxStale: undefined,
      };
    }
    return null;
  }
  const cc = parseCacheControl(text);
  const maxAge = deltaSeconds(cc, 'max-age');
  const minFresh = deltaSeconds(cc, 'min-fresh');
  let maxStale: number | undefined;
  if (cc.get('max-stale') === true) maxStale = Infinity;
  else maxStale = deltaSeconds(cc, 'max-stale');
  return {
    noCache: cc.has('no-cache'),
    noStore: cc.has('no-store'),
    onlyIfCached: cc.has('only-if-cached'),
    // A malformed max-age asks for a fresh response; a malformed max-stale accepts nothing.
    maxAge: maxAge === undefined ? undefined : Number.isNaN(maxAge) ? 0 : maxAge,
    minFresh: minFresh === undefined || Number.isNaN(minFresh) ? undefined : minFresh,
    maxStale: maxStale === undefined || Number.isNaN(maxStale) ? undefined : maxStale,
  };
}

function opaqueTag(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/** If-None-Match with the weak comparison (RFC 9110 §13.1.2). */
export function etagMatches(ifNoneMatch: string, etag: string | undefined): boolean {
  if (ifNoneMatch.trim() === '*') return true;
  if (etag === undefined) return false;
  const want = opaqueTag(etag);
  for (const candidate of ifNoneMatch.split(',')) {
    if (opaqueTag(candidate.trim()) === want) return true;
  }
  return false;
}

/**
 * Whether a client's conditional GET is satisfied by a stored 200, so it gets a 304
 * (RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since only without it).
 */
export function notModified(
  reqHeaders: { 'if-none-match'?: string; 'if-modified-since'?: string },
  etag: string | undefined,
  lastModified: number | undefined,
): boolean {
  const inm = reqHeaders['if-none-match'];
  if (inm !== undefined) return etagMatches(inm, etag);
  const ims = reqHeaders['if-modified-since'];
  if (ims !== undefined && lastModified !== undefined) {
    // Not a valid HTTP-date: the header is ignored (RFC 9110 §13.1.3).
    const since = parseHttpDate(ims);
    return since !== undefined && lastModified <= since;
  }
  return false;
}

/** Headers a 304 carries (RFC 9110 §15.4.5): everything but the body's own description. */
const NOT_IN_304 = new Set([
  'content-length',
  'content-type',
  'content-range',
  'content-language',
  'transfer-encoding',
]);

export function headersFor304(headers: Record<string, string | string[]>): OutgoingHeaders {
  const out: OutgoingHeaders = {};
  for (const name in headers) if (!NOT_IN_304.has(name)) out[name] = headers[name];
  return out;
}

/** Fields a 304 may not change in the stored response (RFC 9111 §3.2). */
const KEPT_ON_UPDATE = new Set([
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'content-range',
]);

/** Updates stored headers with those of a 304 (RFC 9111 §4.3.4). Returns a new object. */
export function mergeNotModified(
  stored: Record<string, string | string[]>,
  fresh: OutgoingHeaders,
): Record<string, string | string[]> {
  const out = { ...stored };
  for (const name in fresh) {
    if (KEPT_ON_UPDATE.has(name)) continue;
    const v = fresh[name];
    if (v === undefined) continue;
    out[name] = Array.isArray(v) ? v : String(v);
  }
  return out;
}

/** A single satisfiable byte range, `unsatisfiable`, or null to ignore the header and send all. */
export function parseRange(
  header: string,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | null {
  const m = /^bytes=\s*([0-9]*)\s*-\s*([0-9]*)\s*$/i.exec(header);
  if (m === null) return null; // multiple ranges or another unit: answer with the full body
  const [, first, last] = m;
  if (first === '' && last === '') return null;
  let start: number;
  let end: number;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) return null; // invalid: ignore (RFC 9110 §14.1.1)
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}
