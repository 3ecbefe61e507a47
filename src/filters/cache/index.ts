import { STATUS_CODES } from 'node:http';
import { parseDuration, parseSize } from '../../config/units.js';
import {
  RequestContext,
  type ClientRequest,
  type OutgoingHeaders,
  type ResponseHead,
  type ResponseHeadHook,
  type ResponseWriter,
} from '../../core/context.js';
import { errorBody } from '../../core/errors.js';
import { channels } from '../../core/events.js';
import { endWithSerializedHead, type SerializedHeadResponse } from '../../core/http.js';
import type { Filter, FilterDeps, FilterFactory, Handler } from '../../core/filter.js';
import type { QuickReply } from '../../core/quick-answer.js';
import {
  CacheEngines,
  createInflight,
  type CacheEngine,
  type Inflight,
  type StoreSettings,
} from './engine.js';
import { compileKey, type KeyFunction } from './keys.js';
import {
  analyzeResponse,
  headersFor304,
  headerText,
  mergeNotModified,
  notModified,
  parseRange,
  requestDirectives,
  type RequestDirectives,
  type ResponseFacts,
} from './policy.js';
import type { CacheRecord, ResponseMeta, VaryMeta } from './store.js';
import {
  CacheWriter,
  ifRangeMatches,
  NO_CLIENT,
  type MissPlan,
  type WriterHost,
} from './writer.js';

export type { CachePurgeRequest, CachePurger } from './engine.js';
export { CacheEngines } from './engine.js';

/** Route settings as written (`cache: true` or an object). */
interface RouteCacheConfig {
  ttl?: string;
  staleWhileRevalidate?: string;
  staleIfError?: string;
  key?: string;
  query?: { sort?: boolean; drop?: string[] };
  collapseTimeout?: string;
}

/** Global `cache:` section as written. */
interface GlobalCacheConfig {
  store?: 'memory' | 'disk' | 'redis';
  maxSize?: string | number;
  path?: string;
  maxObjectSize?: string | number;
  redisMaxBodySize?: string | number;
}

/** How long a stale entry is kept (at least) for revalidation, max-stale and stale-if-error. */
const KEEP_STALE_S = 3600;
/** A background refresh that never finishes must not block the next one forever. */
const REFRESH_GUARD_MS = 60_000;
const EMPTY = Buffer.alloc(0);
const SAFE_METHODS = new Set(['OPTIONS', 'TRACE']);
const STRIPPED_UPSTREAM = new Set(['range', 'if-range', 'if-none-match', 'if-modified-since']);
/** Per-request state key: set when a request must not wait on another (no second collapse). */
const NO_COLLAPSE = 'cache:no-collapse';

export function storeSettings(globals: Record<string, unknown>): StoreSettings {
  const cache = (globals.cache ?? {}) as GlobalCacheConfig;
  const redis = globals.redis as { url?: string } | undefined;
  return {
    store: cache.store ?? 'memory',
    maxSize: parseSize(cache.maxSize ?? '256MiB'),
    maxObjectSize: parseSize(cache.maxObjectSize ?? '8MiB'),
    path: cache.path,
    redisUrl: redis?.url,
    redisMaxBodySize: parseSize(cache.redisMaxBodySize ?? '1MiB'),
  };
}

function seconds(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseDuration(text) / 1000;
}

/** Header names of a Vary value, lowercased, deduplicated and sorted (a stable variant key). */
function varyNames(value: string | string[] | undefined): string[] {
  const text = headerText(value);
  if (text === undefined) return [];
  const names = new Set<string>();
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase();
    if (name !== '') names.add(name);
  }
  return [...names].sort();
}

function variantKey(
  baseKey: string,
  names: readonly string[],
  headers: ClientRequest['headers'],
): string {
  let key = baseKey;
  for (const name of names) {
    const value = headerText(headers[name]);
    let normal = value === undefined ? '' : value.replace(/\s*,\s*/g, ',').trim();
    // Language tags are case-insensitive (RFC 9110 §8.5.1): en-US and en-us are one variant.
    if (name === 'accept-language') normal = normal.toLowerCase();
    key += `\n${name}:${normal}`;
  }
  return key;
}

function appendCacheStatus(existing: string | undefined, ours: string): string {
  return existing === undefined ? ours : `${existing}, ${ours}`;
}

