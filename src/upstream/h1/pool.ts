import type { Readable } from 'node:stream';
import { InvalidRequestError, noteTimeout, PoolClosedError } from './common.js';
import {
  Connection,
  H1Request,
  type ConnectionOwner,
  type H1DispatchHandler,
  type StreamBody,
} from './connection.js';

export interface H1PoolOptions {
  connectTimeoutMs?: number;
  /** How long an unused keep-alive connection is kept (shortened by a server's Keep-Alive hint). */
  keepAliveIdleMs?: number;
  /** null: unbounded (a new connection whenever none is free). */
  maxConnections?: number | null;
  /**
   * Idle keep-alive connections kept (nginx's `keepalive N`); past it the least recently used
   * one is closed. null: unbounded (they still close after keepAliveIdleMs).
   */
  maxIdle?: number | null;
}

/** The dispatch options Switchyard passes (undici's names). */
export interface H1DispatchOptions {
  path: string;
  method: string;
  headers?: string[] | Record<string, string | string[] | number | undefined> | null;
  body?: string | Buffer | Uint8Array | StreamBody | null;
  headersTimeout?: number | null;
  bodyTimeout?: number | null;
  upgrade?: string | null;
  reset?: boolean;
  idempotent?: boolean;
  blocking?: boolean;
}

/** RFC 9110 §9.2.2: these may be sent twice. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Methods whose requests carry content: an empty one is sent as `content-length: 0`. */
const EXPECTS_PAYLOAD = new Set(['POST', 'PUT', 'PATCH', 'QUERY', 'PROPFIND', 'PROPPATCH']);
const NOT_TOKEN = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_PATH = /[^\x21-\xff]/;
/**
 * Idle connections beyond maxIdle close when they are still surplus this long after a response
 * made them so, the way HAProxy purges its idle pool gradually rather than at once. Under
 * sustained high concurrency the "surplus" of one moment is back in use the next: closing it at
 * once made about three requests in four open a new connection at 1,000 clients (half the
 * requests per second). A burst's leftovers still go within a second.
 */
const SURPLUS_GRACE_MS = 1_000;

/**
 * A keep-alive HTTP/1.1 connection pool for one origin (plain `http:` only), replacing undici's
 * Pool for Switchyard's hot path with the same `dispatch(opts, handler)` contract (undici's
 * legacy handler API). One request per connection at a time; free connections are reused most
 * recently used first, so surplus ones idle out.
 *
 * Unlike undici it retries one thing itself: a request that lost the race with a server closing
 * an idle keep-alive connection (the socket closed before any response byte) is sent again,
 * once, on a new connection, when nothing of it can have been acted upon (see
 * H1Request.replayable). Every other failure goes to the handler, which owns retry policy.
 */
export class H1Pool implements ConnectionOwner {
  private readonly hostname: string;
  private readonly port: number;
  private readonly authority: string;
  private readonly connectTimeoutMs: number;
  private readonly keepAliveIdleMs: number;
  private readonly maxConnections: number | null;
  private readonly maxIdle: number;
  /** Least recently used first: requests take from the end, surplus closes from the start. */
  private readonly idle: Connection[] = [];
  private readonly conns = new Set<Connection>();
  private queue: H1Request[] = [];
  private connecting = 0;
  private closing = false;
  private destroyed = false;
  private closeWaiters: Array<() => void> = [];
  private trimTimer: NodeJS.Timeout | null = null;
  /** Connections opened so far (tests and diagnostics). */
  connectionsOpened = 0;

  constructor(origin: string, options: H1PoolOptions = {}) {
    const url = new URL(origin);
    if (url.protocol !== 'http:') throw new InvalidRequestError(`unsupported origin ${origin}`);
    this.hostname = url.hostname.replace(/^\[|\]$/g, '');
    this.port = url.port === '' ? 80 : Number(url.port);
    this.authority = url.host;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.keepAliveIdleMs = options.keepAliveIdleMs ?? 4_000;
    this.maxConnections = options.maxConnections ?? null;
    this.maxIdle = options.maxIdle ?? Infinity;
    noteTimeout(this.connectTimeoutMs);
    noteTimeout(this.keepAliveIdleMs);
  }

  get closed(): boolean {
    return this.closing;
  }

  /** Connections open or opening. */
  get size(): number {
    return this.conns.size;
  }

  /** Requests waiting for a connection. */
  get pending(): number {
    return this.queue.length;
  }

  dispatch(opts: H1DispatchOptions, handler: H1DispatchHandler): boolean {
    let req: H1Request;
    try {
      if (this.closing) throw new PoolClosedError(this.destroyed);
      req = this.buildRequest(opts, handler);
    } catch (err) {
      handler.onError?.(err as Error);
      return false;
    }
    this.enqueue(req);
    return true;
  }

