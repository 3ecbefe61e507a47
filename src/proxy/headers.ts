import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { OutgoingHeaders, RequestContext } from '../core/context.js';
import type { Template } from '../core/template.js';
import { connectionTokens, httpDate, isHopByHop } from '../core/http.js';
import { lowerFieldName } from '../upstream/h1/index.js';

export interface CompiledHeaderOps {
  /** Lowercased names whose incoming values are dropped (remove + set). */
  drop: Set<string>;
  /** `set: { Host: ... }` replaces the Host sent upstream (like the upstream's hostHeader). */
  host: Template | null;
  /** Name (as configured) and value template, appended after the incoming headers. */
  append: Array<[string, Template]>;
}

export interface RequestHeaderOptions {
  /** Whether the peer is a trusted proxy whose X-Forwarded-* we keep and extend. */
  trusted: boolean;
  host: string;
  ops: CompiledHeaderOps | null;
}

const OWNED_REQUEST_HEADERS = new Set([
  'host',
  'expect',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
  'traceparent',
]);

/**
 * Builds the upstream request's header list (flat [name, value, ...]) in one pass over the raw
 * headers, preserving the client's casing and order for the rest.
 */
export function buildUpstreamRequestHeaders(
  ctx: RequestContext,
  opts: RequestHeaderOptions,
): string[] {
  const raw = ctx.req.rawHeaders;
  const tokens = connectionTokens(ctx.req.headers.connection);
  const drop = opts.ops?.drop;
  const out: string[] = ['host', opts.ops?.host ? opts.ops.host(ctx) : opts.host];
  let forwardedFor = '';
  let forwardedProto = '';
  let forwardedHost = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (OWNED_REQUEST_HEADERS.has(lower)) {
      // Tracing replaces the client's traceparent with one naming the proxy's span.
      if (lower === 'traceparent') {
        if (ctx.trace.traceparent === null) out.push(name, raw[i + 1]);
        continue;
      }
      if (opts.trusted) {
        const value = raw[i + 1];
        if (lower === 'x-forwarded-for')
          forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
        else if (lower === 'x-forwarded-proto') forwardedProto ||= value;
        else if (lower === 'x-forwarded-host') forwardedHost ||= value;
      }
      continue;
    }
    // From an untrusted peer every X-Forwarded-* is a claim nobody vouches for (-Port, -Prefix,
    // -Server...): dropped like -For/-Proto/-Host, as docs/headers.md says. So are RFC 7239
    // Forwarded and X-Real-IP, which upstreams read for the client address just the same.
    if (
      !opts.trusted &&
      ((lower.length > 12 && lower.startsWith('x-forwarded-')) ||
        lower === 'forwarded' ||
        lower === 'x-real-ip')
    )
      continue;
    if (isHopByHop(lower) || (tokens !== null && tokens.has(lower))) {
      // `TE: trailers` from an HTTP/2 client (gRPC) says it takes trailers end to end, which
      // gRPC servers check; HTTP/1.1's TE stays hop-by-hop.
      if (
        lower === 'te' &&
        ctx.req.httpVersionMajor === 2 &&
        raw[i + 1].trim().toLowerCase() === 'trailers'
      )
        out.push(name, 'trailers');
      continue;
    }
    if (drop !== undefined && drop.has(lower)) continue;
    out.push(name, raw[i + 1]);
  }
  // Behind a trusted proxy the list grows by the address that connected to us (the hop we
  // saw), not by the client address derived from the list, which is already in it.
  const hop = forwardedFor ? peerOf(ctx) : ctx.clientIp;
  if (drop === undefined || !drop.has('x-forwarded-for'))
    out.push('x-forwarded-for', forwardedFor ? `${forwardedFor}, ${hop}` : hop);
  if (drop === undefined || !drop.has('x-forwarded-proto'))
    out.push('x-forwarded-proto', forwardedProto || ctx.scheme);
  if (drop === undefined || !drop.has('x-forwarded-host'))
    out.push('x-forwarded-host', forwardedHost || ctx.host);
  if (drop === undefined || !drop.has('x-request-id')) out.push('x-request-id', ctx.requestId);
  const traceparent = ctx.trace.traceparent;
  if (traceparent !== null) out.push('traceparent', traceparent);
  if (ctx.extraUpstreamHeaders !== null) {
    for (const name in ctx.extraUpstreamHeaders) out.push(name, ctx.extraUpstreamHeaders[name]);
  }
  if (opts.ops !== null) {
    for (const [name, template] of opts.ops.append) out.push(name, template(ctx));
  }
  return out;
}