/**
 * What a plain hit writes, derived once per stored entry (not per hit), in two forms:
 * - `lead`: the status line, the stored fields, Content-Length and the entry's Cache-Status,
 *   encoded as the head's bytes, for responses that take a serialized head (core/http.ts:
 *   Switchyard's HTTP/1.1 loop); the fields are checked against the field syntax once, here. A
 *   hit adds Age and the request id. null when a stored field would not pass the check (the
 *   flat list's writeHead then reports it as it always did) or the status carries no body (204).
 * - `list`: the same as a flat `[name, value, ...]` list, the form node's writeHead takes
 *   without walking an object, ending with `age`, `cache-status` and `x-request-id`, so a hit
 *   copies one array of the final size and fills in two values.
 * Kept beside the entry (a WeakMap, so the meta stays plain data for the disk and redis
 * encodings and the template goes with the entry).
 */
interface HitTemplate {
  readonly lead: Buffer | null;
  readonly list: readonly string[];
}
const HIT_TEMPLATES = new WeakMap<ResponseMeta, HitTemplate>();
/** Where serveHit writes the per-hit values into its copy of a template's list. */
const AGE_FROM_END = 5;
const REQUEST_ID_FROM_END = 1;
/** RFC 9110 §5.1 field names, and the characters a field value may not hold (§5.5). */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE_INVALID = /[^\t\x20-\x7e\x80-\xff]/;

function hitTemplate(meta: ResponseMeta, bodyLength: number): HitTemplate {
  const known = HIT_TEMPLATES.get(meta);
  if (known !== undefined) return known;
  const list: string[] = [];
  const src = meta.headers;
  for (const name in src) {
    const v = src[name];
    if (typeof v === 'string') list.push(name, v);
    else for (const item of v) list.push(name, item);
  }
  const cacheStatus = appendCacheStatus(meta.upstreamCacheStatus, 'switchyard; hit');
  let fields: string | null = meta.status === 204 ? null : '';
  for (let i = 0; fields !== null && i < list.length; i += 2) {
    const name = list[i]!;
    const value = list[i + 1]!;
    if (!FIELD_NAME.test(name) || FIELD_VALUE_INVALID.test(value)) fields = null;
    else fields += `${name}: ${value}\r\n`;
  }
  if (fields !== null) {
    // node's end(body) adds Content-Length when the stored response had none (it was chunked).
    if (src['content-length'] === undefined) fields += `content-length: ${bodyLength}\r\n`;
    fields += `cache-status: ${cacheStatus}\r\n`;
  }
  list.push('age', '0', 'cache-status', cacheStatus, 'x-request-id', '');
  const lead =
    fields === null
      ? null
      : Buffer.from(
          `HTTP/1.1 ${meta.status} ${STATUS_CODES[meta.status] ?? 'unknown'}\r\n${fields}`,
          'latin1',
        );
  const template = { lead, list };
  HIT_TEMPLATES.set(meta, template);
  return template;
}

/** A hit's Age field, the first written after its template's lead. */
function ageField(meta: ResponseMeta, now: number): string {
  const age = Math.floor(meta.initialAge + (now - meta.responseTime) / 1000);
  return `age: ${age > 0 ? age : 0}\r\n`;
}

/** A head hook for responses the cache forwards without storing. */
function forwardedHook(fwd: string): ResponseHeadHook {
  const ours = `switchyard; fwd=${fwd}`;
  return (_ctx, head) => {
    const headers = head.headers;
    delete headers['cache-tag'];
    delete headers['surrogate-key'];
    headers['cache-status'] = appendCacheStatus(headerText(headers['cache-status']), ours);
  };
}

/** Applies hooks and the request id, then writes the head: ctx.writeHead for a given writer. */
function sendHead(
  ctx: RequestContext,
  out: ResponseWriter,
  hooks: ResponseHeadHook[] | null,
  status: number,
  headers: OutgoingHeaders,
): void {
  if (hooks !== null) {
    const head: ResponseHead = { status, headers };
    for (const hook of hooks) hook(ctx, head);
    status = head.status;
    headers = head.headers;
  }
  headers['x-request-id'] = ctx.requestId;
  ctx.status = status;
  out.writeHead(status, headers);
}

