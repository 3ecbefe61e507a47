import type {
  OutgoingHeaders,
  RequestContext,
  ResponseHeadHook,
  ResponseWriter,
} from '../../core/context.js';
import type { Inflight } from './engine.js';
import {
  analyzeResponse,
  headersFor304,
  headerText,
  notModified,
  parseHttpDate,
  parseRange,
} from './policy.js';
import type { ResponseMeta } from './store.js';

/** Everything the writer needs from the filter; implemented by CacheFilter. */
export interface WriterHost {
  readonly maxObjectSize: number;
  readonly defaultTtl: number | undefined;
  /** Route overrides (seconds), or undefined to follow the response. */
  readonly staleIfError: number | undefined;
  /** Serves a stored entry to the client (used on a 304 or for stale-if-error). */
  serveEntry(
    ctx: RequestContext,
    out: ResponseWriter,
    hooks: ResponseHeadHook[] | null,
    meta: ResponseMeta,
    body: Buffer,
    cacheStatus: string,
    result: 'stale' | 'revalidated',
  ): void;
  /** Stores a fresh response (and its Vary index); resolves when a lookup would find it. */
  commit(plan: MissPlan, meta: ResponseMeta, body: Buffer): Promise<void>;
  /** Stores an updated record under its own key. */
  save(meta: ResponseMeta, body: Buffer): Promise<void>;
  /** Updates a stored entry after a 304 and returns the merged meta. */
  refreshed(
    plan: MissPlan,
    stale: ResponseMeta,
    headers: OutgoingHeaders,
    now: number,
  ): ResponseMeta | null;
  buildMeta(
    plan: MissPlan,
    status: number,
    stored: Record<string, string | string[]>,
    facts: ReturnType<typeof analyzeResponse>,
    upstreamCacheStatus: string | undefined,
    tags: string[],
    responseTime: number,
  ): ResponseMeta;
  markUncacheable(plan: MissPlan): void;
  emit(ctx: RequestContext, result: string, stored: boolean): void;
  /** `unreachable`: the upstream gave no response head (refused, reset, timed out). */
  canStaleIfError(meta: ResponseMeta, now: number, unreachable: boolean): boolean;
}

/** One miss or revalidation: what was looked up and what the client originally asked for. */
export interface MissPlan {
  baseKey: string;
  lookupKey: string;
  url: string;
  /** RFC 9211 fwd reason: miss, uri-miss, vary-miss, stale, request. */
  fwd: string;
  /** The stored entry being revalidated, if any. */
  stale: { meta: ResponseMeta; body: Buffer } | null;
  requestTime: number;
  /** The client's own Range and conditionals, removed from the upstream request. */
  range: string | undefined;
  ifRange: string | undefined;
  conditional: { 'if-none-match'?: string; 'if-modified-since'?: string } | null;
  /** The client request said no-store: forward, never store. */
  noStore: boolean;
  inflight: Inflight | null;
  /** Response head hooks of filters before the cache, applied to the client's copy only. */
  outerHooks: ResponseHeadHook[] | null;
  /** A background refresh has no client. */
  background: boolean;
  /** The client's request headers (they select the Vary variant). */
  requestHeaders: Record<string, string | string[] | undefined>;
}

/** Fields never stored: per-request, per-hop, or recomputed on every hit. */
const NOT_STORED = new Set([
  'x-request-id',
  'age',
  'cache-status',
  'cache-tag',
  'surrogate-key',
  'connection',
  'keep-alive',
  'transfer-encoding',
]);

const ERROR_STATUSES = new Set([500, 502, 503, 504]);

const enum Mode {
  /** Passing the response through and storing it as it streams. */
  Store,
  /** Passing it through without storing. */
  Pass,
  /** The client was answered from the store; the upstream body is dropped. */
  Discard,
}

/** A writer that does nothing: the client side of a background refresh. */
export const NO_CLIENT: ResponseWriter = {
  writeHead: () => undefined,
  write: () => true,
  end: () => undefined,
  addTrailers: () => undefined,
  once: () => undefined,
  destroy: () => undefined,
  headersSent: false,
  writableEnded: false,
  destroyed: false,
};

/**
 * Wraps `ctx.res` for a miss or revalidation. Whatever is written through it (by the proxy, and
 * by filters inside the cache such as compression) goes to the client at once and, when
 * storable, is collected and stored when it ends: the client never waits for the store. A 304
 * or an upstream error is replaced by the stored entry when RFC 9111 / RFC 5861 allow it.
 */
