import net from 'node:net';
import type { Readable } from 'node:stream';
import { holdUntilTurnEnds } from '../../core/turn-writes.js';
import {
  BodyTimeoutError,
  ConnectTimeoutError,
  ContentLengthMismatchError,
  HeadersTimeoutError,
  RequestAbortedError,
  SocketClosedError,
  track,
  untrack,
  type Expiring,
  ResponseParseError,
} from './common.js';
import { ResponseParser, type ParserOwner } from './parser.js';

/**
 * The subset of undici's legacy dispatch handler that Switchyard uses. `rawHeaders` are latin1
 * strings (see parser.ts); `toString('latin1')` on them is the identity.
 */
export interface H1DispatchHandler {
  onConnect?(abort: (err?: Error) => void): void;
  onHeaders?(
    status: number,
    rawHeaders: Buffer[],
    resume: () => void,
    statusText: string,
  ): boolean | void;
  onData?(chunk: Buffer): boolean | void;
  /**
   * Right after onData: true when nothing holds the chunk any more (it went to the kernel), so
   * its memory can take the next read. Absent or false: the connection reads into new memory.
   */
  chunkReleased?(): boolean;
  onComplete?(trailers: Buffer[] | null): void;
  /**
   * After each read the parser went through: what the callbacks above delivered from it is all
   * there is for now. A handler may hold back work until then (forward.ts keeps a response head
   * back to see whether the whole response came in the same read).
   */
  onReadDone?(): void;
  onError?(err: Error): void;
  onBodySent?(chunk: unknown): void;
  onUpgrade?(status: number, rawHeaders: Buffer[], socket: net.Socket): void;
}

export type StreamBody = Readable | AsyncIterable<Buffer | Uint8Array | string>;

/** What a Connection needs from its pool. */
export interface ConnectionOwner {
  onConnected(conn: Connection): void;
  onConnectFailed(conn: Connection, err: Error): void;
  onReusable(conn: Connection, idleMs: number): void;
  onClosed(conn: Connection): void;
  /** A request lost a stale keep-alive connection before any answer: send it again, once. */
  retryStale(req: H1Request): void;
  dequeue(req: H1Request): void;
}

/** One request: everything needed to (re)send it and to report back to its handler. */
export class H1Request {
  readonly method: string;
  /** The whole request head, framing fields and the blank line included. */
  readonly head: string;
  /** A body sent with the head (replayable), or null. */
  readonly body: Buffer | null;
  readonly stream: StreamBody | null;
  /** Declared length of a streamed body; -1 when it is sent chunked. */
  readonly contentLength: number;
  readonly handler: H1DispatchHandler;
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  readonly upgrade: boolean;
  readonly idempotent: boolean;
  /** Close the connection after this exchange (the request said `connection: close`). */
  readonly reset: boolean;
  readonly owner: ConnectionOwner;
  conn: Connection | null = null;
  done = false;
  connectNotified = false;
  retried = false;
  /** A byte of a streamed body was taken from its source: the request cannot be replayed. */
  bodyStarted = false;
  bodyDone = false;
  /** Detaches the body stream's listeners (set while a stream is being sent). */
  stopBody: ((pause: boolean) => void) | null = null;

  constructor(
    owner: ConnectionOwner,
    method: string,
    head: string,
    body: Buffer | null,
    stream: StreamBody | null,
    contentLength: number,
    handler: H1DispatchHandler,
    headersTimeout: number,
    bodyTimeout: number,
    upgrade: boolean,
    idempotent: boolean,
    reset: boolean,
  ) {
    this.owner = owner;
    this.method = method;
    this.head = head;
    this.body = body;
    this.stream = stream;
    this.contentLength = contentLength;
    this.handler = handler;
    this.headersTimeout = headersTimeout;
    this.bodyTimeout = bodyTimeout;
    this.upgrade = upgrade;
    this.idempotent = idempotent;
    this.reset = reset;
  }

  /** undici's abort(): fails the request now (onError runs synchronously) and frees the socket. */
  readonly abort = (err?: Error): void => {
    if (this.done) return;
    const conn = this.conn;
    if (conn !== null) conn.failRequest(this, err ?? new RequestAbortedError());
    else {
      this.owner.dequeue(this);
      this.fail(err ?? new RequestAbortedError());
    }
  };

