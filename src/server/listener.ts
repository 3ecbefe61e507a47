import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenerConfig } from '../config/types.js';
import type { ListenerInfo } from '../core/context.js';
import type { RequestDispatcher } from '../core/dispatcher.js';
import { announcesBody, onceClosed } from '../core/http.js';
import {
  quickAnswerer,
  type QuickAnswerer,
  type QuickAnswerServer,
  type QuickRequest,
  type QuickResponse,
} from '../core/quick-answer.js';
import { acceptUpgrade, createListenerServer } from './http2.js';
import {
  BodyRateGuard,
  checkRequest,
  DEFAULT_MIN_BODY_RATE,
  normalizeTarget,
  overflowInRequestLine,
  refuse,
} from './hygiene.js';
import { installProxyProtocol } from './proxy-protocol.js';

export interface ListenerHooks {
  /** The dispatcher for the current config; read per request so reloads take effect at once. */
  dispatcher: () => RequestDispatcher;
  log: (
    level: 'info' | 'warn' | 'error',
    message: string,
    fields?: Record<string, unknown>,
  ) => void;
  /** ACME HTTP-01 (src/acme/): the key authorization for a pending token, answered on plain
   * listeners before routing, so a redirect-to-HTTPS route cannot hide it. A promise when the
   * answer must be looked up in a store shared with other instances or workers. */
  acmeChallenge?: (token: string) => string | Promise<string | undefined> | undefined;
}

const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

const CLIENT_ERROR_STATUS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout'],
};

/**
 * An HTTP/1.1 listener: node:http with the configured limits, connection caps (total and per
 * client address), clean answers to malformed requests, and graceful draining for shutdown.
 */
export class Listener implements QuickAnswerer {
  config: ListenerConfig;
  info: ListenerInfo;
  readonly server: http.Server;
  private readonly hooks: ListenerHooks;
  private readonly perIp = new Map<string, number>();
  private activeRequests = 0;
  private draining = false;
  private drainWaiters: Array<() => void> = [];
  private readonly bodyRate: BodyRateGuard;

  constructor(config: ListenerConfig, hooks: ListenerHooks) {
    this.config = config;
    this.hooks = hooks;
    this.info = {
      name: config.name,
      scheme: config.tls ? 'https' : 'http',
      maxBodySize: config.limits.maxBodySize,
    };
    const limits = config.limits;
    const requestTimeout = limits.requestTimeoutMs;
    // Plain HTTP/1.1 gets node's http.createServer as is; TLS, ALPN h2 and h2c are layered on
    // by the factory only for listeners that ask for them.
    this.server = createListenerServer(
      config,
      {
        // Node refuses headersTimeout > requestTimeout; the smaller bound wins anyway.
        headersTimeout:
          requestTimeout > 0
            ? Math.min(limits.headersTimeoutMs, requestTimeout)
            : limits.headersTimeoutMs,
        requestTimeout,
        keepAliveTimeout: limits.idleTimeoutMs,
        maxHeaderSize: limits.maxHeaderSize,
        insecureHTTPParser: false,
        requireHostHeader: true,
        noDelay: true,
        connectionsCheckingInterval: 1000,
      },
      hooks.log,
    );
    this.server.maxConnections = limits.maxConnections;
    // A client may half-close after sending its request (`printf ... | nc`); answer it anyway,
    // as HAProxy does, instead of aborting the request on the first FIN.
    (this.server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    this.server.on('connection', this.onConnection);
    this.server.on('request', this.onRequest);
    this.server.on('checkContinue', this.onCheckContinue);
    this.server.on('clientError', this.onClientError);
    this.server.on('upgrade', this.onUpgrade);
    this.server.on('connect', this.onConnect);
    // SWITCHYARD_QUICK_ANSWERS=0 gives every request node's objects (a switch for troubleshooting).
    if (process.env.SWITCHYARD_QUICK_ANSWERS !== '0')
      (this.server as QuickAnswerServer)[quickAnswerer] = this;
    this.bodyRate = new BodyRateGuard(
      limits.minBodyRate ?? DEFAULT_MIN_BODY_RATE,
      limits.headersTimeoutMs,
    );
    // Last, so the PROXY header is read before any other connection listener (limits included)
    // sees the socket and its address.
    if (config.proxyProtocol)
      installProxyProtocol(this.server, { timeoutMs: limits.headersTimeoutMs, log: hooks.log });
  }

  /** Answers a pending HTTP-01 token; false (route as usual) for any other path. */
  private answerAcmeChallenge(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    lookup: NonNullable<ListenerHooks['acmeChallenge']>,
  ): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const answer = lookup((req.url ?? '').slice(ACME_CHALLENGE_PREFIX.length));
    if (answer === undefined) return false;
    if (typeof answer !== 'string') {
      // Looked up in the shared store: answer, or route as usual when no instance has it.
      answer.then(
        (found) => {
          if (res.destroyed || res.headersSent) return;
          if (found === undefined) this.route(req, res);
          else this.writeAcmeAnswer(req, res, found);
        },
        () => {
          if (!res.destroyed && !res.headersSent) this.route(req, res);
        },
      );
      return true;
    }
    this.writeAcmeAnswer(req, res, answer);
    return true;
  }

