import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Request hygiene past what node's strict llhttp parser already refuses (CL+TE, duplicate or
 * malformed Content-Length, obs-fold, bare CR/LF, NUL and control characters, bad chunk sizes):
 * the framing and target rules an intermediary must enforce so that no request can mean one
 * thing to Switchyard and another to an upstream.
 */

/** What the checks read of a request: node's IncomingMessage, or a quick answer's request. */
export type CheckedRequest = Pick<
  IncomingMessage,
  'httpVersionMajor' | 'httpVersionMinor' | 'url' | 'method' | 'headers' | 'rawHeaders'
>;

export interface Rejection {
  status: number;
  text: string;
}

const BAD_REQUEST: Rejection = { status: 400, text: 'Bad Request' };
const NOT_IMPLEMENTED: Rejection = { status: 501, text: 'Not Implemented' };
const VERSION_NOT_SUPPORTED: Rejection = { status: 505, text: 'HTTP Version Not Supported' };

/**
 * Checks one request's framing and headers. Returns why it is refused, or null. Called once per
 * request before anything else sees it; cheap for ordinary requests (a few property reads).
 */
export function checkRequest(req: CheckedRequest): Rejection | null {
  // HTTP/2 requests come from the http2 side (they carry their stream); an HTTP/1 request line
  // that merely claims 2.0 (llhttp accepts it) is not one.
  if (req.httpVersionMajor === 2 ? !('stream' in req) : req.httpVersionMajor !== 1)
    return VERSION_NOT_SUPPORTED;
  if (req.httpVersionMajor === 1 && req.httpVersionMinor > 1) return VERSION_NOT_SUPPORTED;
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0 && req.url === undefined)
    return BAD_REQUEST;
  const te = req.headers['transfer-encoding'];
  if (te !== undefined) {
    // RFC 9112 §6.1: HTTP/1.0 has no transfer codings; such framing is faulty. Any coding other
    // than a lone `chunked` (e.g. `gzip, chunked`) is one we would have to undo: refuse it.
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return BAD_REQUEST;
    if (te.trim().toLowerCase() !== 'chunked') return NOT_IMPLEMENTED;
  }
  // RFC 9112 §3.2: more than one Host field is a 400.
  let hosts = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'host' && ++hosts > 1) return BAD_REQUEST;
  }
  // ... and so is a Host that is not `host[:port]` (spaces, `/`, `@`...): it would reach routing,
  // redirects, X-Forwarded-Host and the upstream as is.
  const host = req.headers.host;
  if (host !== undefined && !VALID_HOST.test(host)) return BAD_REQUEST;
  return null;
}

/** RFC 3986 `host [ ":" port ]`: an IP literal in brackets or a reg-name, then digits. */
const VALID_HOST =
  /^(?:\[[0-9A-Za-z:._~!$&'()*+,;=%-]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?$/;

const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)$/i;
const HEX = '0123456789ABCDEF';
/**
 * RFC 3986 unreserved characters, which mean the same percent-encoded or not, so `/%61dmin`
 * cannot slip past a route for `/admin`. `~` is left encoded: old encoders escape it as a
 * matter of course and no route depends on it.
 */
const UNRESERVED = /[A-Za-z0-9\-._]/;
const NEEDS_WORK = /%|\/\.|\/\/|\\/;

/**
 * Normalises a request path so that routing, filters and the upstream all see the same one:
 * percent-encoded unreserved characters (`%2e`, `%61`) decoded, other escapes kept byte for byte,
 * `.`/`..` segments resolved (RFC 3986 §5.2.4; never above the root), runs of `/` merged.
 * Encoded `/` (`%2F`) and `\` stay encoded, so they are never mistaken for separators.
 * Returns null for a malformed escape (answered 400). Paths without `%`, `/.` or `//` are
 * returned as they are.
 */
export function normalizePath(path: string): string | null {
  if (!NEEDS_WORK.test(path)) return path;
  let decoded = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c !== '%') {
      decoded += c;
      continue;
    }
    const h1 = HEX.indexOf(path[i + 1]?.toUpperCase() ?? 'x');
    const h2 = HEX.indexOf(path[i + 2]?.toUpperCase() ?? 'x');
    if (h1 === -1 || h2 === -1) return null;
    const ch = String.fromCharCode(h1 * 16 + h2);
    decoded += UNRESERVED.test(ch) ? ch : path.slice(i, i + 3);
    i += 2;
  }
  const out: string[] = [];
  const segments = decoded.split('/');
  // segments[0] is '' for an absolute path.
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i];
    const last = i === segments.length - 1;
    if (segment === '.' || segment === '') {
      if (last) out.push('');
      continue;
    }
    if (segment === '..') {
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(segment);
  }
  return `/${out.join('/')}`;
}

