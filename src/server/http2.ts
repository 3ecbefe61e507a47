import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { ListenerConfig } from '../config/types.js';
import type { ListenerInfo } from '../core/context.js';
import type { RequestDispatcher } from '../core/dispatcher.js';
import { createHttp1Server, createHttps1Server } from './http1-engine.js';
import { TlsTerminator, type ListenerTlsSettings } from './tls.js';

type LogFn = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

/** The client preface every HTTP/2 prior-knowledge connection starts with (RFC 9113 §3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const terminators = new WeakMap<http.Server, TlsTerminator>();
const H2_RESPONSE = Symbol('switchyard.h2Response');
const EMPTY = Buffer.alloc(0);
const tunnels = new WeakMap<http.Server, Set<Duplex>>();
const WEBSOCKET_TOKEN = /(?:^|,)\s*websocket\s*(?:,|$)/i;

/**
 * Takes a server 'upgrade' event to the dispatcher. The request gets a normal response object
 * (so routes, filters and errors work as for any request); only a WebSocket upgrade that the
 * upstream accepts turns the connection into a tunnel. Other upgrade tokens (h2c, ...) are not
 * supported and are answered as plain HTTP/1.1 requests, as RFC 9110 §7.8 allows.
 */
export function acceptUpgrade(
  server: http.Server,
  dispatcher: RequestDispatcher,
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  listener: ListenerInfo,
): void {
  if (req.httpVersionMajor === 2) {
    const res = (req as unknown as Record<symbol, http.ServerResponse>)[H2_RESPONSE];
    dispatcher.handle(req, res, listener, { socket, head, http2: true });
    return;
  }
  socket.on('error', () => socket.destroy());
  let open = tunnels.get(server);
  if (open === undefined) {
    const set = new Set<Duplex>();
    open = set;
    tunnels.set(server, set);
    // Upgraded sockets leave node's connection tracking; the final cut of a drain must reach them.
    const closeAll = server.closeAllConnections.bind(server);
    server.closeAllConnections = () => {
      closeAll();
      for (const s of set) s.destroy();
    };
  }
  const set = open;
  set.add(socket);
  socket.once('close', () => set.delete(socket));
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
  });
  const upgrade = req.headers.upgrade;
  if (req.method !== 'GET' || upgrade === undefined || !WEBSOCKET_TOKEN.test(upgrade)) {
    dispatcher.handle(req, res, listener);
    return;
  }
  dispatcher.handle(req, res, listener, {
    socket,
    head,
    http2: false,
    detach: () => res.detachSocket(socket as Socket),
  });
}

/** The TLS state of a listener's server, or undefined for a plain listener. */
export function tlsTerminatorOf(server: http.Server): TlsTerminator | undefined {
  return terminators.get(server);
}

/**
 * Builds the node server behind a listener. A plain HTTP/1.1 listener gets exactly the
 * `http.createServer` it always had (no per-request cost for features it does not use).
 *
 * With TLS, the server is an `https.Server` (so every HTTP/1.1 limit, timeout and drain helper
 * works unchanged) whose connections are routed by the ALPN result: `h2` connections go to an
 * internal HTTP/2 server whose compat requests are re-emitted as the outer server's `request`
 * events, so the listener and the core see one stream of requests. A plain listener with
 * `http2: true` routes by sniffing the HTTP/2 client preface instead (h2c prior knowledge).
 */
export function createListenerServer(
  config: ListenerConfig,
  options: http.ServerOptions,
  log: LogFn,
): http.Server {
  const tlsSettings = config.tls as ListenerTlsSettings | undefined;
  // node:http's own loop stays one switch away (SWITCHYARD_SERVER_ENGINE=node).
  const useEngine = process.env.SWITCHYARD_SERVER_ENGINE !== 'node';
  if (tlsSettings === undefined) {
    const server = useEngine ? createHttp1Server(options) : http.createServer(options);
    if (config.http2) routeByPreface(server, createHttp2Side(server, config, log));
    return server;
  }
  const terminator = new TlsTerminator(tlsSettings, config.name, log);
  const alpn = config.http2 ? ['h2', 'http/1.1'] : ['http/1.1'];
  const server = (useEngine ? createHttps1Server : https.createServer)({
    ...options,
    ...terminator.serverOptions(alpn),
    // A handshake is bounded like a request head (slowloris defence for TLS).
    handshakeTimeout: options.headersTimeout,
  });
  terminator.attach(server);
  terminators.set(server, terminator);
  server.on('close', () => terminator.close());
  if (config.http2) routeByAlpn(server, createHttp2Side(server, config, log));
  // A handshake that completes after the listener closed would otherwise escape draining.
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    if (!server.listening) socket.destroy();
  });
  return server;
}