function peerOf(ctx: RequestContext): string {
  const address = ctx.req.socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export interface ResponseRewrite {
  /** The upstream server's `scheme://authority` as it may appear in Location. */
  origin: string;
  hostname: string;
}

const STRIPPED_RESPONSE_HEADERS = new Set(['server', 'x-powered-by']);

/** Upstream response fields that never reach the client: per hop, or naming the upstream. */
function droppedResponseField(lower: string): boolean {
  return isHopByHop(lower) || STRIPPED_RESPONSE_HEADERS.has(lower);
}

/** A response field's value as the client gets it: Location and Set-Cookie domains rewritten. */
function clientResponseValue(
  ctx: RequestContext,
  lower: string,
  value: string,
  rewrite: ResponseRewrite,
): string {
  if (lower === 'location') return rewriteLocation(ctx, value, rewrite);
  if (lower === 'set-cookie') return rewriteCookieDomain(ctx, value, rewrite);
  return value;
}

/**
 * Turns undici's raw response headers into the object written to the client, dropping hop-by-hop
 * fields and upstream identity, and rewriting Location and Set-Cookie domains that name the
 * upstream server to the host the client used.
 */
export function buildClientResponseHeaders(
  ctx: RequestContext,
  raw: Buffer[],
  rewrite: ResponseRewrite,
): OutgoingHeaders {
  // One pass: each name is converted once; fields named by Connection are removed afterwards.
  const headers: OutgoingHeaders = {};
  let tokens: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = lowerFieldName(raw[i].toString('latin1'));
    if (lower === 'connection') {
      tokens = connectionTokens(raw[i + 1].toString('latin1'));
      continue;
    }
    if (droppedResponseField(lower)) continue;
    const value = clientResponseValue(ctx, lower, raw[i + 1].toString('latin1'), rewrite);
    const existing = headers[lower];
    if (existing === undefined) headers[lower] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else headers[lower] = [existing as string, value];
  }
  if (tokens !== null) for (const name of tokens) delete headers[name];
  return headers;
}

/**
 * The same fields as buildClientResponseHeaders, serialized as `name: value\r\n` lines for a
 * response ended with a serialized head (core/http.ts), for a complete body of `bodyLength`
 * bytes: Content-Length is added when the upstream framed the body otherwise, Date when the
 * upstream sent none (node's writeHead would add both), X-Request-Id is the request's. The
 * values come from Switchyard's HTTP/1.1 response parser, which admits only valid field
 * syntax. null when a Connection field names other fields to drop (rare; the object form
 * handles it).
 */
export function serializeClientResponseFields(
  ctx: RequestContext,
  raw: Buffer[],
  rewrite: ResponseRewrite,
  bodyLength: number,
): string | null {
  let fields = '';
  let hasLength = false;
  let hasDate = false;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = lowerFieldName(raw[i].toString('latin1'));
    if (lower === 'connection') {
      if (connectionTokens(raw[i + 1].toString('latin1')) !== null) return null;
      continue;
    }
    if (droppedResponseField(lower) || lower === 'x-request-id') continue;
    if (lower === 'content-length') hasLength = true;
    else if (lower === 'date') hasDate = true;
    const value = clientResponseValue(ctx, lower, raw[i + 1].toString('latin1'), rewrite);
    fields += `${lower}: ${value}\r\n`;
  }
  if (!hasLength) fields += `content-length: ${bodyLength}\r\n`;
  if (!hasDate) fields += `date: ${httpDate()}\r\n`;
  return `${fields}x-request-id: ${ctx.requestId}\r\n`;
}

