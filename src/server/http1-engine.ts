import http from 'node:http';
import type https from 'node:https';
import { createRequire } from 'node:module';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

import {
  announcesBody,
  closeHook0,
  closeHook1,
  closeHook2,
  endWithSerializedHead,
  type CloseHook,
  type CloseHookSlots,
  type SerializedHeadResponse,
} from '../core/http.js';
import { quickAnswerer, type QuickAnswerServer, type QuickRequest } from '../core/quick-answer.js';
import { holdUntilTurnEnds } from '../core/turn-writes.js';
import {
  LoopQuickResponse,
  runCloseHooks,
  type NodeResponse,
  type QuickResponseOwner,
} from './quick-response.js';

/**
 * Switchyard's HTTP/1.1 server connection loop: node's own llhttp parser (the binding node:http
 * uses, reading straight from the socket's handle) and node's own IncomingMessage and
 * ServerResponse, driven by a leaner loop than node:http's. What it leaves out is per-request
 * work the proxy never needs: a socket timer re-armed twice per request (timeouts here are one
 * sweep per second over all connections, as node already does for headers and request
 * timeouts), an async-hooks resource per connection, a bound closure per response. Measured on
 * one core with the same 1 KiB answer: 26 us of CPU per request through node:http, 19-20 us
 * through this loop (docs/performance.md).
 *
 * The server it builds emits node:http's events with node:http's arguments (`request`,
 * `checkContinue`, `clientError`, `upgrade`, `connect`) and has the properties the listener sets
 * (`headersTimeout`, `requestTimeout`, `keepAliveTimeout`, `httpAllowHalfOpen`), so the listener,
 * PROXY protocol, h2c sniffing and ALPN routing work on it unchanged.
 */

interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  consume(handle: unknown): void;
  unconsume(): void;
  execute(data: Buffer): number | ParseError;
  finish(): number | ParseError | undefined;
  free(): void;
  getCurrentBuffer(): Buffer;
  pause(): void;
  resume(): void;
  remove?(): void;
  close(): void;
  [key: number]: unknown;
}

interface ParserClass {
  new (): Parser;
  REQUEST: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone: number;
}

type ParseError = Error & { code?: string; rawPacket?: Buffer; bytesParsed?: number };

// node:http's own parser and helpers. `_http_common` is a public module name (it is what
// `require('_http_common')` gives) but undocumented; it has had this shape from Node.js 12 to 24.
const common = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: ParserClass;
  methods: string[];
  continueExpression: RegExp;
  prepareError: (err: ParseError, parser: Parser, rawPacket: Buffer | undefined) => void;
};
const { HTTPParser, methods } = common;
const METHOD_GET = methods.indexOf('GET');
const METHOD_HEAD = methods.indexOf('HEAD');
const kOnMessageBegin = HTTPParser.kOnMessageBegin | 0;
const kOnHeaders = HTTPParser.kOnHeaders | 0;
const kOnHeadersComplete = HTTPParser.kOnHeadersComplete | 0;
const kOnBody = HTTPParser.kOnBody | 0;
const kOnMessageComplete = HTTPParser.kOnMessageComplete | 0;
const kOnExecute = HTTPParser.kOnExecute | 0;

/** The fields of node's IncomingMessage and ServerResponse this loop drives (as node:http does). */
interface Incoming extends http.IncomingMessage {
  upgrade: boolean;
  _addHeaderLines(headers: string[], n: number): void;
  _dump(): void;
  _dumped: boolean;
  _consuming: boolean;
  _readableState: { resumeScheduled: boolean };
}
interface Outgoing extends http.ServerResponse, CloseHookSlots {
  _last: boolean;
  _closed: boolean;
  _keepAliveTimeout: number;
  _expect_continue: boolean;
  _onPendingData: (delta: number) => void;
  _header: string | null;
  _headerSent: boolean;
  _sent100: boolean;
  finished: boolean;
  [kConnection]: Connection;
}
interface EngineSocket extends net.Socket {
  _paused: boolean;
  _peername?: unknown;
  /** A TLS socket's TCP socket. */
  _parent?: { _peername?: unknown } | null;
  _httpMessage: Outgoing | null;
  _handle: { isStreamBase?: boolean; _consumed?: boolean; reading?: boolean } & Record<
    string,
    unknown
  >;
  [kConnection]?: Connection;
}

/** The settings node:http keeps on its server object, read live (a reload changes them). */
export interface Http1ServerFields {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  maxHeaderSize: number;
  requireHostHeader: boolean;
  httpAllowHalfOpen: boolean;
  closeIdleConnections(): void;
  closeAllConnections(): void;
}

const kConnection = Symbol('switchyard.http1Connection');
const KEEP_ALIVE_MARGIN_MS = 1000;