export class CacheWriter implements ResponseWriter {
  private readonly host: WriterHost;
  private readonly ctx: RequestContext;
  private readonly downstream: ResponseWriter;
  private readonly plan: MissPlan;
  private mode = Mode.Pass;
  private chunks: Buffer[] | null = null;
  private bytes = 0;
  private expectedLength = -1;
  private meta: ResponseMeta | null = null;
  /** Client-facing body shaping: drop it (304), or slice it to a range. */
  private suppressBody = false;
  private sliceStart = -1;
  private sliceEnd = -1;
  private offset = 0;
  private ended = false;
  private headSent = false;

  constructor(host: WriterHost, ctx: RequestContext, downstream: ResponseWriter, plan: MissPlan) {
    this.host = host;
    this.ctx = ctx;
    this.downstream = downstream;
    this.plan = plan;
    if (!plan.background) ctx.clientResponse.once('close', this.onClientClose);
  }

  private readonly onClientClose = () => {
    if (!this.ended) this.abandon();
  };

  get headersSent(): boolean {
    return this.headSent || this.downstream.headersSent;
  }

  get writableEnded(): boolean {
    return this.plan.background ? this.ended : this.downstream.writableEnded;
  }

  get destroyed(): boolean {
    return this.downstream.destroyed;
  }

  writeHead(status: number, headers: OutgoingHeaders = {}): unknown {
    const plan = this.plan;
    const now = Date.now();
    const stale = plan.stale;
    if (stale !== null && status === 304) {
      const meta = this.host.refreshed(plan, stale.meta, headers, now);
      this.mode = Mode.Discard;
      this.headSent = true;
      const inflight = plan.inflight;
      if (meta === null) inflight?.settle(false);
      else
        this.host.save(meta, stale.body).then(
          () => inflight?.settle(true),
          () => inflight?.settle(false),
        );
      if (!plan.background) {
        this.host.serveEntry(
          this.ctx,
          this.downstream,
          plan.outerHooks,
          meta ?? stale.meta,
          stale.body,
          `fwd=${plan.fwd}; fwd-status=304${meta !== null ? '; stored' : ''}`,
          'revalidated',
        );
      }
      return this;
    }
    if (
      stale !== null &&
      ERROR_STATUSES.has(status) &&
      this.host.canStaleIfError(stale.meta, now, this.ctx.upstreamHeadersTime === 0)
    ) {
      this.mode = Mode.Discard;
      this.headSent = true;
      plan.inflight?.settle(false);
      if (!plan.background) {
        this.host.serveEntry(
          this.ctx,
          this.downstream,
          plan.outerHooks,
          stale.meta,
          stale.body,
          `fwd=${plan.fwd}; fwd-status=${status}`,
          'stale',
        );
      }
      return this;
    }

    // What would be stored: the response as the origin (and inner filters) shaped it.
    const stored: Record<string, string | string[]> = {};
    let upstreamCacheStatus: string | undefined;
    const tags: string[] = [];
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (name === 'cache-status') upstreamCacheStatus = headerText(value);
      else if (name === 'cache-tag') collectTags(tags, headerText(value) ?? '', ',');
      else if (name === 'surrogate-key') collectTags(tags, headerText(value) ?? '', ' ');
      if (NOT_STORED.has(name)) continue;
      stored[name] = Array.isArray(value) ? value.slice() : String(value);
    }
    let storedFlag = false;
    if (!plan.noStore) {
      const facts = analyzeResponse(
        { method: 'GET', headers: this.ctx.req.headers },
        status,
        headers,
        plan.requestTime,
        now,
        { defaultTtl: this.host.defaultTtl },
      );
      const length = headers['content-length'];
      this.expectedLength = length === undefined ? -1 : Number(length);
      if (facts.notStorable !== null) {
        // Remember responses that are uncacheable by nature, not by this request or an outage.
        if (status < 500 && this.ctx.req.headers.authorization === undefined)
          this.host.markUncacheable(plan);
      } else if (this.expectedLength > this.host.maxObjectSize) {
        this.host.markUncacheable(plan);
      } else {
        if (stored.date === undefined) stored.date = new Date(now).toUTCString();
        const meta = this.host.buildMeta(
          plan,
          status,
          stored,
          facts,
          upstreamCacheStatus,
          tags,
          now,
        );
        // A response that could only be reused after a revalidation it has no validator for
        // is not worth keeping.
        if (meta.expiresAt > now) {
          this.meta = meta;
          this.mode = Mode.Store;
          this.chunks = [];
          storedFlag = true;
        }
      }
    }
    if (this.mode !== Mode.Store) plan.inflight?.settle(false);
    if (plan.background) {
      this.headSent = true;
      return this;
    }