/** Removes the client's Range and validators from what goes upstream (we fetch the full 200). */
function stripUpstreamHeaders(raw: string[]): string[] | null {
  let found = false;
  for (let i = 0; i < raw.length; i += 2) {
    if (STRIPPED_UPSTREAM.has(raw[i].toLowerCase())) {
      found = true;
      break;
    }
  }
  if (!found) return null;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!STRIPPED_UPSTREAM.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

interface RouteSettings {
  key: KeyFunction;
  ttl: number | undefined;
  swr: number | undefined;
  sie: number | undefined;
  collapseTimeoutMs: number;
}

/** The per-route cache filter. Built once per route and config; shares its engine. */
class CacheFilter implements Filter, WriterHost {
  readonly name = 'cache';
  readonly maxObjectSize: number;
  readonly defaultTtl: number | undefined;
  readonly staleIfError: number | undefined;
  private readonly staleWhileRevalidate: number | undefined;
  private readonly engine: CacheEngine;
  private readonly engines: CacheEngines;
  private readonly key: KeyFunction;
  private readonly collapseTimeoutMs: number;
  private readonly log: FilterDeps['log'];
  private readonly methodHook = forwardedHook('method');
  private readonly requestHook = forwardedHook('request');
  private readonly missHook = forwardedHook('miss');
  private readonly unsafeHook: ResponseHeadHook;
  private closed = false;
  /** Filter.quickAnswer, for stores that hold records in memory (CacheStore.getNow). */
  readonly quickAnswer?: (ctx: RequestContext) => QuickReply | undefined;

  constructor(
    settings: RouteSettings,
    engines: CacheEngines,
    engine: CacheEngine,
    log: FilterDeps['log'],
  ) {
    this.key = settings.key;
    this.defaultTtl = settings.ttl;
    this.staleWhileRevalidate = settings.swr;
    this.staleIfError = settings.sie;
    this.collapseTimeoutMs = settings.collapseTimeoutMs;
    this.engine = engine;
    this.engines = engines;
    this.maxObjectSize = engine.settings.maxObjectSize;
    this.log = log;
    const methodHook = this.methodHook;
    this.unsafeHook = (ctx, head) => {
      methodHook(ctx, head);
      if (head.status >= 200 && head.status < 400) this.invalidateAfterUnsafe(ctx, head.headers);
    };
    if (engine.store.getNow !== undefined) this.quickAnswer = this.answerFreshHit;
  }

  /**
   * Filter.quickAnswer: a fresh hit, held in memory, for a request with nothing that could
   * change its answer (request directives, preconditions, a conditional or Range request). It
   * is what serveHit writes on its one-write path, with the same effects; anything else is
   * left to `handle`.
   */
  private readonly answerFreshHit = (ctx: RequestContext): QuickReply | undefined => {
    const h = ctx.req.headers;
    if (
      h['cache-control'] !== undefined ||
      h.pragma !== undefined ||
      h.range !== undefined ||
      h['if-none-match'] !== undefined ||
      h['if-modified-since'] !== undefined ||
      h['if-match'] !== undefined ||
      h['if-unmodified-since'] !== undefined
    )
      return undefined;
    const store = this.engine.store;
    const baseKey = this.key(ctx, 'GET', ctx.path, ctx.query);
    let record = store.getNow!(baseKey);
    if (record !== undefined && record.meta.kind === 'vary')
      record = store.getNow!(variantKey(baseKey, record.meta.vary, h));
    if (record === undefined || record.meta.kind !== 'response') return undefined;
    const meta = record.meta;
    const body = record.body;
    const now = Date.now();
    if (meta.noCache || !(meta.initialAge + (now - meta.responseTime) / 1000 < meta.lifetime))
      return undefined;
    const lead = hitTemplate(meta, body.length).lead;
    if (lead === null) return undefined;
    this.emit(ctx, 'hit', false);
    ctx.status = meta.status;
    return {
      status: meta.status,
      lead,
      fields: ageField(meta, now),
      body: ctx.method === 'HEAD' || body.length === 0 ? undefined : body,
    };
  };

  handle(ctx: RequestContext, next: Handler): void | Promise<void> {
    const method = ctx.method;
    if (method !== 'GET' && method !== 'HEAD') {
      ctx.addResponseHeadHook(SAFE_METHODS.has(method) ? this.methodHook : this.unsafeHook);
      this.emit(ctx, 'bypass', false);
      return next(ctx);
    }
    const h = ctx.req.headers;
    if (h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined) {
      // Preconditions on the origin's current state: only the origin can answer them.
      ctx.addResponseHeadHook(this.requestHook);
      this.emit(ctx, 'bypass', false);
      return next(ctx);
    }
    const baseKey = this.key(ctx, 'GET', ctx.path, ctx.query);
    const found = this.engine.store.get(baseKey);
    if (found instanceof Promise) {
      return found.then(
        (record) => this.withBase(ctx, next, baseKey, record),
        () => this.withBase(ctx, next, baseKey, undefined),
      );
    }
    return this.withBase(ctx, next, baseKey, found);
  }

  private withBase(
    ctx: RequestContext,
    next: Handler,
    baseKey: string,
    record: CacheRecord | undefined,
  ): void | Promise<void> {
    if (record === undefined || record.meta.kind === 'response') {
      return this.decide(ctx, next, baseKey, baseKey, record, 'miss');
    }
    const lookupKey = variantKey(baseKey, record.meta.vary, ctx.req.headers);
    const found = this.engine.store.get(lookupKey);
    if (found instanceof Promise) {
      return found.then(
        (variant) => this.decide(ctx, next, baseKey, lookupKey, variant, 'vary-miss'),
        () => this.decide(ctx, next, baseKey, lookupKey, undefined, 'vary-miss'),
      );
    }
    return this.decide(ctx, next, baseKey, lookupKey, found, 'vary-miss');
  }

  private decide(
    ctx: RequestContext,
    next: Handler,
    baseKey: string,
    lookupKey: string,
    record: CacheRecord | undefined,
    missFwd: string,
  ): void | Promise<void> {
    const h = ctx.req.headers;
    const rd =
      h['cache-control'] === undefined && h.pragma === undefined ? null : requestDirectives(h);
    const entry = record !== undefined && record.meta.kind === 'response' ? record : undefined;
    let fresh = false;
    if (entry !== undefined) {
      const m = entry.meta as ResponseMeta;
      const now = Date.now();
      const age = m.initialAge + (now - m.responseTime) / 1000;
      fresh = !m.noCache && age < m.lifetime;
      if (rd === null) {
        if (fresh) return this.serveHit(ctx, m, entry.body, now);
      } else {
        let usable = fresh;
        const staleBy = age - m.lifetime;
        if (!fresh && rd.maxStale !== undefined && !m.noCache && !m.mustRevalidate)
          usable = staleBy <= rd.maxStale;
        if (rd.noCache) usable = false;
        if (rd.maxAge !== undefined && age > rd.maxAge) usable = false;
        if (rd.minFresh !== undefined && m.lifetime - age < rd.minFresh) usable = false;
        if (usable) {
          return this.serveEntry(
            ctx,
            ctx.res,
            ctx.responseHeadHooks,
            m,
            entry.body,
            fresh ? 'hit' : `hit; ttl=${Math.floor(-staleBy)}`,
            fresh ? 'hit' : 'stale',
          );
        }
      }
      if (
        !fresh &&
        !m.noCache &&
        !m.mustRevalidate &&
        (rd === null || (!rd.noCache && rd.maxAge === undefined && rd.minFresh === undefined))
      ) {
        const staleBy = age - m.lifetime;
        if (staleBy < (this.staleWhileRevalidate ?? m.swr)) {
          this.refreshInBackground(ctx, next, baseKey, lookupKey, entry as StoredEntry);
          return this.serveEntry(
            ctx,
            ctx.res,
            ctx.responseHeadHooks,
            m,
            entry.body,
            `hit; ttl=${Math.floor(-staleBy)}`,
            'stale',
          );
        }
      }
    }
    if (rd?.onlyIfCached) {
      this.emit(ctx, 'miss', false);
      ctx.respond(
        504,
        {
          'content-type': 'text/plain; charset=utf-8',
          'cache-control': 'no-store',
          'cache-status': 'switchyard; fwd=miss; detail=only-if-cached',
        },
        errorBody('UPSTREAM_TIMEOUT', ctx.requestId),
      );
      return;
    }
    if (ctx.method === 'HEAD') {
      // Only a GET response is stored; a HEAD goes upstream as it is.
      ctx.addResponseHeadHook(this.missHook);
      this.emit(ctx, 'miss', false);
      return next(ctx);
    }
    const fwd = entry === undefined ? missFwd : fresh ? 'request' : 'stale';
    return this.miss(ctx, next, baseKey, lookupKey, (entry as StoredEntry) ?? null, fwd, rd);
  }

  private miss(
    ctx: RequestContext,
    next: Handler,
    baseKey: string,
    lookupKey: string,
    stale: StoredEntry | null,
    fwd: string,
    rd: RequestDirectives | null,
  ): void | Promise<void> {
    const engine = this.engine;
    const passing = engine.uncacheable.has(baseKey);
    const h = ctx.req.headers;
    if (
      passing &&
      stale === null &&
      (h.range !== undefined ||
        h['if-none-match'] !== undefined ||
        h['if-modified-since'] !== undefined)
    ) {
      // Known to be uncacheable: let the origin answer the range or condition itself.
      ctx.addResponseHeadHook(this.missHook);
      this.emit(ctx, 'miss', false);
      return next(ctx);
    }
    const collapse =
      !passing &&
      this.collapseTimeoutMs > 0 &&
      rd?.noStore !== true &&
      ctx.getState(NO_COLLAPSE) === undefined;
    if (collapse) {
      const leader = engine.inflight.get(lookupKey);
      if (leader !== undefined) return this.follow(ctx, next, leader);
    }
    let inflight: Inflight | null = null;
    if (collapse) {
      const created = createInflight();
      inflight = created;
      engine.inflight.set(lookupKey, created);
      void created.done.then(() => {
        if (engine.inflight.get(lookupKey) === created) engine.inflight.delete(lookupKey);
      });
    }
    const plan: MissPlan = {
      baseKey,
      lookupKey,
      url: this.urlOf(ctx),
      fwd,
      stale,
      requestTime: Date.now(),
      range: h.range,
      ifRange: headerText(h['if-range']),
      conditional:
        h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined
          ? { 'if-none-match': h['if-none-match'], 'if-modified-since': h['if-modified-since'] }
          : null,
      noStore: rd?.noStore === true,
      inflight,
      outerHooks: ctx.responseHeadHooks,
      background: false,
      requestHeaders: h,
    };
    const stripped = stripUpstreamHeaders(ctx.req.rawHeaders);
    if (stripped !== null) ctx.req.rawHeaders = stripped;
    if (stale !== null) this.addValidators(ctx, stale.meta);
    // Filters before the cache shape each client's copy; inner ones shape what is stored.
    ctx.responseHeadHooks = null;
    ctx.res = new CacheWriter(this, ctx, ctx.res, plan);
    return next(ctx);
  }

  /** Waits (bounded) for the leader of the same key, then starts over without collapsing. */
  private async follow(ctx: RequestContext, next: Handler, leader: Inflight): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.collapseTimeoutMs);
      timer.unref();
    });
    await Promise.race([leader.done, timeout]);
    clearTimeout(timer);
    ctx.setState(NO_COLLAPSE, true);
    if (ctx.clientResponse.destroyed) return;
    await this.handle(ctx, next);
  }

  private addValidators(ctx: RequestContext, meta: ResponseMeta): void {
    const etag = headerText(meta.headers.etag);
    const lastModified = headerText(meta.headers['last-modified']);
    if (etag === undefined && lastModified === undefined) return;
    const extra = { ...(ctx.extraUpstreamHeaders ?? {}) };
    if (etag !== undefined) extra['if-none-match'] = etag;
    if (lastModified !== undefined) extra['if-modified-since'] = lastModified;
    ctx.extraUpstreamHeaders = extra;
  }

  private urlOf(ctx: RequestContext): string {
    const base = `${ctx.scheme}://${ctx.host.toLowerCase()}${ctx.path}`;
    return ctx.query === '' ? base : `${base}?${ctx.query}`;
  }

  /**
   * stale-while-revalidate: the client got the stale entry; one request per key refreshes it
   * through the rest of the chain with a context of its own, which no client waits on.
   */
  private refreshInBackground(
    ctx: RequestContext,
    next: Handler,
    baseKey: string,
    lookupKey: string,
    stale: StoredEntry,
  ): void {
    const engine = this.engine;
    if (engine.refreshing.has(lookupKey) || engine.inflight.has(lookupKey)) return;
    engine.refreshing.add(lookupKey);
    const inflight = createInflight();
    const guard = setTimeout(() => inflight.settle(false), REFRESH_GUARD_MS);
    guard.unref();
    void inflight.done.then(() => {
      clearTimeout(guard);
      engine.refreshing.delete(lookupKey);
    });
    const src = ctx.req;
    const headers = { ...src.headers };
    for (const name of STRIPPED_UPSTREAM) delete headers[name];
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    const raw: string[] = [];
    for (let i = 0; i < src.rawHeaders.length; i += 2) {
      const lower = src.rawHeaders[i].toLowerCase();
      if (
        STRIPPED_UPSTREAM.has(lower) ||
        lower === 'content-length' ||
        lower === 'transfer-encoding'
      )
        continue;
      raw.push(src.rawHeaders[i], src.rawHeaders[i + 1]);
    }
    const req = {
      method: 'GET',
      url: src.url,
      headers,
      rawHeaders: raw,
      socket: src.socket,
      httpVersion: src.httpVersion,
    } as unknown as ClientRequest;
    const bg = new RequestContext(req, NO_CLIENT, ctx.listener, ctx.clientIp, ctx.requestId);
    bg.routeName = ctx.routeName;
    const plan: MissPlan = {
      baseKey,
      lookupKey,
      url: this.urlOf(ctx),
      fwd: 'stale',
      stale,
      requestTime: Date.now(),
      range: undefined,
      ifRange: undefined,
      conditional: null,
      noStore: false,
      inflight,
      outerHooks: null,
      background: true,
      requestHeaders: headers,
    };
    this.addValidators(bg, stale.meta);
    bg.res = new CacheWriter(this, bg, NO_CLIENT, plan);
    try {
      const pending = next(bg);
      if (pending !== undefined) {
        pending.then(undefined, (err: unknown) => {
          inflight.settle(false);
          this.log('warn', 'cache: background refresh failed', { error: String(err) });
        });
      }
    } catch (err) {
      inflight.settle(false);
      this.log('warn', 'cache: background refresh failed', { error: String(err) });
    }
  }

  /**
   * A fresh hit with no request directives: the common case, kept cheap. The head is the entry's
   * precomputed template plus Age, Cache-Status and the request id, written straight to node's
   * HTTP/1 response as a flat list. Anything else (hooks of outer filters, a wrapped writer,
   * HTTP/2, a conditional or Range request on a 200) takes serveEntry's general path.
   */
  private serveHit(ctx: RequestContext, meta: ResponseMeta, body: Buffer, now: number): void {
    const out = ctx.res;
    const h = ctx.req.headers;
    if (
      ctx.responseHeadHooks !== null ||
      out !== ctx.clientResponse ||
      ctx.req.httpVersionMajor !== 1 ||
      (meta.status === 200 &&
        (h.range !== undefined ||
          h['if-none-match'] !== undefined ||
          h['if-modified-since'] !== undefined))
    ) {
      this.serveEntry(ctx, out, ctx.responseHeadHooks, meta, body, 'hit', 'hit');
      return;
    }
    const template = hitTemplate(meta, body.length);
    this.emit(ctx, 'hit', false);
    ctx.status = meta.status;
    const payload = ctx.method === 'HEAD' || body.length === 0 ? undefined : body;
    const raw = (out as Partial<SerializedHeadResponse>)[endWithSerializedHead];
    if (
      template.lead !== null &&
      raw !== undefined &&
      raw.call(
        out,
        meta.status,
        `${ageField(meta, now)}x-request-id: ${ctx.requestId}\r\n`,
        payload,
        template.lead,
      )
    )
      return;
    const age = Math.floor(meta.initialAge + (now - meta.responseTime) / 1000);
    const head = template.list.slice();
    const end = head.length;
    if (age > 0) head[end - AGE_FROM_END] = String(age);
    head[end - REQUEST_ID_FROM_END] = ctx.requestId;
    // node's ServerResponse takes a flat [name, value, ...] list (ResponseWriter types an object).
    out.writeHead(meta.status, head as unknown as OutgoingHeaders);
    out.end(payload);
  }

  // ---- WriterHost ---------------------------------------------------------------------------

  serveEntry(
    ctx: RequestContext,
    out: ResponseWriter,
    hooks: ResponseHeadHook[] | null,
    meta: ResponseMeta,
    body: Buffer,
    cacheStatus: string,
    result: 'hit' | 'stale' | 'revalidated',
  ): void {
    let headers: OutgoingHeaders = {};
    const src = meta.headers;
    for (const name in src) {
      const v = src[name];
      headers[name] = typeof v === 'string' ? v : v.slice();
    }
    const age = Math.floor(meta.initialAge + (Date.now() - meta.responseTime) / 1000);
    headers.age = age > 0 ? String(age) : '0';
    headers['cache-status'] = appendCacheStatus(
      meta.upstreamCacheStatus,
      `switchyard; ${cacheStatus}`,
    );
    let status = meta.status;
    let payload: Buffer | undefined = body;
    if (status === 200) {
      const h = ctx.req.headers;
      if (
        (h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined) &&
        notModified(h, meta.etag, meta.lastModified)
      ) {
        status = 304;
        headers = headersFor304(headers as Record<string, string | string[]>);
        payload = undefined;
      } else if (
        h.range !== undefined &&
        (h['if-range'] === undefined ||
          ifRangeMatches(String(h['if-range']), meta.etag, meta.lastModified))
      ) {
        const range = parseRange(h.range, body.length);
        if (range === 'unsatisfiable') {
          status = 416;
          headers = {
            'content-range': `bytes */${body.length}`,
            'content-length': '0',
            'cache-status': headers['cache-status'],
          };
          payload = undefined;
        } else if (range !== null) {
          status = 206;
          payload = body.subarray(range.start, range.end + 1);
          headers['content-range'] = `bytes ${range.start}-${range.end}/${body.length}`;
          headers['content-length'] = String(payload.length);
        }
      }
    }
    this.emit(ctx, result, false);
    sendHead(ctx, out, hooks, status, headers);
    out.end(
      ctx.method === 'HEAD' || payload === undefined || payload.length === 0 ? undefined : payload,
    );
  }

  buildMeta(
    plan: MissPlan,
    status: number,
    stored: Record<string, string | string[]>,
    facts: ResponseFacts,
    upstreamCacheStatus: string | undefined,
    tags: string[],
    responseTime: number,
  ): ResponseMeta {
    const swr = this.staleWhileRevalidate ?? facts.staleWhileRevalidate;
    const sie = this.staleIfError ?? facts.staleIfError;
    // Stale entries are kept a while: for revalidation (when they have validators), for the
    // RFC 5861 windows, and for clients' max-stale. An entry that may never be served stale and
    // cannot be revalidated is worthless once stale.
    const validatable = facts.etag !== undefined || facts.lastModified !== undefined;
    const servableStale = !facts.noCache && !facts.mustRevalidate;
    const keep =
      validatable || servableStale
        ? Math.max(KEEP_STALE_S, servableStale ? Math.max(swr, sie) : 0)
        : 0;
    return {
      kind: 'response',
      key: plan.lookupKey,
      url: plan.url,
      tags,
      status,
      headers: stored,
      upstreamCacheStatus,
      responseTime,
      initialAge: facts.initialAge,
      lifetime: facts.lifetime,
      noCache: facts.noCache,
      mustRevalidate: facts.mustRevalidate,
      swr: facts.staleWhileRevalidate,
      sie: facts.staleIfError,
      etag: facts.etag,
      lastModified: facts.lastModified,
      expiresAt: responseTime + (facts.lifetime - facts.initialAge + keep) * 1000,
    };
  }

  async commit(plan: MissPlan, meta: ResponseMeta, body: Buffer): Promise<void> {
    const store = this.engine.store;
    const names = varyNames(meta.headers.vary);
    if (names.length === 0) {
      meta.key = plan.baseKey;
      await store.set(plan.baseKey, { meta, body });
      return;
    }
    const key = variantKey(plan.baseKey, names, plan.requestHeaders);
    meta.key = key;
    await store.set(key, { meta, body });
    const existing = await store.get(plan.baseKey);
    let variants = [key];
    if (existing !== undefined && existing.meta.kind === 'vary') {
      const index = existing.meta;
      if (index.vary.join(',') === names.join(',') && !index.variants.includes(key))
        variants = [...index.variants.slice(-63), key];
      else if (index.variants.includes(key)) variants = index.variants;
    }
    const index: VaryMeta = {
      kind: 'vary',
      key: plan.baseKey,
      url: plan.url,
      tags: [],
      vary: names,
      variants,
      expiresAt: Math.max(
        meta.expiresAt,
        existing?.meta.kind === 'vary' ? existing.meta.expiresAt : 0,
      ),
    };
    await store.set(plan.baseKey, { meta: index, body: EMPTY });
  }

  refreshed(
    plan: MissPlan,
    stale: ResponseMeta,
    headers: OutgoingHeaders,
    now: number,
  ): ResponseMeta | null {
    const update: OutgoingHeaders = {};
    let tags: string[] | null = null;
    for (const name in headers) {
      if (name === 'x-request-id' || name === 'age' || name === 'cache-status') continue;
      if (name === 'cache-tag' || name === 'surrogate-key') {
        tags ??= [];
        const sep = name === 'cache-tag' ? ',' : ' ';
        for (const t of (headerText(headers[name]) ?? '').split(sep))
          if (t.trim() !== '' && !tags.includes(t.trim())) tags.push(t.trim());
        continue;
      }
      update[name] = headers[name];
    }
    const merged = mergeNotModified(stale.headers, update);
    const facts = analyzeResponse(
      { method: 'GET', headers: plan.requestHeaders },
      stale.status,
      merged,
      plan.requestTime,
      now,
      { defaultTtl: this.defaultTtl },
    );
    const store = this.engine.store;
    if (facts.notStorable !== null) {
      void store.delete(stale.key);
      return null;
    }
    const meta = this.buildMeta(
      { ...plan, lookupKey: stale.key },
      stale.status,
      merged,
      facts,
      stale.upstreamCacheStatus,
      tags ?? stale.tags,
      now,
    );
    return meta;
  }

  save(meta: ResponseMeta, body: Buffer): Promise<void> {
    return this.engine.store.set(meta.key, { meta, body });
  }

  markUncacheable(plan: MissPlan): void {
    this.engine.uncacheable.set(plan.baseKey, true);
  }

  emit(ctx: RequestContext, result: string, stored: boolean): void {
    if (channels.cacheResult.hasSubscribers)
      channels.cacheResult.publish({ ctx, result, stored, route: ctx.routeName });
  }

  canStaleIfError(meta: ResponseMeta, now: number, unreachable: boolean): boolean {
    if (meta.noCache || meta.mustRevalidate) return false;
    // RFC 9111 §4.2.4 lets a disconnected cache serve stale: when the upstream cannot be reached
    // at all, a stale entry is served for as long as it is kept, unless the route sets its own
    // staleIfError. An upstream's own 5xx needs stale-if-error (response or route).
    const window = this.staleIfError ?? (unreachable ? Math.max(meta.sie, KEEP_STALE_S) : meta.sie);
    if (window <= 0) return false;
    const age = meta.initialAge + (now - meta.responseTime) / 1000;
    return age - meta.lifetime <= window;
  }

  // ---- invalidation -------------------------------------------------------------------------

  /**
   * RFC 9111 §4.4: a successful unsafe request invalidates the target URI and the same-origin
   * Location and Content-Location URIs (every stored variant of each).
   */
  private invalidateAfterUnsafe(ctx: RequestContext, headers: OutgoingHeaders): void {
    this.invalidateKey(this.key(ctx, 'GET', ctx.path, ctx.query));
    for (const name of ['location', 'content-location']) {
      const value = headerText(headers[name]);
      if (value === undefined) continue;
      let url: URL;
      try {
        url = new URL(value, `${ctx.scheme}://${ctx.host || 'localhost'}${ctx.path}`);
      } catch {
        continue;
      }
      if (url.host !== ctx.host.toLowerCase()) continue;
      this.invalidateKey(this.key(ctx, 'GET', url.pathname, url.search.slice(1)));
    }
  }

  private invalidateKey(baseKey: string): void {
    const store = this.engine.store;
    const drop = (record: CacheRecord | undefined) => {
      if (record !== undefined && record.meta.kind === 'vary') {
        for (const variant of record.meta.variants) void store.delete(variant);
      }
      void store.delete(baseKey);
    };
    const found = store.get(baseKey);
    if (found instanceof Promise) found.then(drop, () => drop(undefined));
    else drop(found);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engines.release(this.engine);
  }
}