// ServerResponse keeps "a write returned false" under a symbol of node's; the loop clears it
// when the socket drains, as node:http does, so the response emits 'drain' once per stall.
const kNeedDrain = Object.getOwnPropertySymbols(new http.OutgoingMessage()).find(
  (s) => s.description === 'kNeedDrain',
);

const NOOP = (): void => undefined;

/**
 * node's ServerResponse plus the serialized-head ending (core/http.ts), as a prototype method so
 * a response costs nothing more to make.
 */
class EngineResponse extends http.ServerResponse implements SerializedHeadResponse, CloseHookSlots {
  [closeHook0]: CloseHook | null = null;
  [closeHook1]: CloseHook | null = null;
  [closeHook2]: CloseHook | null = null;

  /**
   * node's assignSocket, minus the 'close' listener it adds to the socket for every response
   * (and detachSocket removes): the loop's own 'close' handler closes the response that has the
   * socket (Connection.onClose).
   */
  override assignSocket(socket: net.Socket): void {
    const s = socket as EngineSocket;
    if (s._httpMessage) throw new Error('a response already has this socket');
    s._httpMessage = this as unknown as Outgoing;
    (this as { socket: net.Socket | null }).socket = socket;
    this.emit('socket', socket);
    (this as unknown as { _flush(): void })._flush();
  }

  override detachSocket(socket: net.Socket): void {
    (socket as EngineSocket)._httpMessage = null;
    (this as { socket: net.Socket | null }).socket = null;
  }

  [endWithSerializedHead](
    status: number,
    fields: string,
    body: Buffer | undefined,
    lead?: Buffer,
  ): boolean {
    return endRaw(this as unknown as Outgoing, status, fields, body, lead);
  }
}

/**
 * What ServerResponse's writeHead and end do for a complete response, minus the work a
 * serialized head makes redundant: building a header object, validating every name and value,
 * joining them. The head is node's (status line, the fields, then Connection and Keep-Alive as
 * _storeHeader writes them), head and body go out in one corked write, and 'finish' follows
 * the write as it does in node, so the loop and every listener see an ordinary response.
 */
function endRaw(
  res: Outgoing,
  status: number,
  fields: string,
  body: Buffer | undefined,
  lead: Buffer | undefined,
): boolean {
  const conn = res[kConnection];
  const socket = conn.socket;
  if (
    res._header !== null ||
    socket._httpMessage !== res ||
    socket.destroyed ||
    (res._expect_continue && !res._sent100) ||
    conn.rawPending !== null
  )
    return false;
  // With a lead, `head` is only the rest of the head (node reads _header as a flag here).
  let head =
    lead === undefined
      ? `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'unknown'}\r\n${fields}`
      : fields;
  if (!res.shouldKeepAlive) res._last = true;
  head += connectionFields(res.shouldKeepAlive, res._keepAliveTimeout);
  res.statusCode = status;
  res._header = head;
  res._headerSent = true;
  res.finished = true;
  conn.rawPending = res;
  writeAnswer(socket, lead, head, body, conn.onRawWritten);
  return true;
}