/**
 * A head object the context's hooks have made, serialized for a serialized-head ending of a
 * complete body of `bodyLength` bytes: each name and value checked as node's writeHead checks
 * them, Content-Length the body's, Date added when missing. null when it cannot end that way:
 * a check fails (the usual path then reports it), a hook set another length, the head names
 * framing or connection fields, or the status has no body.
 */
export function serializeHeadFields(
  status: number,
  headers: OutgoingHeaders,
  bodyLength: number,
): string | null {
  if (status < 200 || status === 204 || status === 304) return null;
  let fields = '';
  let hasLength = false;
  let hasDate = false;
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (lower === 'transfer-encoding' || lower === 'connection' || lower === 'keep-alive')
      return null;
    if (lower === 'content-length') {
      if (Array.isArray(value) || Number(value) !== bodyLength) return null;
      hasLength = true;
    } else if (lower === 'date') hasDate = true;
    try {
      validateHeaderName(name);
      if (Array.isArray(value)) {
        for (const v of value) {
          validateHeaderValue(name, v);
          fields += `${name}: ${v}\r\n`;
        }
      } else {
        const text = String(value);
        validateHeaderValue(name, text);
        fields += `${name}: ${text}\r\n`;
      }
    } catch {
      return null;
    }
  }
  if (!hasLength) fields += `content-length: ${bodyLength}\r\n`;
  if (!hasDate) fields += `date: ${httpDate()}\r\n`;
  return fields;
}

function rewriteLocation(ctx: RequestContext, location: string, rewrite: ResponseRewrite): string {
  const origin = rewrite.origin;
  if (
    location.length >= origin.length &&
    location.slice(0, origin.length).toLowerCase() === origin &&
    (location.length === origin.length || '/?#'.includes(location[origin.length]))
  ) {
    if (ctx.host === '') return location.slice(origin.length) || '/';
    return `${ctx.scheme}://${ctx.host}${location.slice(origin.length)}`;
  }
  return location;
}

const DOMAIN_ATTR = /(;\s*domain=)([^;]*)/i;

function rewriteCookieDomain(
  ctx: RequestContext,
  cookie: string,
  rewrite: ResponseRewrite,
): string {
  const m = DOMAIN_ATTR.exec(cookie);
  if (m === null) return cookie;
  const domain = m[2].trim().replace(/^\./, '').toLowerCase();
  if (domain !== rewrite.hostname.toLowerCase()) return cookie;
  const clientHost = ctx.hostname.replace(/^\[|\]$/g, '');
  if (clientHost === '') return cookie.replace(DOMAIN_ATTR, '');
  return cookie.replace(DOMAIN_ATTR, `$1${clientHost}`);
}

/** Compiles a route's requestHeaders into the form buildUpstreamRequestHeaders applies. */
export function compileRequestHeaderOps(
  ops: { set: Record<string, string>; add: Record<string, string>; remove: string[] } | undefined,
  compile: (source: string) => Template,
): CompiledHeaderOps | null {
  if (!ops) return null;
  const setNames = Object.keys(ops.set);
  const addNames = Object.keys(ops.add);
  if (setNames.length === 0 && addNames.length === 0 && ops.remove.length === 0) return null;
  const drop = new Set([...ops.remove, ...setNames].map((n) => n.toLowerCase()));
  drop.delete('host');
  const append: Array<[string, Template]> = [];
  let host: Template | null = null;
  for (const name of setNames) {
    if (name.toLowerCase() === 'host') host = compile(ops.set[name]);
    else append.push([name, compile(ops.set[name])]);
  }
  for (const name of addNames) {
    if (name.toLowerCase() !== 'host') append.push([name, compile(ops.add[name])]);
  }
  return { drop, append, host };
}
