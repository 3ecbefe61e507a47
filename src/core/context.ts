import type { IncomingMessage } from 'node:http';
import { errorBody, ERRORS, type ErrorCode } from './errors.js';

/** Response headers as Node writes them: lowercased names; arrays for repeated fields. */
export type OutgoingHeaders = Record<string, string | string[] | number | undefined>;

/**
 * The client request as features see it. This is the subset of node's IncomingMessage the code
 * relies on, so another HTTP engine can stand in for node:http by providing the same shape.
 */
export type ClientRequest = IncomingMessage;

/**
 * Where a response goes. node's ServerResponse satisfies it; body-transforming features
 * (compression, caching) wrap it with an object of the same shape and put that on `ctx.res`.
 */
export interface ResponseWriter {
  writeHead(status: number, headers?: OutgoingHeaders): unknown;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): unknown;
  addTrailers(headers: Record<string, string>): void;
  once(event: 'drain' | 'close', listener: () => void): unknown;
  destroy(error?: Error): unknown;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
}

export interface ResponseHead {
  status: number;
  headers: OutgoingHeaders;
}

/** Runs just before the head of any response (proxied, generated or error) is written. */
export type ResponseHeadHook = (ctx: RequestContext, head: ResponseHead) => void;

/** A request's W3C trace context, as tracing makes it. */
export interface TraceContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly sampled: boolean;
  /** The `traceparent` sent upstream in place of the client's; null leaves the client's as is. */
  readonly traceparent: string | null;
}

/** The trace context of a request when tracing is off. */
export const NO_TRACE: TraceContext = Object.freeze({
  traceId: '',
  spanId: '',
  parentSpanId: '',
  sampled: false,
  traceparent: null,
});

/** Facts about the listener a request arrived on; shared by all its requests. */
export interface ListenerInfo {
  readonly name: string;
  readonly scheme: 'http' | 'https';
  readonly maxBodySize: number;
}

/**
 * Everything known about one request while it flows through the pipeline. One object per
 * request, created by the server; fields are plain properties (no getters with hidden work)
 * except the lazily parsed cookie map.
 */
export class RequestContext {
  readonly req: ClientRequest;
  /** The writer features write through; may be replaced by wrapping features. */
  res: ResponseWriter;
  /** The real connection-facing response; use it to watch for the client going away. */
  readonly clientResponse: ResponseWriter;
  readonly listener: ListenerInfo;
  readonly method: string;
  /** Host header as received (may carry a port), '' when absent. */
  readonly host: string;
  /** Path as received, still percent-encoded. */
  readonly path: string;
  /** Raw query without '?', '' when none. */
  readonly query: string;
  readonly startTime: number;
  clientIp: string;
  requestId: string;
  /** Name of the matched route, for logs and metrics. */
  routeName = '';
  /** Name of the upstream the request went to, '' when none. */
  upstreamName = '';
  /** Origin of the server that answered, '' when none (never shown to clients). */
  upstreamServer = '';
  /** Status written to the client, 0 until the head is written. */
  status = 0;
  /** Path plus query sent upstream (after rewrite). */
  upstreamTarget: string;
  /** performance.now() when the (last) upstream attempt was sent; 0 when none. */
  upstreamStartTime = 0;
  /** performance.now() when that attempt's response head arrived; 0 when none did. */
  upstreamHeadersTime = 0;
  /** Upstream attempts beyond the first (set by the retry logic). */
  retries = 0;
  /** How the cache served the request ('hit', 'miss', 'stale', ...); '' when not cached. */
  cacheStatus = '';
  /**
   * Makes `trace` on its first read; tracing sets it at request start. A request whose trace
   * context nobody reads (a cache hit without an access log, say) never pays for random ids
   * and their formatting.
   */
  traceInit: ((ctx: RequestContext) => TraceContext) | null = null;
  private traceValue: TraceContext = NO_TRACE;
  responseHeadHooks: ResponseHeadHook[] | null = null;
  /** Custom error pages (HTML) by status, from the config's `errorPages`; null when none. */
  errorPages: ReadonlyMap<number, Buffer> | null = null;
  /** Extra request headers that features want sent upstream (e.g. from forward auth). */
  extraUpstreamHeaders: Record<string, string> | null = null;
  /** Per-request state for features, keyed by feature name. Created on first use. */
  private featureState: Map<string, unknown> | null = null;
  private cookieMap: Map<string, string> | null = null;