/** The loop's own fields that end every head it writes (node's _storeHeader writes the same). */
function connectionFields(keepAlive: boolean, keepAliveTimeoutMs: number): string {
  if (!keepAlive) return 'Connection: close\r\n\r\n';
  return keepAliveTimeoutMs > 0
    ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveTimeoutMs / 1000)}\r\n\r\n`
    : 'Connection: keep-alive\r\n\r\n';
}

/** Writes a complete answer: the encoded start of the head, the rest of it, the body. */
function writeAnswer(
  socket: net.Socket,
  lead: Buffer | undefined,
  head: string,
  body: Buffer | undefined,
  written: (() => void) | undefined,
): void {
  const leadLength = lead === undefined ? 0 : lead.length;
  const bodyLength = body === undefined ? 0 : body.length;
  if (bodyLength <= COPY_INTO_HEAD_MAX) {
    // One buffer, one write: cheaper than a corked writev of two or three chunks (the stream's
    // buffering and the C++ writev's per-chunk work) for as long as copying the body is cheap.
    const out = Buffer.allocUnsafe(leadLength + head.length + bodyLength);
    if (lead !== undefined) out.set(lead, 0);
    const headEnd = leadLength + out.write(head, leadLength, 'latin1');
    if (body !== undefined) out.set(body, headEnd);
    holdUntilTurnEnds(socket);
    socket.write(out, written);
    return;
  }
  socket.cork();
  holdUntilTurnEnds(socket);
  if (lead !== undefined) socket.write(lead);
  socket.write(head, 'latin1');
  socket.write(body!, written);
  socket.uncork();
}

/**
 * A field name lowercased. The names most requests carry, as clients write them, map to
 * constants, as node's own matchKnownFields does: no new string, and the constant is already
 * the internalized key a property store wants (a lowercased copy must be hashed and looked up).
 */
function fieldName(name: string): string {
  switch (name.length) {
    case 4:
      if (name === 'Host' || name === 'host') return 'host';
      break;
    case 6:
      if (name === 'Accept' || name === 'accept') return 'accept';
      if (name === 'Cookie' || name === 'cookie') return 'cookie';
      break;
    case 7:
      if (name === 'Referer' || name === 'referer') return 'referer';
      break;
    case 10:
      if (name === 'User-Agent' || name === 'user-agent') return 'user-agent';
      if (name === 'Connection' || name === 'connection') return 'connection';
      break;
    case 15:
      if (name === 'Accept-Encoding' || name === 'accept-encoding') return 'accept-encoding';
      if (name === 'Accept-Language' || name === 'accept-language') return 'accept-language';
      break;
  }
  return name.toLowerCase();
}

/**
 * The request a quick answerer is offered (core/quick-answer.ts), or null when it must take the
 * usual path: a body, Expect, a missing Host, or a repeated field (node's rules for joining one
 * live in IncomingMessage; a name that Object.prototype has counts as repeated here).
 */
function quickRequestOf(
  socket: net.Socket,
  versionMajor: number,
  versionMinor: number,
  rawHeaders: string[],
  method: string,
  url: string,
  requireHost: boolean,
): QuickRequest | null {
  const headers: Record<string, string> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = fieldName(rawHeaders[i]);
    if (headers[name] !== undefined) return null;
    headers[name] = rawHeaders[i + 1];
  }
  if (announcesBody(headers) || headers.expect !== undefined) return null;
  if (requireHost && versionMinor === 1 && headers.host === undefined) return null;
  return {
    method,
    url,
    headers,
    rawHeaders,
    httpVersion: versionMinor === 1 ? '1.1' : `${versionMajor}.${versionMinor}`,
    httpVersionMajor: versionMajor,
    httpVersionMinor: versionMinor,
    socket,
    complete: true,
  };
}

/** Bodies up to this size leave with their head in one copied buffer (endRaw). */
const COPY_INTO_HEAD_MAX = 16 * 1024;

class ConnResetError extends Error {
  readonly code = 'ECONNRESET';
  constructor() {
    super('aborted');
  }
}

/** The part of node:http's server a connection needs: settings and events. */
type EngineServer = net.Server & Http1ServerFields;

/** One client connection: its parser, the requests in flight and their queued responses. */
class Connection implements QuickResponseOwner {
  readonly socket: EngineSocket;
  readonly server: EngineServer;
  readonly engine: Http1Engine;
  parser: Parser | null;
  /** The request whose head or body is being parsed. */
  current: Incoming | null = null;
  /** Requests whose responses have not finished, oldest first (pipelining). */
  readonly incoming: Incoming[] = [];
  /** Responses waiting for the socket behind the one that has it. */
  readonly outgoing: Outgoing[] = [];
  /** Bytes the queued responses hold. */
  outgoingData = 0;
  /** ms when the request being parsed began (first byte); 0 when none is. */
  requestStart = 0;
  headersDone = false;
  /** ms since nothing is in flight (keep-alive idle); 0 while busy. */
  idleSince: number;
  /** No request has begun yet: idle counts against headersTimeout, not keepAliveTimeout. */
  fresh = true;
  private headerParts: string[] = [];
  private urlParts = '';
  private failed = false;
  /**
   * What waits for every earlier response to finish: the hand-over of an upgrade pipelined
   * behind other requests, or the error answer to bad bytes that followed good requests.
   */
  private afterResponses: (() => void) | null = null;
  /** The response whose serialized-head write (endRaw) has not completed yet. */
  rawPending: Outgoing | null = null;
  /**
   * A kept quick request (core/quick-answer.ts) still without node's objects: in flight, the
   * only thing owed on the connection. Anything else that happens on the connection makes its
   * objects first (settleHeld), so the usual bookkeeping takes over.
   */
  private held: LoopQuickResponse | null = null;

  constructor(engine: Http1Engine, server: EngineServer, socket: EngineSocket) {
    this.engine = engine;
    this.server = server;
    this.socket = socket;
    this.idleSince = Date.now();
    const parser = freeParsers.pop() ?? new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, server.maxHeaderSize || 0, HTTPParser.kLenientNone);
    parser[kOnMessageBegin] = this.onMessageBegin;
    parser[kOnHeaders] = this.onHeaders;
    parser[kOnHeadersComplete] = this.onHeadersComplete;
    parser[kOnBody] = this.onBody;
    parser[kOnMessageComplete] = this.onMessageComplete;
    parser[kOnExecute] = this.onExecute;
    this.parser = parser;
    socket[kConnection] = this;
    socket.on('error', onSocketError);
    for (const [event, listener] of this.socketListeners()) socket.on(event, listener);
    socket.on('newListener', onNewSocketListener);
    socket._paused = false;
    // A TLS socket's address is that of the TCP socket it wraps, which the listener has already
    // asked the kernel for (the per-address limit): so the client address costs no second call.
    const tcp = socket._parent;
    if (tcp !== null && tcp !== undefined && tcp._peername !== undefined && !socket._peername)
      socket._peername = tcp._peername;
    const handle = socket._handle;
    if (handle?.isStreamBase && !handle._consumed) {
      // The parser reads from the handle in C++: no 'data' event per read.
      handle._consumed = true;
      (parser as Parser & { _consumed?: boolean })._consumed = true;
      parser.consume(handle);
    }
  }

  /** QuickResponseOwner: an answer for a request that never became an IncomingMessage. */
  writeQuick(
    keepAlive: boolean,
    status: number,
    fields: string,
    body: Buffer | undefined,
    lead: Buffer | undefined,
    written?: () => void,
  ): void {
    const socket = this.socket;
    let head = fields + connectionFields(keepAlive, this.server.keepAliveTimeout);
    if (lead === undefined)
      head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'unknown'}\r\n${head}`;
    writeAnswer(socket, lead, head, body, written);
    if (!keepAlive) {
      // As after a response marked last: nothing more is served, the socket ends once flushed.
      this.failed = true;
      (socket as net.Socket & { destroySoon?: () => void }).destroySoon?.();
    }
  }

  quickKept(res: LoopQuickResponse): void {
    this.held = res;
  }

  quickAnswered(res: LoopQuickResponse): void {
    if (this.held === res) this.held = null;
  }

  quickWritten(): void {
    // As responseFinished: idle unless another request is under way.
    if (this.incoming.length === 0 && this.requestStart === 0 && this.held === null)
      this.idleSince = Date.now();
  }

  /** QuickResponseOwner: what onHeadersComplete would have made for the kept request. */
  makeNodeResponse(quick: LoopQuickResponse): NodeResponse {
    if (this.held === quick) this.held = null;
    const q = quick.request;
    const req = new http.IncomingMessage(this.socket) as Incoming;
    req.httpVersionMajor = q.httpVersionMajor;
    req.httpVersionMinor = q.httpVersionMinor;
    req.httpVersion = `${q.httpVersionMajor}.${q.httpVersionMinor}`;
    req.url = q.url;
    req.upgrade = false;
    req._addHeaderLines(q.rawHeaders, q.rawHeaders.length);
    req.headers = q.headers;
    req.method = q.method;
    // Its message ended with its head (a quick request has no body).
    req.complete = true;
    req.push(null);
    this.incoming.push(req);
    return this.newResponse(req, quick.keepAlive) as unknown as NodeResponse;
  }

  /** Makes node's objects for a kept request before anything else happens on the connection. */
  private settleHeld(): void {
    this.held?.nodeResponse();
  }

  /** As node's onFinish for end(): 'finish' once the bytes are with the socket. */
  readonly onRawWritten = (): void => {
    const res = this.rawPending;
    this.rawPending = null;
    if (res !== null && !(this.socket as net.Socket & { _hadError?: boolean })._hadError)
      res.emit('finish');
  };

  private readonly onMessageBegin = (): void => {
    // Bytes after a kept request (another request, or bad bytes: llhttp begins a message at
    // their first byte): the kept request takes its place in line first.
    if (this.held !== null) this.settleHeld();
    this.requestStart = Date.now();
    this.fresh = false;
    this.headersDone = false;
    this.idleSince = 0;
  };

  /** A head larger than one read arrives in parts before the final callback. */
  private readonly onHeaders = (headers: string[], url: string): void => {
    for (const h of headers) this.headerParts.push(h);
    this.urlParts += url;
  };

  private readonly onHeadersComplete = (
    versionMajor: number,
    versionMinor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    _statusCode: number,
    _statusMessage: string,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number => {
    if (headers === undefined) {
      headers = this.headerParts;
      this.headerParts = [];
    }
    if (url === undefined) {
      url = this.urlParts;
      this.urlParts = '';
    }
    // After an error or a timeout nothing more is served on this connection.
    if (this.failed) return 0;
    const socket = this.socket;
    const server = this.server;
    const answerer = (server as QuickAnswerServer)[quickAnswerer];
    let quick: QuickRequest | null = null;
    if (
      answerer !== undefined &&
      answerer.quickReady &&
      (method === METHOD_GET || method === METHOD_HEAD) &&
      !upgrade &&
      versionMajor === 1 &&
      // Nothing owed on the connection: a quick answer goes out at once, so it must be next.
      this.incoming.length === 0 &&
      this.rawPending === null &&
      !socket._httpMessage &&
      this.afterResponses === null &&
      !socket.writableNeedDrain
    ) {
      quick = quickRequestOf(
        socket,
        versionMajor,
        versionMinor,
        headers,
        methods[method],
        url,
        server.requireHostHeader,
      );
      if (quick !== null) {
        this.headersDone = true;
        if (answerer.quickAnswer(quick, new LoopQuickResponse(this, quick, shouldKeepAlive)))
          return 0;
      }
    }
    const req = new http.IncomingMessage(socket) as Incoming;
    req.httpVersionMajor = versionMajor;
    req.httpVersionMinor = versionMinor;
    req.httpVersion = `${versionMajor}.${versionMinor}`;
    req.url = url;
    req.upgrade = upgrade;
    req._addHeaderLines(headers, headers.length);
    // A request offered and declined: its fields are built already, and with no field repeated
    // they are the object node would build from the same lines (it builds it lazily).
    if (quick !== null) req.headers = quick.headers;
    req.method = methods[method];
    this.current = req;
    this.headersDone = true;
    if (upgrade) {
      req.upgrade = req.method === 'CONNECT' || server.listenerCount('upgrade') > 0;
      // 2: no body follows; onExecute hands the socket over.
      if (req.upgrade) return 2;
    }
    this.incoming.push(req);
    if (!socket._paused) {
      // A flood of pipelined requests must not queue unbounded responses.
      const ws = socket.writableNeedDrain;
      if (ws || this.outgoingData >= socket.writableHighWaterMark) {
        socket._paused = true;
        socket.pause();
      }
    }
    const res = this.newResponse(req, shouldKeepAlive);
    if (versionMajor === 1 && versionMinor === 1) {
      // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
      if (server.requireHostHeader && req.headers.host === undefined) {
        res.writeHead(400, ['Connection', 'close']);
        res.end();
        return 0;
      }
      const expect = req.headers.expect;
      if (expect !== undefined) {
        if (common.continueExpression.test(expect)) {
          res._expect_continue = true;
          if (server.listenerCount('checkContinue') > 0) server.emit('checkContinue', req, res);
          else {
            res.writeContinue();
            server.emit('request', req, res);
          }
        } else {
          res.writeHead(417);
          res.end();
        }
        return 0;
      }
    }
    server.emit('request', req, res);
    return 0;
  };

  /** node's response to `req`: it gets the socket now, or waits behind the one that has it. */
  private newResponse(req: Incoming, shouldKeepAlive: boolean): Outgoing {
    const socket = this.socket;
    const res = new (
      EngineResponse as unknown as new (
        req: Incoming,
        options: { highWaterMark: number },
      ) => Outgoing
    )(req, { highWaterMark: socket.writableHighWaterMark });
    res._keepAliveTimeout = this.server.keepAliveTimeout;
    res._onPendingData = this.onPendingData;
    res.shouldKeepAlive = shouldKeepAlive;
    res[kConnection] = this;
    if (socket._httpMessage !== null && socket._httpMessage !== undefined) this.outgoing.push(res);
    else res.assignSocket(socket);
    res.on('finish', onResponseFinish);
    return res;
  }

  private readonly onBody = (chunk: Buffer): void => {
    const req = this.current;
    if (req === null || req._dumped) return;
    if (!req.push(chunk)) this.socket.pause();
  };

  private readonly onMessageComplete = (): void => {
    const req = this.current;
    this.requestStart = 0;
    if (req !== null) {
      req.complete = true;
      if (this.headerParts.length > 0) {
        // Trailer fields.
        req._addHeaderLines(this.headerParts, this.headerParts.length);
        this.headerParts = [];
        this.urlParts = '';
      }
      req.push(null);
      if (!req.upgrade) this.current = null;
    }
    // The response may have finished before the body did (a kept request is still in flight).
    if (this.incoming.length === 0 && this.held === null) this.idleSince = Date.now();
    // Read on for the next request (a paused body no longer holds the socket).
    const socket = this.socket;
    if (!socket._paused && socket.readable && socket.readableFlowing !== true) socket.resume();
  };

  /** After each read the parser consumed from the handle. */
  private readonly onExecute = (ret: number | ParseError): void => {
    this.afterExecute(ret, undefined);
  };

  /** Bytes that came through the stream instead (unshifted by a sniffer, or unconsumed). */
  private readonly onData = (chunk: Buffer): void => {
    if (this.parser === null) return;
    this.afterExecute(this.parser.execute(chunk), chunk);
  };

  private afterExecute(ret: number | ParseError, chunk: Buffer | undefined): void {
    const parser = this.parser;
    if (parser === null) return;
    if (typeof ret !== 'number') {
      if (this.failed) return;
      common.prepareError(ret, parser, chunk);
      this.parseFailed(ret);
      return;
    }
    const req = this.current;
    if (req !== null && req.upgrade) {
      this.handOver(req, ret, chunk ?? parser.getCurrentBuffer());
      return;
    }
    if (req !== null && req.method === 'PRI') {
      // An HTTP/2 preface on an HTTP/1.1-only listener.
      this.socket.destroy();
      return;
    }
    if (this.socket._paused) parser.pause();
  }

  /**
   * Bytes that do not parse. When they follow complete requests whose responses are still to
   * come, those are answered first (the socket belongs to them) and the error after; bad bytes
   * inside a request (its body) end it at once.
   */
  private parseFailed(err: ParseError): void {
    this.failed = true;
    if (this.current === null && this.incoming.length > 0) {
      this.afterResponses = () => this.socketError(err);
      return;
    }
    this.socketError(err);
  }

  /** Upgrades: later bytes belong to the tunnel; they stay in the kernel until it reads. */
  private stopReading(): void {
    this.unconsume();
    this.socket.pause();
  }

  /** Upgrade or CONNECT: the socket leaves the loop with the bytes read past the head. */
  private handOver(req: Incoming, parsed: number, data: Buffer): void {
    const head = data.subarray(parsed);
    const socket = this.socket;
    if (this.incoming.length > 0) {
      // A pipelined upgrade waits until the responses before it have the socket no more.
      this.current = null;
      this.stopReading();
      this.afterResponses = () => {
        this.emitHandOver(req, head);
        // Reading stopped while waiting; the tunnel (or the FIN after an answer) needs it back.
        // The stream still counts the read it started before the parser took the handle as
        // pending, so read(0) would not restart it: start the handle as net's own _read does.
        const handle = socket._handle as { reading?: boolean; readStart?: () => void } | null;
        if (!socket.destroyed && handle && !handle.reading) {
          handle.reading = true;
          handle.readStart?.();
        }
      };
      return;
    }
    this.emitHandOver(req, head);
  }

  private emitHandOver(req: Incoming, head: Buffer): void {
    const socket = this.socket;
    this.detach();
    socket.off('error', onSocketError);
    this.engine.forget(this);
    const event = req.method === 'CONNECT' ? 'connect' : 'upgrade';
    if (event === 'upgrade' || this.server.listenerCount(event) > 0) {
      (socket as unknown as { readableFlowing: boolean | null }).readableFlowing = null;
      this.server.emit(event, req, socket as Duplex, head);
    } else {
      socket.destroy();
    }
  }

  /** The socket events the loop listens to while it owns the socket ('error' aside). */
  private socketListeners(): Array<[string, SocketListener]> {
    return [
      ['data', this.onData as SocketListener],
      ['end', this.onEnd],
      ['close', this.onClose],
      ['drain', this.onDrain],
      ['resume', onSocketResume as SocketListener],
      ['pause', onSocketPause as SocketListener],
    ];
  }

  /** Stops reading for the loop and frees the parser. */
  private detach(): void {
    const socket = this.socket;
    for (const [event, listener] of this.socketListeners()) socket.off(event, listener);
    socket.off('newListener', onNewSocketListener);
    delete socket[kConnection];
    this.freeParser();
  }

  freeParser(): void {
    const parser = this.parser;
    if (parser === null) return;
    this.parser = null;
    this.unconsume(parser);
    // Not from inside one of its own callbacks.
    setImmediate(releaseParser, parser);
  }

  unconsume(parser: Parser | null = this.parser): void {
    const p = parser as (Parser & { _consumed?: boolean }) | null;
    if (p?._consumed) {
      p.unconsume();
      p._consumed = false;
      if (this.socket._handle) this.socket._handle._consumed = false;
    }
  }

  /** node:http's socketOnError: the listener answers (400, 408, 431, ...) and closes. */
  /** The sweep found the request being received too slow (headersTimeout, requestTimeout). */
  timedOut(): void {
    this.requestStart = 0;
    const err = new Error('Request timeout') as ParseError;
    err.code = 'ERR_HTTP_REQUEST_TIMEOUT';
    if (this.afterResponses !== null) return;
    this.failed = true;
    if (this.current === null && this.incoming.length > 0) {
      // A head stalled behind responses still being sent: they finish first, then the 408.
      this.afterResponses = () => this.socketError(err);
      return;
    }
    this.socketError(err);
  }

  socketError(err: ParseError): void {
    this.settleHeld();
    const socket = this.socket;
    // Whatever the listener writes, the connection is done: the sweep cuts it if the client
    // never closes its side.
    this.requestStart = 0;
    this.idleSince = Date.now();
    // Bytes are read and dropped from now on, so the client's FIN is seen and the socket closes.
    socket._paused = false;
    this.parser?.resume();
    if (!socket.destroyed) socket.resume();
    socket.off('error', onSocketError);
    if (socket.listenerCount('error') === 0) socket.on('error', NOOP);
    if (!this.server.emit('clientError', err, socket)) socket.destroy(err);
  }

  private readonly onEnd = (): void => {
    this.settleHeld();
    const parser = this.parser;
    const ret = parser?.finish();
    if (ret instanceof Error) {
      if (!this.failed) this.parseFailed(ret as ParseError);
      return;
    }
    const socket = this.socket;
    if (!this.server.httpAllowHalfOpen) socket.end();
    else if (this.outgoing.length > 0) this.outgoing[this.outgoing.length - 1]._last = true;
    else if (socket._httpMessage) socket._httpMessage._last = true;
    else socket.end();
  };

  private readonly onClose = (): void => {
    const held = this.held;
    if (held !== null) {
      this.held = null;
      held.connectionClosed();
    }
    this.freeParser();
    this.engine.forget(this);
    const reqs = this.incoming.splice(0);
    for (const req of reqs) req.destroy(new ConnResetError());
    // Responses still queued behind the one that had the socket never get it now.
    for (const res of this.outgoing.splice(0)) emitClose(res);
    // The response that has the socket closes with it (node:http's onServerResponseClose,
    // which EngineResponse.assignSocket does not install).
    const current = this.socket._httpMessage;
    if (current) emitClose(current);
  };

  private readonly onDrain = (): void => {
    const socket = this.socket;
    const needPause = this.outgoingData > socket.writableHighWaterMark;
    if (socket._paused && !needPause) {
      socket._paused = false;
      this.parser?.resume();
      socket.resume();
    }
    const msg = socket._httpMessage;
    if (msg && !msg.writableFinished && kNeedDrain !== undefined) {
      const flags = msg as unknown as Record<symbol, boolean>;
      if (flags[kNeedDrain]) {
        flags[kNeedDrain] = false;
        msg.emit('drain');
      }
    }
  };

  private readonly onPendingData = (delta: number): void => {
    this.outgoingData += delta;
    this.onDrain();
  };

  /** node:http's resOnFinish: the next queued response gets the socket, or the loop idles. */
  responseFinished(res: Outgoing): void {
    const req = this.incoming.shift();
    // A body nobody read is pulled off the wire so the next request can be parsed. A request
    // without a body, or parsed to its end already, has nothing left on the wire: node:http
    // dumps it anyway, which costs every GET four ticks of stream ending ('end', destroy,
    // 'close') that nobody listens to.
    if (
      req !== undefined &&
      !req.complete &&
      !req._consuming &&
      !req._readableState.resumeScheduled &&
      announcesBody(req.headers)
    )
      req._dump();
    const socket = this.socket;
    if (socket._httpMessage === res) res.detachSocket(socket);
    process.nextTick(emitClose, res);
    if (res._last) {
      (socket as net.Socket & { destroySoon?: () => void }).destroySoon?.();
      return;
    }
    const next = this.outgoing.shift();
    if (next !== undefined) {
      next.assignSocket(socket);
      return;
    }
    if (this.incoming.length === 0 && this.afterResponses !== null) {
      const run = this.afterResponses;
      this.afterResponses = null;
      run();
      return;
    }
    if (this.incoming.length === 0 && this.requestStart === 0) this.idleSince = Date.now();
  }
}

