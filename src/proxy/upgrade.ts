import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { OutgoingHeaders, RequestContext } from '../core/context.js';
import { UPGRADE_STATE, type UpgradeIO } from '../core/dispatcher.js';
import type { ErrorCode } from '../core/errors.js';
import type { Handler } from '../core/filter.js';
import type { Template } from '../core/template.js';
import type { UpstreamGroup } from '../upstream/group.js';
import type { Host } from '../upstream/host.js';
import {
  buildClientResponseHeaders,
  buildUpstreamRequestHeaders,
  type CompiledHeaderOps,
} from './headers.js';

export interface UpgradeOptions {
  group: UpstreamGroup;
  rewriteTarget: ((ctx: RequestContext) => string) | null;
  hostHeader: Template | null;
  requestHeaderOps: CompiledHeaderOps | null;
  /** Time allowed for the upstream's answer to the upgrade request. */
  readTimeoutMs: number;
  /** A tunnel with no byte in either direction for this long is closed. 0: never. */
  idleTimeoutMs: number;
  isTrustedPeer: (ctx: RequestContext) => boolean;
  log: (level: 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Response fields of a 101 that are not passed back (identity) or that we write ourselves. */
const DROPPED_101_FIELDS = new Set(['server', 'x-powered-by', 'x-request-id', 'content-length']);
/** Fields of the upstream's 101 that mean something on an RFC 8441 200 answer. */
const H2_WS_FIELDS = new Set(['sec-websocket-protocol', 'sec-websocket-extensions']);

/**
 * The terminal step for WebSocket upgrades on routes with an upstream: after the route's filters
 * (access control applies to upgrades too), open an HTTP/1.1 Upgrade to a host through its pool
 * (so upstream TLS settings apply), and on 101 join the two connections byte for byte.
 * HTTP/2 clients (RFC 8441 extended CONNECT) get a 200 on their stream, which is then joined to
 * the HTTP/1.1 upstream connection the same way.
 */
export function createUpgradeHandler(options: UpgradeOptions): Handler {
  return (ctx: RequestContext) => {
    const io = ctx.getState<UpgradeIO>(UPGRADE_STATE);
    const host = options.group.selectHost(ctx);
    ctx.upstreamName = options.group.name;
    if (io === undefined) {
      ctx.sendError('INTERNAL');
      return;
    }
    if (host === undefined) {
      ctx.sendError('NO_HEALTHY_UPSTREAM');
      return;
    }
    new WebSocketTunnel(ctx, host, io, options).start();
  };
}

class WebSocketTunnel implements Dispatcher.DispatchHandler {
  private readonly ctx: RequestContext;
  private readonly host: Host;
  private readonly io: UpgradeIO;
  private readonly options: UpgradeOptions;
  private abort: ((err?: Error) => void) | null = null;
  private done = false;
  /** Set for HTTP/2 clients: the key we made up for the HTTP/1.1 upstream. */
  private expectedAccept: string | null = null;

  constructor(ctx: RequestContext, host: Host, io: UpgradeIO, options: UpgradeOptions) {
    this.ctx = ctx;
    this.host = host;
    this.io = io;
    this.options = options;
  }

  start(): void {
    const { ctx, host, options } = this;
    ctx.upstreamServer = host.origin;
    const target = options.rewriteTarget === null ? ctx.upstreamTarget : options.rewriteTarget(ctx);
    ctx.upstreamTarget = target;
    const headers = buildUpstreamRequestHeaders(ctx, {
      trusted: options.isTrustedPeer(ctx),
      host: options.hostHeader === null ? ctx.host : options.hostHeader(ctx),
      ops: options.requestHeaderOps,
    });
    if (this.io.http2) {
      // RFC 8441 §5: an HTTP/2 WebSocket has no key; the HTTP/1.1 side needs one.
      const key = randomBytes(16).toString('base64');
      this.expectedAccept = createHash('sha1')
        .update(key + WS_GUID)
        .digest('base64');
      headers.push('sec-websocket-key', key);
    }
    host.activeRequests++;
    host.totalRequests++;
    this.io.socket.once('close', this.onClientClose);
    try {
      host.pool.dispatch(
        {
          path: target,
          method: 'GET',
          headers,
          upgrade: 'websocket',
          headersTimeout: options.readTimeoutMs,
          bodyTimeout: options.readTimeoutMs,
          idempotent: false,
        },
        this,
      );
    } catch (err) {
      this.onError(err as Error);
    }
  }

  private readonly onClientClose = () => {
    if (this.done) return;
    this.finish();
    this.abort?.(new Error('client closed the connection'));
  };

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    if (this.done) abort(new Error('client closed the connection'));
  }

  /** The upstream refused the upgrade: pass its answer back as a normal response. */
  onHeaders(status: number, rawHeaders: Buffer[]): boolean {
    if (this.done) return false;
    if (status < 200) return true;
    const headers = buildClientResponseHeaders(this.ctx, rawHeaders, this.host);
    this.ctx.writeHead(status, headers);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false;
    this.ctx.res.write(chunk);
    return true;
  }

  onComplete(): void {
    if (this.done) return;
    this.finish();
    this.ctx.res.end();
  }

  onError(err: Error): void {
    if (this.done) return;
    this.finish();
    const code: ErrorCode =
      (err as Error & { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT' ||
      (err as Error & { code?: string }).code === 'UND_ERR_CONNECT_TIMEOUT'
        ? 'UPSTREAM_TIMEOUT'
        : 'UPSTREAM_FAILED';
    this.options.log('warn', 'websocket upgrade to upstream failed', {
      requestId: this.ctx.requestId,
      upstream: this.host.upstream,
      server: this.host.origin,
      error: (err as Error & { code?: string }).code ?? err.message,
    });
    this.ctx.sendError(code);
  }

  onUpgrade(status: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    const { ctx, io } = this;
    if (this.done) {
      upstream.destroy();
      return;
    }
    this.finish();
    io.socket.off('close', this.onClientClose);
    const raw = (rawHeaders ?? []).map((h) => (typeof h === 'string' ? h : h.toString('latin1')));
    if (io.http2) {
      const headers: OutgoingHeaders = { 'x-request-id': ctx.requestId };
      let accept = '';
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toLowerCase();
        if (name === 'sec-websocket-accept') accept = raw[i + 1];
        else if (H2_WS_FIELDS.has(name)) headers[name] = raw[i + 1];
      }
      if (accept !== this.expectedAccept) {
        upstream.destroy();
        ctx.sendError('UPSTREAM_FAILED');
        return;
      }
      ctx.status = 200;
      ctx.res.writeHead(200, headers);
    } else {
      let head = `HTTP/1.1 ${status} Switching Protocols\r\n`;
      for (let i = 0; i < raw.length; i += 2) {
        if (DROPPED_101_FIELDS.has(raw[i].toLowerCase())) continue;
        head += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
      head += `X-Request-Id: ${ctx.requestId}\r\n\r\n`;
      ctx.status = status;
      io.detach?.();
      io.socket.write(head);
    }
    if (io.head.length > 0) upstream.write(io.head);
    joinStreams(io.socket, upstream, this.options.idleTimeoutMs);
  }

  private finish(): void {
    this.done = true;
    this.host.activeRequests--;
  }
}

/**
 * Copies bytes both ways with backpressure (pipe), forwards a half-close (FIN) to the other side,
 * tears both down on an error, and closes an idle tunnel.
 */
export function joinStreams(client: Duplex, upstream: Duplex, idleTimeoutMs: number): void {
  const destroyBoth = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', destroyBoth);
  upstream.on('error', destroyBoth);
  // Once either side is fully gone, nothing more can be delivered to it: end the other.
  client.once('close', () => upstream.end());
  upstream.once('close', () => {
    if (!client.destroyed) client.end();
  });
  if (idleTimeoutMs > 0) {
    // Every byte in either direction is read from or written to the upstream socket, so its
    // inactivity timer covers the whole tunnel.
    const socketLike = upstream as Duplex & { setTimeout?: (ms: number, cb: () => void) => void };
    socketLike.setTimeout?.(idleTimeoutMs, destroyBoth);
  }
  client.pipe(upstream);
  upstream.pipe(client);
  client.resume();
}
