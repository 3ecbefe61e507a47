import type { Dispatcher } from 'undici';
import { channels } from '../core/events.js';
import type { RequestContext } from '../core/context.js';
import { ProxyError, type ErrorCode } from '../core/errors.js';
import type { Handler } from '../core/filter.js';
import type { Template } from '../core/template.js';
import type { UpstreamGroup } from '../upstream/group.js';
import type { Host } from '../upstream/host.js';
import {
  buildClientResponseHeaders,
  buildUpstreamRequestHeaders,
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
  isTrustedPeer: (ctx: RequestContext) => boolean;
  log: (level: 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

class BodyTooLargeError extends Error {
  constructor() {
    super('request body exceeds maxBodySize');
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
    case 'ETIMEDOUT':
      return 'UPSTREAM_TIMEOUT';
    default:
      return 'UPSTREAM_FAILED';
  }
}

function hasBody(ctx: RequestContext): boolean {
  const headers = ctx.req.headers;
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0';
}

/**
 * Counts a body of unknown length as it streams and fails the upstream request past the limit,
 * so a chunked upload is cut at maxBodySize without being buffered.
 */
async function* limitBody(body: AsyncIterable<Buffer>, max: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > max) throw new BodyTooLargeError();
    yield chunk;
  }
}

/**
 * The terminal step for routes with an upstream: pick a host, stream the request to it through
 * its undici pool, and stream the response back with backpressure in both directions.
 */
export function createForwardHandler(options: ForwardOptions): Handler {
  return (ctx: RequestContext) => {
    const host = options.group.selectHost(ctx);
    if (host === undefined) {
      ctx.upstreamName = options.group.name;
      ctx.sendError('NO_HEALTHY_UPSTREAM');
      return;
    }
    new UpstreamExchange(ctx, host, options).start();
  };
}

/**
 * One request/response exchange with one upstream host. Implements undici's dispatch handler
 * (the raw-header variant, so headers are converted once, straight into what Node writes).
 */
class UpstreamExchange implements Dispatcher.DispatchHandler {
  private readonly ctx: RequestContext;
  private readonly host: Host;
  private readonly options: ForwardOptions;
  private abortUpstream: ((err?: Error) => void) | null = null;
  private done = false;
  private responseStarted = false;
  private resume: (() => void) | null = null;
  private sendTimer: NodeJS.Timeout | null = null;
  private readonly onDrain = () => {
    if (!this.done) this.resume?.();
  };

  constructor(ctx: RequestContext, host: Host, options: ForwardOptions) {
    this.ctx = ctx;
    this.host = host;
    this.options = options;
  }

  start(): void {
    const { ctx, host, options } = this;
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
      body = declared === undefined ? (limitBody(ctx.req, maxBody) as never) : ctx.req;
    }
    const target = options.rewriteTarget === null ? ctx.upstreamTarget : options.rewriteTarget(ctx);
    ctx.upstreamTarget = target;
    const headers = buildUpstreamRequestHeaders(ctx, {
      trusted: options.isTrustedPeer(ctx),
      host: options.hostHeader === null ? ctx.host : options.hostHeader(ctx),
      ops: options.requestHeaderOps,
    });
    host.activeRequests++;
    host.totalRequests++;
    ctx.upstreamStartTime = performance.now();
    ctx.clientResponse.once('close', this.onClientClose);
    if (body !== null && options.sendTimeoutMs > 0) this.armSendTimer();
    try {
      host.pool.dispatch(
        {
          path: target,
          method: ctx.method as Dispatcher.HttpMethod,
          headers,
          body,
          headersTimeout: options.readTimeoutMs,
          bodyTimeout: options.readTimeoutMs,
          // A request we stream from a client cannot be replayed; never let undici retry it.
          idempotent: false,
          blocking: false,
        },
        this,
      );
    } catch (err) {
      this.fail(err as Error);
    }
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
    if (this.done) abort(new Error('client closed the connection'));
  }

  onBodySent(): void {
    if (this.sendTimer !== null) this.sendTimer.refresh();
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const ctx = this.ctx;
    if (this.done) return false;
    if (status < 200) {
      if (status === 103) this.forwardEarlyHints(rawHeaders);
      return true;
    }
    this.responseStarted = true;
    ctx.upstreamHeadersTime = performance.now();
    this.clearSendTimer();
    const headers = buildClientResponseHeaders(ctx, rawHeaders, this.host);
    ctx.writeHead(status, headers);
    this.resume = resume;
    return true;
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
    const flowing = this.ctx.res.write(chunk);
    if (!flowing) this.ctx.res.once('drain', this.onDrain);
    return flowing;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    if (this.done) return;
    this.finish();
    const res = this.ctx.res;
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
    if (this.done) return;
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
    this.host.activeRequests--;
    this.clearSendTimer();
    this.resume = null;
  }

  private clearSendTimer(): void {
    if (this.sendTimer !== null) {
      clearTimeout(this.sendTimer);
      this.sendTimer = null;
    }
  }
}