/** node's onServerResponseClose, running the response's close hooks (core/http.ts) first. */
function emitClose(res: Outgoing): void {
  if (!res._closed) {
    res.destroyed = true;
    res._closed = true;
    runCloseHooks(res);
    res.emit('close');
  }
}

function onResponseFinish(this: Outgoing): void {
  this[kConnection].responseFinished(this);
}

function onSocketError(this: EngineSocket, err: Error): void {
  const conn = this[kConnection];
  if (conn === undefined) this.destroy(err);
  else conn.socketError(err);
}

/** A consumed socket reads in C++: pause and resume map to the handle, as in node:http. */
function onSocketResume(this: EngineSocket): void {
  if (this._paused) {
    this.pause();
    return;
  }
  const handle = this._handle as { reading?: boolean; readStart?: () => void } | null;
  if (handle && !handle.reading) {
    handle.reading = true;
    handle.readStart?.();
  }
}

function onSocketPause(this: EngineSocket): void {
  const handle = this._handle as { reading?: boolean; readStop?: () => void } | null;
  if (handle?.reading) {
    handle.reading = false;
    handle.readStop?.();
  }
}

type SocketListener = (...args: unknown[]) => void;

/**
 * Someone wants the socket's bytes as events (a sniffer, a tunnel): stop consuming in C++. A
 * 'newListener' listener rather than wrapped `on` methods on each socket: properties added per
 * socket give sockets maps of their own, which cost transitions per connection and polymorphic
 * code in node's stream functions.
 */