  private writeAcmeAnswer(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    answer: string,
  ): void {
    res.writeHead(200, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(answer),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : answer);
  }

  /** CONNECT (forward-proxy tunnelling) is not something a reverse proxy offers. */
  private readonly onConnect = (_req: http.IncomingMessage, socket: Socket) => {
    socket.on('error', () => socket.destroy());
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  };

  private readonly onConnection = (socket: Socket) => {
    const ip = socket.remoteAddress ?? '';
    const max = this.config.limits.maxConnectionsPerIp;
    const count = (this.perIp.get(ip) ?? 0) + 1;
    if (max > 0 && count > max) {
      socket.destroy();
      return;
    }
    this.perIp.set(ip, count);
    socket.once('close', () => {
      const left = (this.perIp.get(ip) ?? 1) - 1;
      if (left <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, left);
    });
  };

  /** QuickAnswerer: the current config has a route that can answer at once. */
  get quickReady(): boolean {
    return !this.draining && this.hooks.dispatcher().quickAnswer !== undefined;
  }

  /**
   * A plain GET or HEAD offered by the HTTP/1.1 loop before it makes node's request objects
   * (core/quick-answer.ts): the same checks as onRequest, then the dispatcher's quick answer.
   * Anything those checks would answer themselves (a refusal, ACME, a draining listener that
   * must say Connection: close) is declined, and onRequest does it.
   */
  quickAnswer(req: QuickRequest, res: QuickResponse): boolean {
    const dispatcher = this.hooks.dispatcher();
    if (this.draining || dispatcher.quickAnswer === undefined) return false;
    if (checkRequest(req) !== null || normalizeTarget(req) !== null) return false;
    if (
      this.hooks.acmeChallenge !== undefined &&
      this.info.scheme === 'http' &&
      req.url.startsWith(ACME_CHALLENGE_PREFIX)
    )
      return false;
    if (!dispatcher.quickAnswer(req, res, this.info)) return false;
    if (res.kept) {
      // In flight like any request (draining waits for it). Its close hooks never run during
      // the call that kept it, so counting it now cannot miss its end.
      this.activeRequests++;
      onceClosed(res, this.onResponseClose);
    }
    return true;
  }