    // The client's copy.
    delete headers['cache-tag'];
    delete headers['surrogate-key'];
    let clientStatus = status;
    if (status === 200) {
      const etag = headerText(headers.etag);
      const lm = headerText(headers['last-modified']);
      const lastModified = parseHttpDate(lm);
      if (plan.conditional !== null && notModified(plan.conditional, etag, lastModified)) {
        clientStatus = 304;
        headers = headersFor304(headers as Record<string, string | string[]>);
        this.suppressBody = true;
      } else if (
        plan.range !== undefined &&
        this.expectedLength >= 0 &&
        (plan.ifRange === undefined || ifRangeMatches(plan.ifRange, etag, lastModified))
      ) {
        const range = parseRange(plan.range, this.expectedLength);
        if (range === 'unsatisfiable') {
          clientStatus = 416;
          headers = { 'content-range': `bytes */${this.expectedLength}`, 'content-length': 0 };
          this.suppressBody = true;
        } else if (range !== null) {
          clientStatus = 206;
          headers['content-range'] = `bytes ${range.start}-${range.end}/${this.expectedLength}`;
          headers['content-length'] = range.end - range.start + 1;
          this.sliceStart = range.start;
          this.sliceEnd = range.end;
        }
      }
    }
    const ours = `switchyard; fwd=${plan.fwd}${storedFlag ? '; stored' : ''}`;
    headers['cache-status'] =
      upstreamCacheStatus === undefined ? ours : `${upstreamCacheStatus}, ${ours}`;
    this.host.emit(this.ctx, plan.fwd === 'stale' ? 'expired' : 'miss', storedFlag);
    const head = { status: clientStatus, headers };
    if (plan.outerHooks !== null) for (const hook of plan.outerHooks) hook(this.ctx, head);
    this.ctx.status = head.status;
    this.headSent = true;
    return this.downstream.writeHead(head.status, head.headers);
  }

  write(chunk: Buffer | string): boolean {
    if (this.mode === Mode.Discard || this.ended) return true;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.mode === Mode.Store) {
      this.bytes += buf.length;
      if (this.bytes > this.host.maxObjectSize) {
        // Larger than allowed: stop collecting and let the rest stream through.
        this.host.markUncacheable(this.plan);
        this.abandon();
      } else {
        this.chunks!.push(buf);
      }
    }
    if (this.plan.background || this.suppressBody) return true;
    if (this.sliceStart >= 0) {
      const from = this.offset;
      this.offset += buf.length;
      const start = Math.max(this.sliceStart - from, 0);
      const end = Math.min(this.sliceEnd - from + 1, buf.length);
      if (end <= start) return true;
      return this.downstream.write(
        start === 0 && end === buf.length ? buf : buf.subarray(start, end),
      );
    }
    return this.downstream.write(buf);
  }

  end(chunk?: Buffer | string): unknown {
    if (this.ended) return this;
    if (chunk !== undefined && chunk.length > 0) this.write(chunk);
    this.ended = true;
    if (this.mode === Mode.Discard) return this;
    if (this.mode === Mode.Store) {
      const body = Buffer.concat(this.chunks!);
      this.chunks = null;
      const meta = this.meta!;
      if (this.expectedLength >= 0 && body.length !== this.expectedLength) {
        // The upstream ended early: never store a truncated body.
        this.plan.inflight?.settle(false);
      } else {
        if (meta.status !== 204 && meta.status !== 304)
          meta.headers['content-length'] = String(body.length);
        const inflight = this.plan.inflight;
        this.host.commit(this.plan, meta, body).then(
          () => inflight?.settle(true),
          () => inflight?.settle(false),
        );
      }
    }
    if (this.plan.background) return this;
    return this.downstream.end();
  }

  addTrailers(headers: Record<string, string>): void {
    if (this.mode !== Mode.Discard && !this.plan.background) this.downstream.addTrailers(headers);
  }

  once(event: 'drain' | 'close', listener: () => void): unknown {
    return this.downstream.once(event, listener);
  }

  destroy(error?: Error): unknown {
    this.abandon();
    this.ended = true;
    return this.downstream.destroy(error);
  }

  /** Stops collecting the body; waiting followers go upstream on their own. */
  private abandon(): void {
    if (this.mode === Mode.Store) {
      this.mode = Mode.Pass;
      this.chunks = null;
    }
    this.plan.inflight?.settle(false);
  }
}

function collectTags(into: string[], text: string, separator: string): void {
  for (const t of text.split(separator)) {
    const tag = t.trim();
    if (tag !== '' && !into.includes(tag)) into.push(tag);
  }
}

/** If-Range (RFC 9110 §13.1.5): a strong ETag match or an exact Last-Modified date. */
export function ifRangeMatches(
  ifRange: string,
  etag: string | undefined,
  lastModified: number | undefined,
): boolean {
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith('W/')) {
    return etag !== undefined && !v.startsWith('W/') && !etag.startsWith('W/') && v === etag;
  }
  const date = parseHttpDate(v);
  return date !== undefined && lastModified !== undefined && date === lastModified;
}