type StoredEntry = { meta: ResponseMeta; body: Buffer };

/**
 * `cache`: an RFC 9111 shared cache in front of the route's upstream, with RFC 9211
 * Cache-Status, request collapsing, stale-while-revalidate / stale-if-error and purge.
 * Runs at order 700, outside compression (800), so what compression writes is what is stored.
 */
export const cacheFeature: FilterFactory = {
  key: 'cache',
  order: 700,
  create(config: unknown, deps: FilterDeps): Filter {
    const route: RouteCacheConfig = config === true ? {} : (config as RouteCacheConfig);
    const settings: RouteSettings = {
      key: compileKey({
        template: route.key,
        sortQuery: route.query?.sort ?? false,
        dropQuery: route.query?.drop ?? [],
      }),
      ttl: seconds(route.ttl),
      swr: seconds(route.staleWhileRevalidate),
      sie: seconds(route.staleIfError),
      collapseTimeoutMs: parseDuration(route.collapseTimeout ?? '5s'),
    };
    const engines = deps.shared('cache:engines', () => new CacheEngines());
    // The admin API purges through this function (see docs/caching.md).
    deps.shared('cache:purge', () => engines.purge);
    const engine = engines.acquire(storeSettings(deps.globals), deps.log);
    return new CacheFilter(settings, engines, engine, deps.log);
  },
};