  /**
   * Nothing of this request can have been acted on by a server that closed without answering:
   * idempotent with a replayable body, or a streamed body none of which was sent.
   */
  get replayable(): boolean {
    if (this.retried || this.upgrade) return false;
    if (this.stream !== null) return !this.bodyStarted && !isIterableOnly(this.stream);
    return this.idempotent;
  }

  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.stopBody?.(false);
    this.stopBody = null;
    this.handler.onError?.(err);
  }
}

function isIterableOnly(body: StreamBody): boolean {
  return typeof (body as Readable).on !== 'function';
}

const T_NONE = 0;
const T_CONNECT = 1;
const T_HEADERS = 2;
const T_BODY = 3;
const T_IDLE = 4;

const EMPTY: Buffer[] = [];

/**
 * A connection starts reading into a small buffer and moves to node's usual 64 KiB once a read
 * fills it, i.e. once large bodies flow. 4 KiB holds a small response whole; at 1,000 busy
 * connections 16 KiB each was about 12 MiB more resident memory and V8 counted it as external
 * memory, with no fewer reads.
 */
const READ_BUFFER_START_BYTES = 4 * 1024;
const READ_BUFFER_BYTES = 64 * 1024;
/**
 * Body pieces below this are copied out of the read buffer rather than handed over in place (so
 * a handler may keep them past the read; forward.ts relies on that).
 */
export const ZERO_COPY_MIN_BYTES = 16 * 1024;

/**
 * One keep-alive HTTP/1.1 connection carrying one request at a time (no pipelining). It owns
 * the socket's listeners and the response parser; the pool decides which request it carries.
 */
export class Connection implements Expiring, ParserOwner {
  readonly socket: net.Socket;
  private readonly parser: ResponseParser;
  private readonly owner: ConnectionOwner;
  private readonly keepAliveIdleMs: number;
  req: H1Request | null = null;
  /** A stale-retry request that must go on this new connection, not on an idle one. */
  reserved: H1Request | null = null;
  connected = false;
  closed = false;
  /** Requests completed on this connection (0: fresh). */
  served = 0;
  deadline = 0;
  private timeoutKind = T_NONE;
  private error: Error | null = null;
  private responseBytes = 0;
  /**
   * Reads land in this connection's own buffer (net's `onread`) instead of a fresh 64 KiB
   * allocation per read: at 100 KiB responses that allocation churn (about 1 GB/s) was what set
   * off V8's garbage collections (docs/performance.md). Null for a connection that carries an
   * upgrade: its socket becomes a stream for the tunnel, which `onread` sockets cannot be.
   */
  private readBuffer: Buffer | null;
  /** Something still holds the last read's memory: the next read goes to a new buffer. */
  private readBufferHeld = false;
  /** The last read filled the small start buffer: the next one gets the full size. */
  private readBufferFull = false;

  constructor(
    owner: ConnectionOwner,
    host: string,
    port: number,
    connectTimeoutMs: number,
    keepAliveIdleMs: number,
    forUpgrade = false,
  ) {
    this.owner = owner;
    this.keepAliveIdleMs = keepAliveIdleMs;
    this.parser = new ResponseParser(this);
    this.readBuffer = forUpgrade ? null : Buffer.allocUnsafeSlow(READ_BUFFER_START_BYTES);
    const socket = net.connect({
      host,
      port,
      noDelay: true,
      keepAlive: true,
      ...(forUpgrade
        ? {}
        : { onread: { buffer: this.nextReadBuffer, callback: this.onSocketRead } }),
    } as net.NetConnectOpts);
    this.socket = socket;
    socket.on('connect', this.onSocketConnect);
    if (forUpgrade) socket.on('data', this.onSocketData);
    socket.on('end', this.onSocketEnd);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    if (connectTimeoutMs > 0) this.arm(T_CONNECT, connectTimeoutMs);
    track(this);
  }

  private arm(kind: number, ms: number): void {
    this.timeoutKind = kind;
    this.deadline = ms > 0 ? Date.now() + ms : 0;
  }

  private disarm(): void {
    this.timeoutKind = T_NONE;
    this.deadline = 0;
  }

  expire(): void {
    const kind = this.timeoutKind;
    this.disarm();
    const req = this.req;
    if (kind === T_CONNECT) {
      this.error = new ConnectTimeoutError();
      this.socket.destroy();
    } else if (kind === T_HEADERS && req !== null) {
      this.failRequest(req, new HeadersTimeoutError());
    } else if (kind === T_BODY && req !== null) {
      this.failRequest(req, new BodyTimeoutError());
    } else if (kind === T_IDLE) {
      this.destroy();
    }
  }