  private readonly onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    this.activeRequests++;
    onceClosed(res, this.onResponseClose);
    if (this.draining) res.shouldKeepAlive = false;
    const rejection = checkRequest(req) ?? normalizeTarget(req);
    if (rejection !== null) {
      refuse(res, rejection);
      return;
    }
    if (req.url === '*') {
      res.writeHead(200, {
        allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
        'content-length': 0,
      });
      res.end();
      return;
    }
    if (
      this.hooks.acmeChallenge !== undefined &&
      this.info.scheme === 'http' &&
      req.url !== undefined &&
      req.url.startsWith(ACME_CHALLENGE_PREFIX) &&
      this.answerAcmeChallenge(req, res, this.hooks.acmeChallenge)
    )
      return;
    this.route(req, res);
  };

  /** Hands a checked request to the current config's dispatcher. */
  private route(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (announcesBody(req.headers)) this.bodyRate.watch(req, res);
    try {
      this.hooks.dispatcher().handle(req, res, this.info);
    } catch (err) {
      // The dispatcher guards its own errors; this is the last line so one request can never
      // take the process down.
      this.hooks.log('error', 'unhandled error while dispatching', { error: String(err) });
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' });
        res.end('500 Internal Server Error\n');
      } else {
        res.destroy();
      }
    }
  }

  private readonly onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      acceptUpgrade(this.server, this.hooks.dispatcher(), req, socket, head, this.info);
    } catch (err) {
      this.hooks.log('error', 'unhandled error while dispatching an upgrade', {
        error: String(err),
      });
      socket.destroy();
    }
  };

  private readonly onResponseClose = () => {
    this.activeRequests--;
    if (this.activeRequests === 0 && this.draining) {
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
  };

  private readonly onCheckContinue = (req: http.IncomingMessage, res: http.ServerResponse) => {
    // Say "100 Continue" only when the body will be accepted; otherwise answer (413) at once.
    const length = Number(req.headers['content-length'] ?? 0);
    if (!(length > this.info.maxBodySize)) res.writeContinue();
    this.onRequest(req, res);
  };

  private readonly onClientError = (err: Error & { code?: string }, socket: Socket) => {
    // A response whose head is out cannot be followed by an error answer on the same bytes.
    const inFlight = (socket as Socket & { _httpMessage?: http.ServerResponse | null })
      ._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, text] =
      err.code === 'HPE_HEADER_OVERFLOW' && overflowInRequestLine(err as { rawPacket?: unknown })
        ? [414, 'URI Too Long']
        : (CLIENT_ERROR_STATUS[err.code ?? ''] ?? [400, 'Bad Request']);
    const body = `${status} ${text}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
  };

  /**
   * Applies a reloaded config to this open socket. Timeouts, connection caps and the body limit
   * change at once (new requests see them); returns the keys that only a restart can change.
   */
  update(config: ListenerConfig): string[] {
    const before = this.config;
    const limits = config.limits;
    const requestTimeout = limits.requestTimeoutMs;
    this.server.requestTimeout = requestTimeout;
    this.server.headersTimeout =
      requestTimeout > 0
        ? Math.min(limits.headersTimeoutMs, requestTimeout)
        : limits.headersTimeoutMs;
    this.server.keepAliveTimeout = limits.idleTimeoutMs;
    this.server.maxConnections = limits.maxConnections;
    this.config = config;
    this.info = { ...this.info, maxBodySize: limits.maxBodySize };
    this.bodyRate.minRate = limits.minBodyRate ?? DEFAULT_MIN_BODY_RATE;
    this.bodyRate.graceMs = limits.headersTimeoutMs;
    const restart: string[] = [];
    if (before.limits.maxHeaderSize !== limits.maxHeaderSize) restart.push('limits.maxHeaderSize');
    if (before.http2 !== config.http2) restart.push('http2');
    if (before.proxyProtocol !== config.proxyProtocol) restart.push('proxyProtocol');
    if (Boolean(before.tls) !== Boolean(config.tls)) restart.push('tls on/off');
    return restart;
  }

  async listen(): Promise<string> {
    const { host, port } = this.config.address;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      // A deep accept queue, as nginx uses, so a burst of new connections is not dropped.
      this.server.listen({ host: host === '' ? undefined : host, port, backlog: 4096 }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (err) =>
      this.hooks.log('error', 'listener error', { error: String(err) }),
    );
    return this.url();
  }

  url(): string {
    const address = this.server.address();
    if (address === null || typeof address === 'string') return `${this.info.scheme}://${address}`;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `${this.info.scheme}://${host}:${address.port}`;
  }

  get port(): number {
    const address = this.server.address();
    return address !== null && typeof address !== 'string' ? address.port : 0;
  }

  /**
   * Stops accepting, lets in-flight requests finish (their connections then close instead of
   * staying alive), and resolves when none is left or `timeoutMs` ran out (then cuts the rest).
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    this.server.close();
    this.server.closeIdleConnections();
    const sweeper = setInterval(() => this.server.closeIdleConnections(), 100);
    try {
      if (this.activeRequests > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          timer.unref();
          this.drainWaiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    } finally {
      clearInterval(sweeper);
      this.server.closeAllConnections();
    }
  }
}

/** Why a socket could not be bound, in words a user can act on. */
export function describeListenError(err: unknown): string {
  const e = err as Error & { code?: string };
  if (e.code === 'EADDRINUSE') return 'the address is already in use';
  if (e.code === 'EACCES') return 'permission denied (ports below 1024 need privileges)';
  return e.message;
}
