import { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import { channels } from '../core/events.js';
import type { RequestContext } from '../core/context.js';
import {
  announcesBody,
  endWithSerializedHead,
  nodeResponseOf,
  onceClosed,
  type SerializedHeadResponse,
} from '../core/http.js';
import { errorBody, ProxyError, type ErrorCode } from '../core/errors.js';
import type { Handler } from '../core/filter.js';
import type { Template } from '../core/template.js';
import type { UpstreamGroup } from '../upstream/group.js';
import { BodyTooLargeError, limitBody } from './body-limit.js';
import type { Host } from '../upstream/host.js';
import { H1Pool, ZERO_COPY_MIN_BYTES } from '../upstream/h1/index.js';
import {
  buildClientResponseHeaders,
  buildUpstreamRequestHeaders,
  serializeClientResponseFields,
  serializeHeadFields,
  type CompiledHeaderOps,
} from './headers.js';

export interface ForwardOptions {
  group: UpstreamGroup;
  /** Computes the path+query sent upstream from the client's; null when unchanged. */
  rewriteTarget: ((ctx: RequestContext) => string) | null;
  hostHeader: Template | null;
  requestHeaderOps: CompiledHeaderOps | null;
  readTimeoutMs: number;
  sendTimeoutMs: number;
  /**
   * A route's `timeouts.connect`: how long a request may wait for a connection to its server
   * (opening one or waiting for a free one). null: the pool's own connectTimeout alone.
   */
  connectTimeoutMs: number | null;
  isTrustedPeer: (ctx: RequestContext) => boolean;
  log: (level: 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

/** Bytes a response may buffer for a slow client before the upstream is paused. */
const CLIENT_BUFFER_LIMIT = 256 * 1024;

/** An upstream body chunk at least this big means large responses flow through this process. */
const LARGE_CHUNK = 32 * 1024;
let firstLargeBody: (() => void) | null = null;

/**
 * Runs `hook` once, at the first large upstream body chunk. The CLI uses it to raise glibc's
 * trim threshold (server/malloc-tuning.ts) only in processes that move large bodies, where it
 * saves page faults; processes serving small responses keep the smaller footprint.
 */
export function onFirstLargeBody(hook: () => void): void {
  firstLargeBody = hook;
}

class UpstreamConnectTimeoutError extends Error {
  readonly code = 'SY_CONNECT_TIMEOUT';
  constructor() {
    super('no connection to the upstream within the route connect timeout');
  }
}

class UpstreamSendTimeoutError extends Error {
  readonly code = 'SY_SEND_TIMEOUT';
  constructor() {
    super('upstream stopped accepting the request body');
  }
}

/** Classifies an upstream failure into the client-facing code (never shown: only the status). */
function errorCodeFor(err: Error & { code?: string }): ErrorCode {
  if (err instanceof BodyTooLargeError) return 'BODY_TOO_LARGE';
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'SY_SEND_TIMEOUT':
    case 'SY_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return 'UPSTREAM_TIMEOUT';
    default:
      return 'UPSTREAM_FAILED';
  }
}

function hasBody(ctx: RequestContext): boolean {
  const headers = ctx.req.headers;
  if (headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined)
    return announcesBody(headers);
  // HTTP/2 frames bodies itself: a stream not ended with its headers has one (gRPC, uploads).
  return (
    ctx.req.httpVersionMajor === 2 && !(ctx.req as unknown as H2Request).stream.endAfterHeaders
  );
}

interface H2Request {
  stream: { endAfterHeaders: boolean };
}

/** Methods whose requests may be sent twice (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Why an attempt failed, in the terms of `retries.retryOn`. */
type FailureKind = 'connect-failure' | 'reset' | 'timeout';

/** Aborts an attempt whose response is thrown away because the request is retried. */
class DiscardedAttemptError extends Error {
  constructor() {
    super('upstream response discarded for a retry');
  }
}

/**
 * The circuit breaker: past maxRequests in flight or maxPending waiting for a connection, a
 * request is answered 503 with Retry-After at once instead of joining an unbounded queue.
 */
function shedByBreaker(ctx: RequestContext, group: UpstreamGroup): boolean {
  const limits = group.breaker!;
  const state = group.state;
  const reason =
    state.activeRequests >= limits.maxRequests
      ? 'maxRequests'
      : state.pendingRequests >= limits.maxPending
        ? 'maxPending'
        : null;
  if (reason === null) return false;
  state.shedRequests++;
  ctx.upstreamName = group.name;
  if (channels.upstreamShed.hasSubscribers)
    channels.upstreamShed.publish({ ctx, upstream: group.name, reason });
  ctx.respond(
    503,
    {
      'content-type': 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      'retry-after': '1',
    },
    errorBody('NO_HEALTHY_UPSTREAM', ctx.requestId),
  );
  return true;
}

/**
 * The terminal step for routes with an upstream: pick a host, stream the request to it through
 * its undici pool, and stream the response back with backpressure in both directions.
 */
export function createForwardHandler(options: ForwardOptions): Handler {
  const group = options.group;
  return (ctx: RequestContext) => {
    if (group.breaker !== null && shedByBreaker(ctx, group)) return;
    const host = group.selectHost(ctx);
    if (host === undefined) {
      ctx.upstreamName = options.group.name;
      ctx.sendError('NO_HEALTHY_UPSTREAM');
      return;
    }
    new UpstreamExchange(ctx, host, options).start();
  };
}

/**
 * One request/response exchange with the upstream. Implements undici's dispatch handler
 * (the raw-header variant, so headers are converted once, straight into what Node writes).
 *
 * With `retries`, a failed attempt is re-dispatched (same handler, same headers, a replayable
 * body) to another host from onError/onHeaders, always before any response byte reached the
 * client. Without retries, health or a breaker, the extra work is a few `null` comparisons.
 */
class UpstreamExchange implements Dispatcher.DispatchHandler {
  private readonly ctx: RequestContext;
  /** The host of the current attempt (changes when the request is retried). */
  private host: Host;
  private readonly group: UpstreamGroup;
  private readonly options: ForwardOptions;
  private abortUpstream: ((err?: Error) => void) | null = null;
  private done = false;
  private responseStarted = false;
  /** Attempts left; 0 unless retries are on and the body can be replayed. */
  private attemptsLeft: number;
  /** The current attempt counts in host.activeRequests (and the breaker's counts). */
  private attemptActive = false;
  /** The current attempt reached a connection (undici called onConnect). */
  private connected = false;
  /** The current attempt counts in the breaker's pendingRequests. */
  private pending = false;
  /** The request counts in the breaker's activeRequests. */
  private counted = false;
  /** Set while an attempt is aborted on purpose, so its onError is ignored. */
  private discarding = false;
  private attemptStart = 0;
  private target = '';
  private headers: string[] | null = null;
  private body: Dispatcher.DispatchOptions['body'] = null;
  private resume: (() => void) | null = null;
  private sendTimer: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private readonly onConnectTimeout = () => {
    this.connectTimer = null;
    if (this.done || this.connected) return;
    // The attempt may still get its connection later (onConnect then aborts it, as the request
    // is done); nothing was sent, but it is not retried: the route's budget is spent.
    this.attemptsLeft = 0;
    this.onError(new UpstreamConnectTimeoutError());
  };
  /**
   * A response head held back until the end of the upstream read it came in (onReadDone), with
   * the small body chunks that followed it in that read. When the response ends in the same read
   * (most small responses), head and body leave in one serialized write (endWithSerializedHead:
   * no header object, no header checks, one corked write); otherwise the head is written the
   * usual way at the end of the read. Only on Switchyard's own upstream connections, which say
   * when a read is over, and for plain HTTP/1.1 responses no filter wraps (head hooks run on
   * the head at the end: endDeferred).
   */
  private deferredStatus = 0;
  private deferredRaw: Buffer[] | null = null;
  private deferredBody: Buffer[] | null = null;
  private deferredBytes = 0;
  /** A gRPC trailers-only head held back until we know whether a body follows (see onHeaders). */
  private heldHead: { status: number; headers: Record<string, string | string[]> } | null = null;
  private readonly onDrain = () => {
    if (!this.done) this.resume?.();
  };

  constructor(ctx: RequestContext, host: Host, options: ForwardOptions) {
    this.ctx = ctx;
    this.host = host;
    this.group = options.group;
    this.options = options;
    this.attemptsLeft = this.group.retries === null ? 0 : this.group.retries.attempts;
  }

  start(): void {
    const { ctx, host } = this;
    ctx.upstreamName = host.upstream;
    ctx.upstreamServer = host.origin;
    const maxBody = ctx.listener.maxBodySize;
    let body: Dispatcher.DispatchOptions['body'] = null;
    if (hasBody(ctx)) {
      const declared = ctx.req.headers['content-length'];
      if (declared !== undefined && Number(declared) > maxBody) {
        ctx.sendError('BODY_TOO_LARGE');
        return;
      }
      if (
        this.attemptsLeft > 0 &&
        declared !== undefined &&
        Number(declared) <= this.group.retries!.maxBodySize
      ) {
        // Small bodies are read whole first, so another attempt can send them again.
        onceClosed(ctx.clientResponse, this.onClientClose);
        this.bufferBody();
        return;
      }
      // A streamed body is consumed by the first attempt: it cannot be retried.
      this.attemptsLeft = 0;
      body = declared === undefined ? (limitBody(ctx.req, maxBody) as never) : ctx.req;
    }
    onceClosed(ctx.clientResponse, this.onClientClose);
    this.begin(body);
  }

  private bufferBody(): void {
    const req = this.ctx.req;
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
    });
    req.once('end', () => {
      if (!this.done) this.begin(Buffer.concat(chunks, size));
    });
  }

  private begin(body: Dispatcher.DispatchOptions['body']): void {
    const { ctx, options, group } = this;
    const target = options.rewriteTarget === null ? ctx.upstreamTarget : options.rewriteTarget(ctx);
    ctx.upstreamTarget = target;
    this.target = target;
    this.headers = buildUpstreamRequestHeaders(ctx, {
      trusted: options.isTrustedPeer(ctx),
      // An HTTP/1.0 client may send no Host: the upstream then gets its own authority.
      host: options.hostHeader === null ? ctx.host || this.host.authority : options.hostHeader(ctx),
      ops: options.requestHeaderOps,
    });
    this.body = body;
    if (group.breaker !== null) {
      group.state.activeRequests++;
      this.counted = true;
    }
    if (group.retries !== null) group.state.depositRetryToken(group.retries.budget);
    if (body !== null && !Buffer.isBuffer(body) && options.sendTimeoutMs > 0) this.armSendTimer();
    this.dispatch();
  }

  /** Sends the current attempt to `this.host`. */
  private dispatch(): void {
    const { ctx, host, options, group } = this;
    host.activeRequests++;
    host.totalRequests++;
    this.attemptActive = true;
    this.connected = false;
    if (group.breaker !== null) {
      group.state.pendingRequests++;
      this.pending = true;
    }
    if (group.latency !== null) this.attemptStart = group.clock.now();
    ctx.upstreamStartTime = performance.now();
    if (options.connectTimeoutMs !== null) {
      if (this.connectTimer !== null) clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(this.onConnectTimeout, options.connectTimeoutMs);
    }
    try {
      host.pool.dispatch(
        {
          path: this.target,
          method: ctx.method as Dispatcher.HttpMethod,
          headers: this.headers!,
          body: this.body,
          headersTimeout: options.readTimeoutMs,
          bodyTimeout: options.readTimeoutMs,
          // Retries are decided here, with the proxy's rules; never let undici retry.
          idempotent: false,
          blocking: false,
        },
        this,
      );
    } catch (err) {
      this.onError(err as Error);
    }
  }

  /** Ends the current attempt's share of the counters. */
  private releaseAttempt(): void {
    if (!this.attemptActive) return;
    this.attemptActive = false;
    this.host.activeRequests--;
    if (this.pending) {
      this.pending = false;
      this.group.state.pendingRequests--;
    }
  }

  /** Whether a failure of this kind may be retried for this request (attempts left aside). */
  private mayRetry(kind: FailureKind | number): boolean {
    const retries = this.group.retries!;
    // Nothing reached the server: safe for any method.
    if (kind === 'connect-failure') return retries.connectFailure;
    if (!IDEMPOTENT.has(this.ctx.method)) return false;
    if (kind === 'reset') return retries.reset;
    if (kind === 'timeout') return retries.timeout;
    return retries.statuses.has(kind);
  }

  /**
   * Moves the request to another host: never the one that just failed, only within the retry
   * budget, and only while no response byte went to the client. False when it cannot.
   */
  private retry(kind: FailureKind | number): boolean {
    const ctx = this.ctx;
    const failed = this.host;
    const next = this.group.selectHost(ctx, failed);
    if (next === undefined || !this.group.state.withdrawRetryToken()) return false;
    const abort = this.abortUpstream;
    this.abortUpstream = null;
    this.releaseAttempt();
    if (abort !== null) {
      // Throw the failed attempt's response away; its onError arrives synchronously.
      this.discarding = true;
      abort(new DiscardedAttemptError());
      this.discarding = false;
    }
    this.attemptsLeft--;
    ctx.retries++;
    if (channels.upstreamRetry.hasSubscribers)
      channels.upstreamRetry.publish({
        ctx,
        upstream: this.group.name,
        server: failed.origin,
        next: next.origin,
        attempt: ctx.retries,
        reason: String(kind),
      });
    this.host = next;
    next.totalRetries++;
    ctx.upstreamServer = next.origin;
    this.dispatch();
    return true;
  }

  private readonly onClientClose = () => {
    if (this.done) return;
    // The client went away before the response ended: cancel the upstream request.
    this.finish();
    this.abortUpstream?.(new Error('client closed the connection'));
  };

  private armSendTimer(): void {
    const timeout = this.options.sendTimeoutMs;
    this.sendTimer = setTimeout(() => {
      this.sendTimer = null;
      if (this.done || this.responseStarted) return;
      const req = this.ctx.req;
      // Only the upstream is to blame when the client's data is waiting to be sent.
      if (!req.readableEnded && (req.readableLength > 0 || req.isPaused())) {
        this.abortUpstream?.(new UpstreamSendTimeoutError());
      } else if (!req.readableEnded) {
        this.armSendTimer();
      }
    }, timeout);
    this.sendTimer.unref();
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    this.connected = true;
    this.clearConnectTimer();
    if (this.pending) {
      this.pending = false;
      this.group.state.pendingRequests--;
    }
    if (this.done) abort(new Error('client closed the connection'));
  }

  onBodySent(): void {
    if (this.sendTimer !== null) this.sendTimer.refresh();
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const ctx = this.ctx;
    if (this.done) return false;
    if (status < 200) {
      if (status === 103) {
        // Early hints reach the client: from here on the request can no longer be retried.
        this.attemptsLeft = 0;
        this.forwardEarlyHints(rawHeaders);
      }
      return true;
    }
    const group = this.group;
    if (group.latency !== null)
      group.latency.observe!(this.host, group.clock.now() - this.attemptStart, false);
    if (group.passive !== null) group.passive.onResponse(this.host, status);
    if (status >= 500) {
      this.host.totalFailures++;
      if (this.attemptsLeft > 0 && this.mayRetry(status) && this.retry(status)) return false;
    }
    this.responseStarted = true;
    ctx.upstreamHeadersTime = performance.now();
    this.clearSendTimer();
    this.resume = resume;
    if (
      group.sticky === null &&
      status !== 204 &&
      status !== 304 &&
      ctx.res === ctx.clientResponse &&
      ctx.method !== 'HEAD' &&
      (ctx.res as Partial<SerializedHeadResponse>)[endWithSerializedHead] !== undefined &&
      this.host.pool instanceof H1Pool
    ) {
      this.deferredStatus = status;
      this.deferredRaw = rawHeaders;
      return true;
    }
    this.writeResponseHead(status, rawHeaders);
    return true;
  }

  private writeResponseHead(status: number, rawHeaders: Buffer[]): void {
    const ctx = this.ctx;
    const group = this.group;
    const headers = buildClientResponseHeaders(ctx, rawHeaders, this.host);
    if (group.sticky !== null) group.sticky.pin(ctx, this.host, headers);
    if (ctx.req.httpVersionMajor === 2 && headers['grpc-status'] !== undefined) {
      // A gRPC "trailers-only" response (an error status and no message) is one HEADERS frame
      // with END_STREAM: grpc-status in the head. Written now, the head would go out without
      // END_STREAM and clients would take it as initial metadata followed by no status; so it
      // waits for the upstream's end and leaves together with it.
      this.heldHead = { status, headers: headers as Record<string, string | string[]> };
      return;
    }
    ctx.writeHead(status, headers);
  }

  /** The read that brought a deferred head is over: the head (and its chunk) go out now. */
  onReadDone(): void {
    if (this.deferredRaw !== null && !this.done) this.flushDeferred();
  }

  private flushDeferred(): boolean {
    const raw = this.deferredRaw!;
    const body = this.deferredBody;
    this.deferredRaw = null;
    this.deferredBody = null;
    this.deferredBytes = 0;
    this.writeResponseHead(this.deferredStatus, raw);
    if (body === null) return true;
    // At the end of the response (done) the chunks only have to be written; mid-way they go
    // through onData for its backpressure.
    let more = true;
    for (const chunk of body) more = this.done ? this.ctx.res.write(chunk) : this.onData(chunk);
    return more;
  }

  /** The whole response came in one read: one serialized write, or the usual way if declined. */
  private endDeferred(trailers: string[] | Buffer[] | null): boolean {
    const ctx = this.ctx;
    if (trailers !== null && trailers.length > 0) {
      this.flushDeferred();
      return false;
    }
    const chunks = this.deferredBody;
    const body =
      chunks === null ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const length = body === undefined ? 0 : body.length;
    const res = ctx.res as unknown as SerializedHeadResponse;
    if (ctx.responseHeadHooks === null) {
      const fields = serializeClientResponseFields(ctx, this.deferredRaw!, this.host, length);
      if (fields !== null && res[endWithSerializedHead](this.deferredStatus, fields, body))
        return this.endedDeferred(this.deferredStatus);
      this.flushDeferred();
      return false;
    }
    // Hooks shape the head (a route's responseHeaders, rateLimit's fields): they run once, here,
    // and the head they made leaves in the one write when it can, else the usual way.
    const head = ctx.runHeadHooks(
      this.deferredStatus,
      buildClientResponseHeaders(ctx, this.deferredRaw!, this.host),
    );
    head.headers['x-request-id'] = ctx.requestId;
    const fields = serializeHeadFields(head.status, head.headers, length);
    if (fields !== null && res[endWithSerializedHead](head.status, fields, body))
      return this.endedDeferred(head.status);
    this.deferredRaw = null;
    this.deferredBody = null;
    this.deferredBytes = 0;
    ctx.writeFinalHead(head.status, head.headers);
    if (body !== undefined) ctx.res.write(body);
    return false;
  }

  private endedDeferred(status: number): true {
    this.deferredRaw = null;
    this.deferredBody = null;
    this.deferredBytes = 0;
    this.ctx.status = status;
    return true;
  }

  /** Writes a held gRPC head; with `end`, as a single HEADERS frame that ends the stream. */
  private writeHeldHead(end: boolean): void {
    const held = this.heldHead!;
    this.heldHead = null;
    const res = this.ctx.res as unknown as {
      writeHead: (status: number, headers: Record<string, string | string[]>) => unknown;
      setHeader: (name: string, value: string | string[]) => unknown;
      statusCode: number;
      end: () => void;
    };
    if (!end) {
      this.ctx.writeHead(held.status, held.headers);
      return;
    }
    // node's HTTP/2 compatibility response sets END_STREAM on the head only when end() writes
    // it: so the head (after the context's hooks) is stored as headers, and end() sends both.
    res.writeHead = (status, headers) => {
      res.statusCode = status;
      for (const name of Object.keys(headers)) res.setHeader(name, headers[name]);
      return res;
    };
    try {
      this.ctx.writeHead(held.status, held.headers);
    } finally {
      delete (res as { writeHead?: unknown }).writeHead;
    }
    res.end();
  }

  private forwardEarlyHints(rawHeaders: Buffer[]): void {
    const res = this.ctx.clientResponse as unknown as {
      writeEarlyHints?: (hints: Record<string, string | string[]>) => void;
    };
    const links: string[] = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (rawHeaders[i].toString('latin1').toLowerCase() === 'link')
        links.push(rawHeaders[i + 1].toString('latin1'));
    }
    if (links.length > 0 && typeof res.writeEarlyHints === 'function')
      res.writeEarlyHints({ link: links });
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false;
    if (this.deferredRaw !== null) {
      // Small chunks are the connection's copies and may be kept; a large one is its read
      // buffer, which must be let go of (chunkReleased) for the next read to reuse it.
      const bytes = this.deferredBytes + chunk.length;
      if (chunk.length < ZERO_COPY_MIN_BYTES && bytes <= ZERO_COPY_MIN_BYTES) {
        (this.deferredBody ??= []).push(chunk);
        this.deferredBytes = bytes;
        return true;
      }
      // Past that: the response streams the usual way.
      this.flushDeferred();
    }
    if (firstLargeBody !== null && chunk.length >= LARGE_CHUNK) {
      const hook = firstLargeBody;
      firstLargeBody = null;
      hook();
    }
    const res = this.ctx.res;
    if (this.heldHead !== null) this.writeHeldHead(false);
    if (res.write(chunk)) return true;
    // node's writable says "full" past 16 KiB; pausing undici then costs an event-loop round
    // trip per 64 KiB chunk. Keep reading until a bounded amount is buffered for this client.
    if (((res as { writableLength?: number }).writableLength ?? Infinity) < CLIENT_BUFFER_LIMIT) {
      return true;
    }
    res.once('drain', this.onDrain);
    return false;
  }

  /**
   * Whether the chunk just given to onData is out of reach: it went straight to a plain client
   * socket and on to the kernel. Then the upstream connection may read into its memory again.
   * Anything else (a filter wrapping the response, TLS, HTTP/2, data still queued) keeps it.
   */
  chunkReleased(): boolean {
    const ctx = this.ctx;
    let res: unknown = ctx.res;
    if (res !== ctx.clientResponse) return false;
    const standIn = (res as { [nodeResponseOf]?: ServerResponse | null })[nodeResponseOf];
    if (standIn !== undefined) res = standIn;
    if (!(res instanceof ServerResponse)) return false;
    const socket = res.socket as (Socket & { _handle?: { writeQueueSize?: number } }) | null;
    if (socket === null || socket instanceof TLSSocket) return false;
    // ServerResponse corks the socket on each write until the next tick; flush now, so the
    // kernel has the chunk before the connection decides where its next read goes.
    if (socket.writableCorked > 0) socket.uncork();
    return res.writableLength === 0 && socket._handle?.writeQueueSize === 0;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    if (this.done) return;
    this.finish();
    if (this.deferredRaw !== null && this.endDeferred(trailers)) return;
    const res = this.ctx.res;
    if (this.heldHead !== null) {
      const empty =
        trailers === null ||
        (Array.isArray(trailers) ? trailers.length === 0 : Object.keys(trailers).length === 0);
      if (empty) {
        this.writeHeldHead(true);
        return;
      }
      this.writeHeldHead(false);
    }
    if (trailers !== null && !Array.isArray(trailers)) {
      // undici's HTTP/2 client hands trailers over as an object (e.g. gRPC's grpc-status).
      trailers = Object.entries(trailers as Record<string, string | string[]>).flatMap(
        ([name, value]) => [name, Array.isArray(value) ? value.join(', ') : String(value)],
      );
    }
    if (trailers !== null && trailers.length > 0) {
      const out: Record<string, string> = {};
      for (let i = 0; i < trailers.length; i += 2)
        out[trailers[i].toString()] = trailers[i + 1].toString();
      try {
        res.addTrailers(out);
      } catch {
        // Trailers only travel on chunked responses; drop them otherwise.
      }
    }
    res.end();
  }

  onError(err: Error): void {
    if (this.done || this.discarding) return;
    const group = this.group;
    if (!(err instanceof BodyTooLargeError)) {
      const host = this.host;
      host.totalFailures++;
      if (group.passive !== null) group.passive.onFailure(host);
      if (group.latency !== null)
        group.latency.observe!(host, group.clock.now() - this.attemptStart, true);
      if (this.attemptsLeft > 0 && !this.responseStarted) {
        const code = (err as Error & { code?: string }).code;
        const kind: FailureKind = !this.connected
          ? 'connect-failure'
          : code === 'UND_ERR_HEADERS_TIMEOUT'
            ? 'timeout'
            : 'reset';
        if (this.mayRetry(kind)) {
          if (channels.upstreamAttempt.hasSubscribers)
            channels.upstreamAttempt.publish({ ctx: this.ctx, server: host.origin, error: err });
          this.abortUpstream = null;
          if (this.retry(kind)) return;
        }
      }
    }
    this.fail(err);
  }

  private fail(err: Error): void {
    this.finish();
    const ctx = this.ctx;
    const code = errorCodeFor(err);
    if (code !== 'BODY_TOO_LARGE' && channels.upstreamAttempt.hasSubscribers) {
      channels.upstreamAttempt.publish({ ctx, server: this.host.origin, error: err });
    }
    if (code === 'UPSTREAM_FAILED' && !(err instanceof ProxyError)) {
      this.options.log('warn', 'upstream request failed', {
        requestId: ctx.requestId,
        upstream: this.host.upstream,
        server: this.host.origin,
        error: (err as Error & { code?: string }).code ?? err.message,
      });
    }
    ctx.sendError(code);
  }

  private finish(): void {
    this.done = true;
    this.releaseAttempt();
    if (this.counted) {
      this.counted = false;
      this.group.state.activeRequests--;
    }
    this.clearSendTimer();
    this.clearConnectTimer();
    this.resume = null;
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  private clearSendTimer(): void {
    if (this.sendTimer !== null) {
      clearTimeout(this.sendTimer);
      this.sendTimer = null;
    }
  }
}