  private buildRequest(opts: H1DispatchOptions, handler: H1DispatchHandler): H1Request {
    const method = opts.method;
    const path = opts.path;
    if (typeof method !== 'string' || method === '' || NOT_TOKEN.test(method))
      throw new InvalidRequestError('invalid method');
    if (typeof path !== 'string' || path === '' || BAD_PATH.test(path))
      throw new InvalidRequestError('invalid request path');
    let head = `${method} ${path} HTTP/1.1\r\n`;
    let hasHost = false;
    let declared = -1;
    let reset = opts.reset === true;
    const add = (name: string, value: string): void => {
      if (name === '' || NOT_TOKEN.test(name)) throw new InvalidRequestError('invalid header name');
      if (BAD_VALUE.test(value)) throw new InvalidRequestError(`invalid value for ${name}`);
      // Only a few names frame the message or the connection; compare lengths before case.
      const n = name.length;
      if (n === 4 || n === 6 || n === 7 || n === 10 || n === 14 || n === 17) {
        const lower = name.toLowerCase();
        if (lower === 'host') hasHost = true;
        else if (lower === 'content-length') {
          if (!/^[0-9]{1,15}$/.test(value)) throw new InvalidRequestError('invalid content-length');
          declared = Number(value);
          return;
        } else if (lower === 'connection') {
          const v = value.toLowerCase();
          if (v === 'close') reset = true;
          else if (v !== 'keep-alive') throw new InvalidRequestError('invalid connection header');
          return;
        } else if (
          lower === 'transfer-encoding' ||
          lower === 'keep-alive' ||
          lower === 'upgrade' ||
          lower === 'expect'
        ) {
          throw new InvalidRequestError(`invalid ${lower} header`);
        }
      }
      head += `${name}: ${value}\r\n`;
    };
    const headers = opts.headers;
    if (Array.isArray(headers)) {
      if (headers.length % 2 !== 0)
        throw new InvalidRequestError('headers must be name/value pairs');
      for (let i = 0; i < headers.length; i += 2) add(headers[i], headers[i + 1]);
    } else if (headers != null) {
      for (const name of Object.keys(headers)) {
        const value = headers[name];
        if (value === undefined) continue;
        if (Array.isArray(value)) for (const v of value) add(name, String(v));
        else add(name, String(value));
      }
    }
    if (!hasHost) head += `host: ${this.authority}\r\n`;

    let body: Buffer | null = null;
    let stream: StreamBody | null = null;
    let contentLength = -1;
    const raw = opts.body;
    if (raw == null) {
      if (declared > 0) throw new InvalidRequestError('content-length without a body');
      if (declared === 0 || EXPECTS_PAYLOAD.has(method)) head += 'content-length: 0\r\n';
    } else if (typeof raw === 'string' || raw instanceof Uint8Array) {
      body =
        typeof raw === 'string' ? Buffer.from(raw) : Buffer.isBuffer(raw) ? raw : toBuffer(raw);
      if (declared >= 0 && declared !== body.length)
        throw new InvalidRequestError('content-length does not match the body');
      head += `content-length: ${body.length}\r\n`;
      if (body.length === 0) body = null;
    } else if (
      typeof (raw as Readable).on === 'function' ||
      typeof (raw as AsyncIterable<Buffer>)[Symbol.asyncIterator] === 'function'
    ) {
      stream = raw as StreamBody;
      contentLength = declared;
      head += declared >= 0 ? `content-length: ${declared}\r\n` : 'transfer-encoding: chunked\r\n';
    } else {
      throw new InvalidRequestError('unsupported body type');
    }
    const upgrade = typeof opts.upgrade === 'string' && opts.upgrade !== '';
    if (upgrade) {
      if (BAD_VALUE.test(opts.upgrade!)) throw new InvalidRequestError('invalid upgrade');
      head += `connection: upgrade\r\nupgrade: ${opts.upgrade}\r\n\r\n`;
    } else {
      head += reset ? 'connection: close\r\n\r\n' : 'connection: keep-alive\r\n\r\n';
    }
    const headersTimeout = opts.headersTimeout ?? 300_000;
    const bodyTimeout = opts.bodyTimeout ?? 300_000;
    noteTimeout(headersTimeout);
    noteTimeout(bodyTimeout);
    return new H1Request(
      this,
      method,
      head,
      body,
      stream,
      contentLength,
      handler,
      headersTimeout,
      bodyTimeout,
      upgrade,
      IDEMPOTENT.has(method),
      reset || upgrade,
    );
  }