function onNewSocketListener(this: EngineSocket, event: string | symbol): void {
  if (event === 'data' || event === 'readable') this[kConnection]?.unconsume();
}

/**
 * Parsers of closed connections, for the next ones: node:http keeps a pool of its own (shared
 * with its servers, whose parsers carry its callbacks, so not this one). A new parser costs a
 * C++ object and its handles per connection.
 */
const freeParsers: Parser[] = [];
const FREE_PARSERS_MAX = 1000;

function releaseParser(parser: Parser): void {
  // The callbacks hold the connection: cleared, so a pooled parser keeps nothing alive.
  parser[kOnMessageBegin] = null;
  parser[kOnHeaders] = null;
  parser[kOnHeadersComplete] = null;
  parser[kOnBody] = null;
  parser[kOnMessageComplete] = null;
  parser[kOnExecute] = null;
  if (freeParsers.length < FREE_PARSERS_MAX) {
    parser.free();
    freeParsers.push(parser);
  } else {
    parser.close();
  }
}

/** The connection loop of one server, with its timeout sweep. */
class Http1Engine {
  private readonly server: EngineServer;
  private readonly connections = new Set<Connection>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(server: EngineServer) {
    this.server = server;
    server.closeIdleConnections = () => {
      for (const conn of this.connections) if (conn.idleSince !== 0) conn.socket.destroy();
    };
    server.closeAllConnections = () => {
      for (const conn of this.connections) conn.socket.destroy();
    };
    server.on('close', () => this.stopSweeping());
  }