  /** Starts `req` on this (connected, free) connection. */
  assign(req: H1Request): void {
    this.req = req;
    req.conn = this;
    this.responseBytes = 0;
    this.disarm();
    this.parser.reset(req.method === 'HEAD', req.upgrade);
    if (!req.connectNotified) {
      req.connectNotified = true;
      req.handler.onConnect?.(req.abort);
      if (req.done) return;
    }
    const socket = this.socket;
    const body = req.body;
    if (body !== null) {
      // Head and body leave in one writev.
      socket.cork();
      holdUntilTurnEnds(socket);
      socket.write(req.head, 'latin1');
      socket.write(body);
      socket.uncork();
      req.bodyDone = true;
      req.handler.onBodySent?.(body);
      if (req.headersTimeout > 0) this.arm(T_HEADERS, req.headersTimeout);
    } else if (req.stream !== null) {
      holdUntilTurnEnds(socket);
      socket.write(req.head, 'latin1');
      if (typeof (req.stream as Readable).on === 'function')
        this.sendReadable(req, req.stream as Readable);
      else void this.sendIterable(req, req.stream as AsyncIterable<Buffer | string>);
    } else {
      holdUntilTurnEnds(socket);
      socket.write(req.head, 'latin1');
      req.bodyDone = true;
      if (req.headersTimeout > 0) this.arm(T_HEADERS, req.headersTimeout);
    }
  }

  /** Writes one piece of a streamed body; false when the socket wants a drain. */
  private writeBodyChunk(req: H1Request, chunk: Buffer): boolean {
    const socket = this.socket;
    if (req.contentLength >= 0) return socket.write(chunk);
    socket.cork();
    socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    socket.write(chunk);
    const ok = socket.write('\r\n', 'latin1');
    socket.uncork();
    return ok;
  }

  /** The whole streamed body was written. */
  private endBody(req: H1Request, sent: number): void {
    req.stopBody = null;
    if (req.contentLength >= 0 && sent !== req.contentLength) {
      this.failRequest(req, new ContentLengthMismatchError());
      return;
    }
    if (req.contentLength < 0) this.socket.write('0\r\n\r\n', 'latin1');
    req.bodyDone = true;
    if (req.headersTimeout > 0 && !this.parser.headComplete)
      this.arm(T_HEADERS, req.headersTimeout);
  }

  private sendReadable(req: H1Request, body: Readable): void {
    const socket = this.socket;
    let sent = 0;
    const onData = (data: Buffer | string) => {
      if (req.done || req.conn !== this) return;
      const chunk = typeof data === 'string' ? Buffer.from(data) : data;
      if (chunk.length === 0) return;
      req.bodyStarted = true;
      sent += chunk.length;
      if (req.contentLength >= 0 && sent > req.contentLength) {
        this.failRequest(req, new ContentLengthMismatchError());
        return;
      }
      const ok = this.writeBodyChunk(req, chunk);
      req.handler.onBodySent?.(chunk);
      if (!ok && req.conn === this && !req.done) {
        body.pause();
        socket.once('drain', onDrain);
      }
    };
    const onDrain = () => {
      if (!req.done && req.conn === this) body.resume();
    };
    const onEnd = () => {
      stop(false);
      if (!req.done && req.conn === this) this.endBody(req, sent);
    };
    const onError = (err: Error) => {
      stop(false);
      if (!req.done && req.conn === this) this.failRequest(req, err);
    };
    const onClose = () => {
      // 'close' without 'end': the source went away mid-body.
      if (!body.readableEnded) onError(new RequestAbortedError());
    };
    const stop = (pause: boolean) => {
      if (pause) body.pause();
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
      socket.off('drain', onDrain);
      if (req.stopBody === stop) req.stopBody = null;
    };
    req.stopBody = stop;
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
    if (body.readableEnded) onEnd();
    else body.resume();
  }