  private enqueue(req: H1Request): void {
    if (req.upgrade) {
      // Its socket becomes the tunnel's stream: a connection of its own, never a pooled one
      // (pooled connections read into a reused buffer, which a stream cannot).
      this.open(true).reserved = req;
      return;
    }
    const idle = this.idle;
    while (idle.length > 0) {
      const conn = idle.pop()!;
      if (!conn.closed) {
        conn.assign(req);
        return;
      }
    }
    this.queue.push(req);
    this.maybeConnect();
  }

  private maybeConnect(): void {
    if (this.connecting >= this.queue.length) return;
    if (this.maxConnections !== null && this.conns.size >= this.maxConnections) return;
    this.open();
  }

  private open(forUpgrade = false): Connection {
    const conn = new Connection(
      this,
      this.hostname,
      this.port,
      this.connectTimeoutMs,
      this.keepAliveIdleMs,
      forUpgrade,
    );
    this.conns.add(conn);
    this.connecting++;
    this.connectionsOpened++;
    return conn;
  }

  // ------------------------------------------------------------------ ConnectionOwner

  onConnected(conn: Connection): void {
    this.connecting--;
    if (conn.reserved !== null) {
      const req = conn.reserved;
      conn.reserved = null;
      if (!req.done) {
        conn.assign(req);
        return;
      }
    }
    if (this.queue.length > 0) conn.assign(this.queue.shift()!);
    else this.onReusable(conn, this.keepAliveIdleMs);
  }

  onConnectFailed(conn: Connection, err: Error): void {
    this.connecting--;
    this.conns.delete(conn);
    if (conn.reserved !== null) {
      const req = conn.reserved;
      conn.reserved = null;
      req.fail(err);
    } else {
      // Each failed attempt fails the oldest waiting request; when no connection is left or
      // on its way, every waiting request fails (the server is unreachable right now).
      this.queue.shift()?.fail(err);
      if (this.conns.size === 0) {
        const waiting = this.queue;
        this.queue = [];
        for (const req of waiting) req.fail(err);
      } else {
        this.maybeConnect();
      }
    }
    this.checkClosed();
  }

  onReusable(conn: Connection, idleMs: number): void {
    if (this.queue.length > 0) {
      conn.assign(this.queue.shift()!);
      return;
    }
    if (this.closing) {
      conn.destroy();
      return;
    }
    conn.setIdle(idleMs);
    this.idle.push(conn);
    if (this.idle.length > this.maxIdle) {
      if (this.maxIdle === 0) this.idle.shift()!.destroy();
      else if (this.trimTimer === null) {
        this.trimTimer = setTimeout(this.trimSurplus, SURPLUS_GRACE_MS);
        this.trimTimer.unref();
      }
    }
  }

  /** Closes the least recently used idle connections beyond maxIdle. */
  private readonly trimSurplus = (): void => {
    this.trimTimer = null;
    while (this.idle.length > this.maxIdle) this.idle.shift()!.destroy();
  };

  onClosed(conn: Connection): void {
    if (!this.conns.delete(conn)) return;
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    if (this.queue.length > 0) this.maybeConnect();
    this.checkClosed();
  }

  retryStale(req: H1Request): void {
    req.retried = true;
    if (this.destroyed) {
      req.fail(new PoolClosedError(true));
      return;
    }
    // A new connection: another idle one may be just as stale.
    this.open(req.upgrade).reserved = req;
  }

  dequeue(req: H1Request): void {
    const i = this.queue.indexOf(req);
    if (i !== -1) this.queue.splice(i, 1);
    this.checkClosed();
  }

  // ------------------------------------------------------------------ lifecycle

  private checkClosed(): void {
    if (!this.closing || this.conns.size > 0 || this.queue.length > 0) return;
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private stopTrimming(): void {
    if (this.trimTimer !== null) clearTimeout(this.trimTimer);
    this.trimTimer = null;
  }

  /** Takes no new requests; resolves once queued and in-flight ones are done. */
  close(): Promise<void> {
    this.closing = true;
    this.stopTrimming();
    for (const conn of this.idle.splice(0)) conn.destroy();
    return new Promise((resolve) => {
      this.closeWaiters.push(resolve);
      this.checkClosed();
    });
  }

  /** Fails every queued and in-flight request and closes every connection. */
  destroy(err?: Error): Promise<void> {
    this.closing = true;
    this.destroyed = true;
    this.stopTrimming();
    const reason = err ?? new PoolClosedError(true);
    const waiting = this.queue;
    this.queue = [];
    for (const req of waiting) req.fail(reason);
    for (const conn of this.idle.splice(0)) conn.destroy();
    for (const conn of [...this.conns]) {
      if (conn.req !== null) conn.failRequest(conn.req, reason);
      else conn.destroy();
    }
    return new Promise((resolve) => {
      this.closeWaiters.push(resolve);
      this.checkClosed();
    });
  }
}

function toBuffer(view: Uint8Array): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}