/**
 * Turns the request target into origin-form with a normalised path, in place (`req.url`), so the
 * router and the proxy see the same thing. Absolute-form (`GET http://host/x`) is accepted as
 * RFC 9112 §3.2.2 asks, with its authority replacing Host. Returns a rejection or null.
 */
export function normalizeTarget(req: CheckedRequest): Rejection | null {
  let url = req.url ?? '/';
  if (url[0] !== '/') {
    if (url === '*' && req.method === 'OPTIONS') return null;
    const absolute = ABSOLUTE_FORM.exec(url);
    if (absolute === null || absolute[1] === '' || !VALID_HOST.test(absolute[1]))
      return BAD_REQUEST;
    req.headers.host = absolute[1];
    url = absolute[2] === '' ? '/' : absolute[2][0] === '?' ? `/${absolute[2]}` : absolute[2];
    if (url[0] !== '/') return BAD_REQUEST;
  }
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const normalized = normalizePath(path);
  if (normalized === null) return BAD_REQUEST;
  if (normalized !== path) url = q === -1 ? normalized : normalized + url.slice(q);
  req.url = url;
  return null;
}

/** Writes a refusal and closes the connection (the request's framing cannot be trusted). */
export function refuse(res: ServerResponse, rejection: Rejection): void {
  const body = `${rejection.status} ${rejection.text}\n`;
  res.shouldKeepAlive = false;
  res.writeHead(rejection.status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
}

/**
 * Whether a header overflow happened while still on the request line (then the answer is 414
 * URI Too Long, not 431). Decided from the chunk the parser failed in: when it starts the request
 * and the overflow came before its first line ended. A request line split across reads falls
 * back to 431, which is still a correct refusal.
 */
export function overflowInRequestLine(err: {
  rawPacket?: unknown;
  bytesParsed?: unknown;
}): boolean {
  const packet = err.rawPacket;
  if (!Buffer.isBuffer(packet)) return false;
  const space = packet.indexOf(0x20);
  if (space <= 0 || space > 20) return false;
  for (let i = 0; i < space; i++) {
    const c = packet[i];
    if (c < 0x41 || c > 0x5a) return false;
  }
  const lineEnd = packet.indexOf(0x0a);
  const at = typeof err.bytesParsed === 'number' ? err.bytesParsed : packet.length;
  return lineEnd === -1 || lineEnd >= at;
}

interface WatchedBody {
  req: IncomingMessage;
  res: ServerResponse;
  start: number;
  startBytes: number;
  /** Time the proxy, not the client, held up the body (buffered data not yet consumed). */
  heldMs: number;
}

/** Default minimum body rate in bytes per second (see limits.minBodyRate). */
export const DEFAULT_MIN_BODY_RATE = 1024;
const CHECK_INTERVAL_MS = 500;

/**
 * Slow-POST defence: a request body must keep arriving at `minRate` bytes per second on average,
 * measured once it has taken longer than `graceMs`. Time when the body was waiting on the proxy
 * (data buffered, the upstream slow) is not counted against the client. One coarse timer per
 * listener checks every body in flight.
 */
export class BodyRateGuard {
  private readonly watched = new Set<WatchedBody>();
  private timer: NodeJS.Timeout | null = null;
  private lastTick = 0;
  minRate: number;
  graceMs: number;

  constructor(minRate: number, graceMs: number) {
    this.minRate = minRate;
    this.graceMs = graceMs;
  }

  watch(req: IncomingMessage, res: ServerResponse): void {
    if (this.minRate <= 0 || req.httpVersionMajor !== 1 || req.complete) return;
    const entry: WatchedBody = {
      req,
      res,
      start: performance.now(),
      startBytes: req.socket.bytesRead,
      heldMs: 0,
    };
    this.watched.add(entry);
    const forget = () => this.watched.delete(entry);
    req.once('end', forget);
    res.once('close', forget);
    if (this.timer === null) {
      this.lastTick = performance.now();
      this.timer = setInterval(() => this.check(), CHECK_INTERVAL_MS);
      this.timer.unref();
    }
  }

  private check(): void {
    const now = performance.now();
    const tick = now - this.lastTick;
    this.lastTick = now;
    for (const entry of this.watched) {
      const { req, res } = entry;
      if (req.complete || res.destroyed) {
        this.watched.delete(entry);
        continue;
      }
      if (req.readableLength > 0 || req.socket.isPaused()) entry.heldMs += tick;
      const clientMs = now - entry.start - entry.heldMs;
      if (clientMs <= this.graceMs) continue;
      const bytes = req.socket.bytesRead - entry.startBytes;
      if (bytes >= (this.minRate * clientMs) / 1000) continue;
      this.watched.delete(entry);
      if (!res.headersSent) {
        refuse(res, { status: 408, text: 'Request Timeout' });
        res.once('finish', () => req.socket.destroy());
      } else {
        req.socket.destroy();
      }
    }
    if (this.watched.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.watched.clear();
  }
}