/**
 * The HTTP/2 half of a listener: sessions are tracked so draining can send GOAWAY, idle sessions
 * close after `idleTimeout`, and each stream's request lands on the outer server.
 */
function createHttp2Side(
  outer: http.Server,
  config: ListenerConfig,
  log: LogFn,
): http2.Http2Server {
  const limits = config.limits;
  const h2 = http2.createServer({
    settings: {
      // RFC 8441: lets clients open WebSockets over HTTP/2 with extended CONNECT.
      enableConnectProtocol: true,
      maxHeaderListSize: limits.maxHeaderSize,
      maxConcurrentStreams: 256,
    },
    maxSessionInvalidFrames: 100,
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    let open = 0;
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      open++;
      stream.on('error', () => undefined);
      stream.once('close', () => open--);
    });
    session.on('error', () => undefined);
    session.once('close', () => sessions.delete(session));
    if (limits.idleTimeoutMs > 0) {
      // Like HTTP/1.1 keep-alive: only a session with no stream in flight counts as idle.
      session.setTimeout(limits.idleTimeoutMs, () => {
        if (open === 0) session.close();
      });
    }
  });
  h2.on('sessionError', () => undefined);
  h2.on('request', (req, res) => outer.emit('request', req, res));
  h2.on('checkContinue', (req, res) => outer.emit('checkContinue', req, res));
  // Extended CONNECT (WebSocket over HTTP/2) arrives as node's 'connect' on the HTTP/2 server;
  // the listener's upgrade handler takes it with the stream standing in for the socket.
  h2.on('connect', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    if (req.headers[':protocol'] !== 'websocket' || outer.listenerCount('upgrade') === 0) {
      res.writeHead(req.headers[':protocol'] === undefined ? 405 : 501);
      res.end();
      return;
    }
    (req as unknown as Record<symbol, unknown>)[H2_RESPONSE] = res;
    outer.emit('upgrade', req, req.stream, EMPTY);
  });

  // Draining must reach HTTP/2 sessions too: GOAWAY for idle ones, a cut when time is up.
  const closeIdle = outer.closeIdleConnections.bind(outer);
  const closeAll = outer.closeAllConnections.bind(outer);
  outer.closeIdleConnections = () => {
    closeIdle();
    for (const session of sessions) if (!session.closed) session.close();
  };
  outer.closeAllConnections = () => {
    closeAll();
    for (const session of sessions) session.destroy();
  };
  outer.on('close', () => {
    for (const session of sessions) session.close();
  });
  void log;
  return h2;
}

function routeByAlpn(server: https.Server, h2: http2.Http2Server): void {
  const [http1Connection] = server.listeners('secureConnection') as Array<(s: TLSSocket) => void>;
  server.removeListener('secureConnection', http1Connection);
  server.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === 'h2') h2.emit('connection', socket);
    else http1Connection.call(server, socket);
  });
}

function routeByPreface(server: http.Server, h2: http2.Http2Server): void {
  const [http1Connection] = server.listeners('connection') as Array<(s: Socket) => void>;
  server.removeListener('connection', http1Connection);
  const sniffTimeout = server.headersTimeout;
  server.on('connection', (socket: Socket) => {
    let seen: Buffer = Buffer.alloc(0);
    // Until the protocol is known nobody else guards this socket: bound the wait and swallow
    // its errors (a reset during the sniff just closes it).
    const onError = () => socket.destroy();
    socket.on('error', onError);
    socket.setTimeout(sniffTimeout, () => socket.destroy());
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isPrefix && seen.length < H2_PREFACE.length) return;
      socket.off('data', onData);
      socket.off('error', onError);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
      if (isPrefix) {
        // The HTTP/2 session takes the socket's handle over and reads what was unshifted.
        h2.emit('connection', socket);
      } else {
        http1Connection.call(server, socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  });
}