  constructor(
    req: ClientRequest,
    res: ResponseWriter,
    listener: ListenerInfo,
    clientIp: string,
    requestId: string,
  ) {
    this.req = req;
    this.res = res;
    this.clientResponse = res;
    this.listener = listener;
    this.method = req.method ?? 'GET';
    // HTTP/2 carries the authority as a pseudo-header; HTTP/1.1 always has Host (required).
    let host = req.headers.host ?? (req.headers[':authority'] as string | undefined) ?? '';
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47 /* '/' */) {
      // RFC 9112 §3.2.2: for an absolute-form target the authority in it replaces Host, and
      // the upstream gets the origin-form.
      const absolute = ABSOLUTE_FORM.exec(url);
      if (absolute !== null) {
        host = absolute[1];
        url = absolute[2] || '/';
        if (url.charCodeAt(0) === 63 /* '?' */) url = `/${url}`;
      }
    }
    this.host = host;
    const q = url.indexOf('?');
    if (q === -1) {
      this.path = url;
      this.query = '';
    } else {
      this.path = url.slice(0, q);
      this.query = url.slice(q + 1);
    }
    this.upstreamTarget = url;
    this.clientIp = clientIp;
    this.requestId = requestId;
    this.startTime = performance.now();
  }

  /** The W3C trace context (see traceInit); NO_TRACE when tracing is off. */
  get trace(): TraceContext {
    const init = this.traceInit;
    if (init !== null) {
      this.traceInit = null;
      this.traceValue = init(this);
    }
    return this.traceValue;
  }

  get scheme(): 'http' | 'https' {
    return this.listener.scheme;
  }

  /** Host without port, lowercased: the name the client asked for. */
  get hostname(): string {
    const h = this.host;
    if (h.startsWith('[')) {
      const end = h.indexOf(']');
      return (end === -1 ? h : h.slice(0, end + 1)).toLowerCase();
    }
    const colon = h.indexOf(':');
    return (colon === -1 ? h : h.slice(0, colon)).toLowerCase();
  }

  cookie(name: string): string | undefined {
    if (this.cookieMap === null) this.cookieMap = parseCookies(this.req.headers.cookie);
    return this.cookieMap.get(name);
  }

  getState<T>(feature: string): T | undefined {
    return this.featureState?.get(feature) as T | undefined;
  }

  setState(feature: string, value: unknown): void {
    (this.featureState ??= new Map()).set(feature, value);
  }

  addResponseHeadHook(hook: ResponseHeadHook): void {
    (this.responseHeadHooks ??= []).push(hook);
  }

  /** Writes the response head through every hook. The single door for all response heads. */
  writeHead(status: number, headers: OutgoingHeaders): void {
    if (this.responseHeadHooks !== null) {
      const head = this.runHeadHooks(status, headers);
      status = head.status;
      headers = head.headers;
    }
    this.writeFinalHead(status, headers);
  }

  /** The head the response-head hooks make of this one. They run once per response. */
  runHeadHooks(status: number, headers: OutgoingHeaders): ResponseHead {
    const head: ResponseHead = { status, headers };
    if (this.responseHeadHooks !== null)
      for (const hook of this.responseHeadHooks) hook(this, head);
    return head;
  }

  /** Writes a head the hooks have already made (runHeadHooks), with the request id. */
  writeFinalHead(status: number, headers: OutgoingHeaders): void {
    headers['x-request-id'] = this.requestId;
    this.status = status;
    this.res.writeHead(status, headers);
  }

  /** Answers with a complete small response. */
  respond(status: number, headers: OutgoingHeaders, body: string | Buffer): void {
    if (this.res.headersSent || this.res.destroyed) return;
    const payload = typeof body === 'string' ? Buffer.from(body) : body;
    headers['content-length'] = payload.length;
    this.writeHead(status, headers);
    this.res.end(this.method === 'HEAD' ? undefined : payload);
  }

  /**
   * Answers with an error from the table. When the head already went out, the only honest
   * signal left is to cut the connection, so the client sees a truncated response.
   */
  sendError(code: ErrorCode): void {
    if (this.res.headersSent) {
      this.res.destroy();
      return;
    }
    if (this.res.destroyed) return;
    const status = ERRORS[code].status;
    const page = this.errorPages?.get(status);
    const headers: OutgoingHeaders = {
      'content-type': page === undefined ? 'text/plain; charset=utf-8' : 'text/html; charset=utf-8',
      'cache-control': 'no-store',
    };
    // Connection is an HTTP/1.1 field; HTTP/2 forbids it (the stream ends on its own).
    if ((status === 413 || status === 400) && this.req.httpVersionMajor === 1)
      headers.connection = 'close';
    this.respond(status, headers, page ?? errorBody(code, this.requestId));
  }
}

const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)/i;

function parseCookies(header: string | undefined): Map<string, string> {
  const map = new Map<string, string>();
  if (!header) return map;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    const name = part.slice(0, eq).trim();
    if (name === '' || map.has(name)) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"'))
      value = value.slice(1, -1);
    map.set(name, value);
  }
  return map;
}