  private async sendIterable(
    req: H1Request,
    body: AsyncIterable<Buffer | Uint8Array | string>,
  ): Promise<void> {
    // An iterator cannot be restarted: the request is never replayed once this begins.
    req.bodyStarted = true;
    let sent = 0;
    try {
      for await (const data of body) {
        if (req.done || req.conn !== this) return;
        const chunk =
          typeof data === 'string'
            ? Buffer.from(data)
            : Buffer.isBuffer(data)
              ? data
              : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        if (chunk.length === 0) continue;
        sent += chunk.length;
        if (req.contentLength >= 0 && sent > req.contentLength) {
          this.failRequest(req, new ContentLengthMismatchError());
          return;
        }
        const ok = this.writeBodyChunk(req, chunk);
        req.handler.onBodySent?.(chunk);
        if (!ok) await waitDrain(this.socket);
      }
      if (!req.done && req.conn === this) this.endBody(req, sent);
    } catch (err) {
      if (!req.done && req.conn === this) this.failRequest(req, err as Error);
    }
  }

  // ------------------------------------------------------------------ response (ParserOwner)

  onHead(status: number, statusText: string, headers: string[]): boolean {
    const req = this.req!;
    if (status >= 200) {
      if (req.bodyTimeout > 0) this.arm(T_BODY, req.bodyTimeout);
      else this.disarm();
    }
    const more = req.handler.onHeaders?.(
      status,
      headers as unknown as Buffer[],
      this.resume,
      statusText,
    );
    if (more === false && this.req === req && !req.done) {
      this.pauseReading();
      return false;
    }
    return true;
  }

  onBody(chunk: Buffer): boolean {
    const req = this.req!;
    if (this.timeoutKind === T_BODY) this.deadline = Date.now() + req.bodyTimeout;
    const readBuffer = this.readBuffer;
    const inReadBuffer = readBuffer !== null && chunk.buffer === readBuffer.buffer;
    // Small pieces are copied (cheap, and node's write batching stays as it was); large ones
    // are handed over in place and the taker says whether it let go of them.
    if (inReadBuffer && chunk.length < ZERO_COPY_MIN_BYTES) chunk = Buffer.from(chunk);
    const more = req.handler.onData?.(chunk);
    if (
      inReadBuffer &&
      chunk.buffer === readBuffer.buffer &&
      req.handler.chunkReleased?.() !== true
    )
      this.readBufferHeld = true;
    if (more === false && this.req === req && !req.done) {
      this.pauseReading();
      return false;
    }
    return true;
  }

  onComplete(trailers: string[]): void {
    const req = this.req!;
    this.disarm();
    this.req = null;
    req.conn = null;
    req.done = true;
    this.served++;
    const hint = this.parser.keepAliveHintMs;
    // Leave a second of margin before the server's announced idle timeout.
    const idleMs = hint >= 0 ? Math.min(this.keepAliveIdleMs, hint - 1000) : this.keepAliveIdleMs;
    const reusable =
      this.parser.keepAlive &&
      !this.parser.trailingData &&
      req.bodyDone &&
      !req.reset &&
      idleMs > 0 &&
      !this.closed;
    if (!req.bodyDone) {
      // The server answered before taking the whole body: stop sending it.
      req.stopBody?.(true);
      req.stopBody = null;
    }
    req.handler.onComplete?.(trailers.length === 0 ? EMPTY : (trailers as unknown as Buffer[]));
    if (reusable) {
      // The handler may have said "pause" on the last chunk: an idle socket must read, to see
      // the server close it, and the next response must flow.
      if (this.socket.isPaused()) this.socket.resume();
      this.owner.onReusable(this, idleMs);
    } else this.destroy();
  }

  onUpgradeHead(status: number, _statusText: string, headers: string[], rest: Buffer): void {
    const req = this.req!;
    if (this.readBuffer !== null) {
      // The pool sends upgrades on their own stream-mode connection; a 101 here is unexpected.
      this.failRequest(req, new ResponseParseError('HPE_UNEXPECTED_UPGRADE', 'unexpected upgrade'));
      return;
    }
    this.req = null;
    req.conn = null;
    req.done = true;
    this.disarm();
    const socket = this.socket;
    socket.pause();
    socket.off('connect', this.onSocketConnect);
    socket.off('data', this.onSocketData);
    socket.off('end', this.onSocketEnd);
    socket.off('error', this.onSocketError);
    socket.off('close', this.onSocketClose);
    this.closed = true;
    untrack(this);
    this.owner.onClosed(this);
    if (rest.length > 0) socket.unshift(rest);
    if (req.handler.onUpgrade === undefined) socket.destroy();
    else req.handler.onUpgrade(status, headers as unknown as Buffer[], socket);
  }

  // ------------------------------------------------------------------ flow control

  private pauseReading(): void {
    this.socket.pause();
    // A paused response waits on the client, not on the upstream: no body timeout meanwhile.
    if (this.timeoutKind === T_BODY) this.deadline = 0;
  }