  readonly onConnection = (socket: net.Socket): void => {
    if (socket.destroyed) return;
    const conn = new Connection(this, this.server, socket as EngineSocket);
    this.connections.add(conn);
    if (this.sweeper === null) this.startSweeping();
  };

  forget(conn: Connection): void {
    this.connections.delete(conn);
  }

  private startSweeping(): void {
    const keepAlive = this.server.keepAliveTimeout;
    // Once a second, as node:http checks request timeouts; more often for short idle timeouts.
    const every = keepAlive > 0 ? Math.max(100, Math.min(1000, keepAlive / 4)) : 1000;
    this.sweeper = setInterval(this.sweep, every);
    this.sweeper.unref();
  }

  private stopSweeping(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  private readonly sweep = (): void => {
    const server = this.server;
    const now = Date.now();
    const { headersTimeout, requestTimeout, keepAliveTimeout } = server;
    for (const conn of this.connections) {
      if (conn.requestStart !== 0) {
        const age = now - conn.requestStart;
        if (
          (!conn.headersDone && headersTimeout > 0 && age >= headersTimeout) ||
          (requestTimeout > 0 && age >= requestTimeout)
        ) {
          conn.timedOut();
        }
      } else if (conn.idleSince !== 0) {
        // A connection that never sent a byte gets what a slow head gets, as in node:http. An
        // idle keep-alive connection gets a second more than the Keep-Alive header advertises
        // (node:http's margin), so a client reusing it just in time does not race the close.
        const limit = conn.fresh
          ? headersTimeout
          : keepAliveTimeout > 0
            ? keepAliveTimeout + KEEP_ALIVE_MARGIN_MS
            : 0;
        if (limit > 0 && now - conn.idleSince >= limit) conn.socket.destroy();
      }
    }
    if (this.connections.size === 0) this.stopSweeping();
  };
}

const SERVER_DEFAULTS = {
  headersTimeout: 60_000,
  requestTimeout: 300_000,
  keepAliveTimeout: 5_000,
  maxHeaderSize: 16_384,
  requireHostHeader: true,
  httpAllowHalfOpen: false,
};

function applyOptions(server: EngineServer, options: http.ServerOptions): void {
  Object.assign(server, SERVER_DEFAULTS);
  if (options.headersTimeout !== undefined) server.headersTimeout = options.headersTimeout;
  if (options.requestTimeout !== undefined) server.requestTimeout = options.requestTimeout;
  if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout;
  if (options.maxHeaderSize !== undefined) server.maxHeaderSize = options.maxHeaderSize;
  if (options.requireHostHeader !== undefined) server.requireHostHeader = options.requireHostHeader;
}

/** A plain HTTP/1.1 server on the loop above, standing in for `http.createServer(options)`. */
export function createHttp1Server(options: http.ServerOptions): http.Server {
  // Half-open like node:http: a client's FIN ends reading only; onEnd decides what to write.
  const server = new net.Server({ allowHalfOpen: true, noDelay: true }) as EngineServer;
  applyOptions(server, options);
  const engine = new Http1Engine(server);
  server.on('connection', engine.onConnection);
  return server as unknown as http.Server;
}

/** The same over TLS, standing in for `https.createServer(options)`. */
export function createHttps1Server(options: http.ServerOptions & tls.TlsOptions): https.Server {
  const server = new tls.Server({
    noDelay: true,
    allowHalfOpen: true,
    ...options,
  }) as unknown as EngineServer;
  applyOptions(server, options);
  const engine = new Http1Engine(server);
  server.on('secureConnection', engine.onConnection);
  // As https.Server: a failed handshake is a client error the listener may answer.
  server.on('tlsClientError', (err: Error, socket: net.Socket) => {
    if (!server.emit('clientError', err, socket)) socket.destroy(err);
  });
  return server as unknown as https.Server;
}