  /** Handed to onHeaders: the consumer drained, read on. */
  private readonly resume = (): void => {
    const req = this.req;
    if (req === null || !this.parser.isPaused) return;
    if (this.timeoutKind === T_BODY) this.deadline = Date.now() + req.bodyTimeout;
    if (!this.closed) this.socket.resume();
    try {
      this.parser.resume();
    } catch (err) {
      this.failRequest(req, err as Error);
      return;
    }
    if (this.closed && this.req === req && !req.done && !this.parser.isPaused)
      this.failRequest(req, this.error ?? new SocketClosedError());
  };

  // ------------------------------------------------------------------ socket events

  private readonly onSocketConnect = (): void => {
    this.connected = true;
    this.disarm();
    this.owner.onConnected(this);
  };

  /** net's `onread` callback: `buf` is the read buffer, valid until this returns. */
  private readonly onSocketRead = (nread: number, buf: Buffer): boolean => {
    if (nread === buf.length && buf.length < READ_BUFFER_BYTES) this.readBufferFull = true;
    try {
      this.onSocketData(buf.subarray(0, nread));
    } finally {
      this.parser.keepOwnCopies(buf);
    }
    return true;
  };

  /** net asks after each read where the next one goes. */
  private readonly nextReadBuffer = (): Buffer => {
    const current = this.readBuffer;
    if (this.readBufferHeld || current === null || this.readBufferFull) {
      const size =
        this.readBufferFull || (current !== null && current.length === READ_BUFFER_BYTES)
          ? READ_BUFFER_BYTES
          : READ_BUFFER_START_BYTES;
      this.readBuffer = Buffer.allocUnsafeSlow(size);
      this.readBufferHeld = false;
      this.readBufferFull = false;
    }
    return this.readBuffer!;
  };

  private readonly onSocketData = (chunk: Buffer): void => {
    const req = this.req;
    if (req === null) {
      // Bytes nobody asked for (on an idle connection): it cannot be trusted any more.
      this.destroy();
      return;
    }
    this.responseBytes += chunk.length;
    try {
      this.parser.execute(chunk);
    } catch (err) {
      if (this.req === req) this.failRequest(req, err as Error);
      else this.destroy();
    }
    // The request may have completed (and the connection moved on) during this read.
    try {
      req.handler.onReadDone?.();
    } catch (err) {
      if (this.req === req) this.failRequest(req, err as Error);
    }
  };

  private readonly onSocketEnd = (): void => {
    this.parser.eofSeen = true;
    if (this.req === null) {
      // The server closed an idle connection: never hand it out again.
      this.destroy();
      return;
    }
    if (this.req !== null && !this.parser.isPaused) {
      try {
        this.parser.finishAtEof();
      } catch (err) {
        if (this.req !== null) this.failRequest(this.req, err as Error);
      }
    }
  };

  private readonly onSocketError = (err: Error): void => {
    this.error ??= err;
  };

  private readonly onSocketClose = (): void => {
    this.closed = true;
    this.disarm();
    untrack(this);
    if (!this.connected) {
      this.owner.onConnectFailed(this, this.error ?? new SocketClosedError());
      return;
    }
    const req = this.req;
    if (req !== null && !req.done) {
      if (this.parser.isPaused) {
        // What was read is delivered first; resume() fails the request if it was not all.
        this.parser.eofSeen = true;
        this.owner.onClosed(this);
        return;
      }
      this.req = null;
      req.conn = null;
      this.parser.stop();
      if (this.responseBytes === 0 && this.served > 0 && req.replayable) {
        // The server closed an idle keep-alive connection as we wrote to it.
        req.stopBody?.(true);
        req.stopBody = null;
        this.owner.onClosed(this);
        this.owner.retryStale(req);
        return;
      }
      req.fail(this.error ?? new SocketClosedError());
    }
    this.owner.onClosed(this);
  };

  /** Fails the request this connection carries and drops the connection. */
  failRequest(req: H1Request, err: Error): void {
    if (this.req === req) this.req = null;
    req.conn = null;
    this.parser.stop();
    this.destroy();
    req.fail(err);
  }

  /** Waiting in the pool for the next request. */
  setIdle(idleMs: number): void {
    this.arm(T_IDLE, idleMs);
  }

  destroy(): void {
    this.disarm();
    this.closed = true;
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

function waitDrain(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
