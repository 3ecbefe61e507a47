import { ResponseParseError } from './common.js';

/**
 * An incremental, strict HTTP/1.1 response parser working on the socket's Buffers.
 *
 * The head is scanned in JS once it is complete (found by `\r\n\r\n`; heads almost always arrive
 * in one read), validating as llhttp does in its strict mode: `HTTP/1.0` or `HTTP/1.1`, a
 * three-digit status 100-599, CRLF line endings only (a bare LF or CR is an error), token header
 * names directly followed by `:`, no control characters in values, no obs-fold, one
 * Content-Length of digits only, never both Content-Length and Transfer-Encoding. Bodies are
 * framed by Content-Length, chunked coding (extensions checked, trailers parsed) or the end of
 * the connection, and handed over as zero-copy slices of the socket's chunks.
 *
 * Header names and values are handed over as latin1 strings (`rawHeaders` in undici's terms):
 * consumers convert with `toString('latin1')`, which is the identity on a string.
 */
export interface ParserOwner {
  /** A complete head (1xx included); return false to pause before the body. */
  onHead(status: number, statusText: string, headers: string[]): boolean;
  /** A 101 to an upgrade request: the parser stops; `rest` is what followed the head. */
  onUpgradeHead(status: number, statusText: string, headers: string[], rest: Buffer): void;
  /** A slice of the body; return false to pause. */
  onBody(chunk: Buffer): boolean;
  onComplete(trailers: string[]): void;
}

const MAX_HEAD_SIZE = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;
const SEMICOLON = 59;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

const S_HEAD = 0;
const S_BODY_LENGTH = 1;
const S_CHUNK_SIZE = 2;
const S_CHUNK_EXT = 3;
const S_CHUNK_SIZE_LF = 4;
const S_CHUNK_DATA = 5;
const S_CHUNK_DATA_CR = 6;
const S_CHUNK_DATA_LF = 7;
const S_TRAILERS = 8;
const S_BODY_EOF = 9;
const S_DONE = 10;
const S_STOPPED = 11;

/** tchar (RFC 9110 §5.6.2). */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TOKEN[c] = 1;
for (let c = 65; c <= 90; c++) TOKEN[c] = 1;
for (let c = 97; c <= 122; c++) TOKEN[c] = 1;

/** field-vchar, SP and HTAB (obs-text included): everything but controls and DEL. */
const VALUE = new Uint8Array(256);
VALUE[HTAB] = 1;
for (let c = 32; c < 256; c++) if (c !== 127) VALUE[c] = 1;

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[65 + c] = 10 + c;
  HEX[97 + c] = 10 + c;
}

function fail(code: string, message: string): never {
  throw new ResponseParseError(code, message);
}

const latin1 = (buf: Buffer, start: number, end: number): string =>
  (buf as Buffer & { latin1Slice(s: number, e: number): string }).latin1Slice(start, end);

/**
 * Field names most responses carry, in the two spellings servers use. A name whose bytes are one
 * of these becomes that constant string instead of a new one sliced from the read: no native
 * call and no allocation per field, and the constant's hash and lowercase form (lowerFieldName)
 * are computed once instead of for every response.
 */
const KNOWN_FIELD_NAMES = [
  'Accept-Ranges',
  'Access-Control-Allow-Origin',
  'Age',
  'Cache-Control',
  'Connection',
  'Content-Encoding',
  'Content-Language',
  'Content-Length',
  'Content-Range',
  'Content-Security-Policy',
  'Content-Type',
  'Date',
  'ETag',
  'Expires',
  'Keep-Alive',
  'Last-Modified',
  'Link',
  'Location',
  'Pragma',
  'Referrer-Policy',
  'Server',
  'Set-Cookie',
  'Strict-Transport-Security',
  'Transfer-Encoding',
  'Vary',
  'Via',
  'X-Content-Type-Options',
  'X-Frame-Options',
  'X-Powered-By',
];
const KNOWN_BY_LENGTH: Array<Array<{ bytes: Uint8Array; name: string }>> = [];
const LOWER_FIELD_NAMES = new Map<string, string>();
for (const canonical of KNOWN_FIELD_NAMES) {
  const lower = canonical.toLowerCase();
  for (const name of new Set([canonical, lower])) {
    (KNOWN_BY_LENGTH[name.length] ??= []).push({ bytes: Buffer.from(name, 'latin1'), name });
    LOWER_FIELD_NAMES.set(name, lower);
  }
}

/** The known name spelled by buf[start, end), or undefined. */
function knownFieldName(buf: Buffer, start: number, end: number): string | undefined {
  const candidates = KNOWN_BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  next: for (const known of candidates) {
    const bytes = known.bytes;
    for (let i = 0; i < bytes.length; i++) if (buf[start + i] !== bytes[i]) continue next;
    return known.name;
  }
  return undefined;
}

/** `name.toLowerCase()`, from a table for the names the parser knows. */
export function lowerFieldName(name: string): string {
  return LOWER_FIELD_NAMES.get(name) ?? name.toLowerCase();
}

export class ResponseParser {
  private readonly owner: ParserOwner;
  private state = S_HEAD;
  /** A head, chunk line or trailer section split across reads. */
  private partial: Buffer | null = null;
  private remaining = 0;
  private chunkDigits = 0;
  private chunkLine = 0;
  private paused = false;
  private pending: Buffer | null = null;

  // Per request.
  private noBody = false;
  private expectUpgrade = false;

  // Per response, set by the head scan.
  /** The connection may carry another request after this response. */
  keepAlive = true;
  /** Idle time the server announced with `Keep-Alive: timeout=N` (ms), or -1. */
  keepAliveHintMs = -1;
  /** Bytes followed the complete response: the connection cannot be reused. */
  trailingData = false;
  private contentLength = -1;
  private chunked = false;
  private hasTransferEncoding = false;
  private minorVersion = 1;

  constructor(owner: ParserOwner) {
    this.owner = owner;
  }

  /** Prepares for the response to the next request. */
  reset(noBody: boolean, expectUpgrade: boolean): void {
    this.state = S_HEAD;
    this.partial = null;
    this.paused = false;
    this.pending = null;
    this.noBody = noBody;
    this.expectUpgrade = expectUpgrade;
    this.trailingData = false;
    this.eofSeen = false;
    this.keepAlive = true;
    this.keepAliveHintMs = -1;
  }

  /** No further callback for this response (aborted, or the connection is gone). */
  stop(): void {
    this.state = S_STOPPED;
    this.pending = null;
    this.partial = null;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** The body runs until the connection closes. */
  get readsUntilClose(): boolean {
    return this.state === S_BODY_EOF;
  }

  get headComplete(): boolean {
    return this.state !== S_HEAD;
  }

  /** The connection ended: completes a read-until-close body; false when that was not it. */
  finishAtEof(): boolean {
    if (this.state !== S_BODY_EOF || this.paused) return false;
    this.state = S_DONE;
    this.owner.onComplete([]);
    return true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const pending = this.pending;
    if (pending !== null) {
      this.pending = null;
      this.execute(pending);
    }
    if (!this.paused && this.eofSeen) this.finishAtEof();
  }

  /** Set by the connection when the socket ended while the parser was paused. */
  eofSeen = false;

  /** Feeds one read. Throws ResponseParseError on malformed input. */
  execute(buf: Buffer): void {
    if (this.paused) {
      this.pending = this.pending === null ? buf : Buffer.concat([this.pending, buf]);
      return;
    }
    let offset = 0;
    const owner = this.owner;
    while (offset < buf.length) {
      switch (this.state) {
        case S_HEAD: {
          let from = 0;
          if (this.partial !== null) {
            from = Math.max(0, this.partial.length - 3);
            buf = Buffer.concat([this.partial, offset === 0 ? buf : buf.subarray(offset)]);
            this.partial = null;
            offset = 0;
          } else {
            from = offset;
          }
          const end = buf.indexOf(HEAD_END, from);
          if (end === -1 || end - offset > MAX_HEAD_SIZE) {
            const part = offset === 0 ? buf : buf.subarray(offset);
            if (part.length > MAX_HEAD_SIZE)
              fail('HPE_HEADER_OVERFLOW', 'response head larger than 64 KiB');
            checkLineEnds(part);
            this.partial = part;
            return;
          }
          const headers: string[] = [];
          const status = this.scanHead(buf, offset, end + 2, headers);
          offset = end + 4;
          const text = this.statusText;
          if (status < 200) {
            if (status === 101) {
              if (!this.expectUpgrade) fail('HPE_INVALID_STATUS', '101 without an upgrade request');
              this.state = S_STOPPED;
              owner.onUpgradeHead(status, text, headers, buf.subarray(offset));
              return;
            }
            // 1xx interim response: the final one follows on the same connection.
            owner.onHead(status, text, headers);
            if (this.state !== S_HEAD) return;
            continue;
          }
          this.frame(status);
          const more = owner.onHead(status, text, headers);
          if (this.current() === S_STOPPED) return;
          if (this.current() === S_DONE) {
            this.trailingData = offset < buf.length;
            owner.onComplete([]);
            return;
          }
          if (more === false) return this.pause(buf, offset);
          break;
        }
        case S_BODY_LENGTH:
        case S_CHUNK_DATA:
        case S_BODY_EOF: {
          const available = buf.length - offset;
          let chunk: Buffer;
          if (this.state === S_BODY_EOF || this.remaining >= available) {
            chunk = offset === 0 ? buf : buf.subarray(offset);
            if (this.state !== S_BODY_EOF) this.remaining -= available;
            offset = buf.length;
          } else {
            chunk = buf.subarray(offset, offset + this.remaining);
            offset += this.remaining;
            this.remaining = 0;
          }
          const more = owner.onBody(chunk);
          if (this.current() === S_STOPPED) return;
          if (this.remaining === 0) {
            if (this.state === S_BODY_LENGTH) {
              this.state = S_DONE;
              this.trailingData = offset < buf.length;
              owner.onComplete([]);
              return;
            }
            if (this.state === S_CHUNK_DATA) this.state = S_CHUNK_DATA_CR;
          }
          if (more === false) return this.pause(buf, offset);
          break;
        }
        case S_CHUNK_SIZE: {
          const c = buf[offset];
          const digit = HEX[c];
          if (digit >= 0) {
            // 13 hex digits stay below 2^53: larger sizes are refused, not rounded.
            if (++this.chunkDigits > 13) fail('HPE_INVALID_CHUNK_SIZE', 'chunk size too large');
            this.remaining = this.remaining * 16 + digit;
            offset++;
          } else if (this.chunkDigits === 0) {
            fail('HPE_INVALID_CHUNK_SIZE', 'invalid character in chunk size');
          } else if (c === CR) {
            this.state = S_CHUNK_SIZE_LF;
            offset++;
          } else if (c === SEMICOLON) {
            this.state = S_CHUNK_EXT;
            this.chunkLine = 0;
            offset++;
          } else {
            fail('HPE_INVALID_CHUNK_SIZE', 'invalid character in chunk size');
          }
          break;
        }
        case S_CHUNK_EXT: {
          // Extensions are ignored, but must be visible characters (no CTL, no bare LF).
          const c = buf[offset++];
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (VALUE[c] !== 1) fail('HPE_STRICT', 'invalid character in chunk extension');
          else if (++this.chunkLine > MAX_CHUNK_LINE)
            fail('HPE_CHUNK_EXTENSIONS_OVERFLOW', 'chunk extensions too long');
          break;
        }
        case S_CHUNK_SIZE_LF: {
          if (buf[offset++] !== LF) fail('HPE_LF_EXPECTED', 'missing LF after chunk size');
          this.chunkDigits = 0;
          this.state = this.remaining === 0 ? S_TRAILERS : S_CHUNK_DATA;
          break;
        }
        case S_CHUNK_DATA_CR: {
          if (buf[offset++] !== CR) fail('HPE_STRICT', 'missing CRLF after chunk data');
          this.state = S_CHUNK_DATA_LF;
          break;
        }
        case S_CHUNK_DATA_LF: {
          if (buf[offset++] !== LF) fail('HPE_LF_EXPECTED', 'missing LF after chunk data');
          this.state = S_CHUNK_SIZE;
          this.remaining = 0;
          break;
        }
        case S_TRAILERS: {
          if (this.partial !== null) {
            buf = Buffer.concat([this.partial, offset === 0 ? buf : buf.subarray(offset)]);
            this.partial = null;
            offset = 0;
          }
          if (buf.length - offset < 2) {
            this.partial = buf.subarray(offset);
            return;
          }
          let trailers: string[];
          if (buf[offset] === CR) {
            if (buf[offset + 1] !== LF) fail('HPE_LF_EXPECTED', 'missing LF after last chunk');
            offset += 2;
            trailers = [];
          } else {
            const end = buf.indexOf(HEAD_END, offset);
            if (end === -1) {
              const part = buf.subarray(offset);
              if (part.length > MAX_HEAD_SIZE)
                fail('HPE_HEADER_OVERFLOW', 'response trailers larger than 64 KiB');
              checkLineEnds(part);
              this.partial = part;
              return;
            }
            trailers = [];
            scanFields(buf, offset, end + 2, trailers, null);
            offset = end + 4;
          }
          this.state = S_DONE;
          this.trailingData = offset < buf.length;
          owner.onComplete(trailers);
          return;
        }
        case S_DONE:
          // Data after a complete response: the connection is not reused.
          this.trailingData = true;
          return;
        default:
          return;
      }
    }
  }

  /**
   * The caller is about to read into `buf`'s memory again: whatever the parser keeps from it
   * (a partial head or chunk line, the unread rest of a paused read) becomes its own copy.
   */
  keepOwnCopies(buf: Buffer): void {
    if (this.pending !== null && this.pending.buffer === buf.buffer)
      this.pending = Buffer.from(this.pending);
    if (this.partial !== null && this.partial.buffer === buf.buffer)
      this.partial = Buffer.from(this.partial);
  }

  /** The state after a callback, which may have stopped the parser (defeats narrowing). */
  private current(): number {
    return this.state;
  }

  private pause(buf: Buffer, offset: number): void {
    this.paused = true;
    if (offset < buf.length) this.pending = buf.subarray(offset);
  }

  private statusText = '';

  /** Scans the status line and fields of [start, end) (end: after the last field's CRLF). */
  private scanHead(buf: Buffer, start: number, end: number, headers: string[]): number {
    if (
      buf[start] !== 72 || // H
      buf[start + 1] !== 84 || // T
      buf[start + 2] !== 84 ||
      buf[start + 3] !== 80 || // P
      buf[start + 4] !== 47 || // /
      buf[start + 5] !== 49 || // 1
      buf[start + 6] !== 46 || // .
      (buf[start + 7] !== 48 && buf[start + 7] !== 49) ||
      buf[start + 8] !== SP
    )
      fail('HPE_INVALID_VERSION', 'invalid HTTP version in the status line');
    this.minorVersion = buf[start + 7] - 48;
    const d1 = buf[start + 9] - 48;
    const d2 = buf[start + 10] - 48;
    const d3 = buf[start + 11] - 48;
    // Written as positive ranges so that a byte past the end (NaN) fails too.
    if (!(d1 >= 1 && d1 <= 5 && d2 >= 0 && d2 <= 9 && d3 >= 0 && d3 <= 9))
      fail('HPE_INVALID_STATUS', 'invalid status code');
    const status = d1 * 100 + d2 * 10 + d3;
    let p = start + 12;
    let textStart = p;
    if (buf[p] === SP) {
      textStart = ++p;
      while (buf[p] !== CR) {
        if (VALUE[buf[p]] !== 1) fail('HPE_INVALID_STATUS', 'invalid character in reason phrase');
        p++;
      }
    } else if (buf[p] !== CR) {
      fail('HPE_INVALID_STATUS', 'invalid status line');
    }
    if (buf[p + 1] !== LF) fail('HPE_LF_EXPECTED', 'missing LF after the status line');
    this.statusText = p > textStart ? latin1(buf, textStart, p) : '';
    this.contentLength = -1;
    this.chunked = false;
    this.hasTransferEncoding = false;
    this.keepAlive = this.minorVersion === 1;
    scanFields(buf, p + 2, end, headers, this);
    return status;
  }

  /** Called by scanFields for the few fields that frame the message or the connection. */
  onFramingField(lowerName: string, value: string): void {
    switch (lowerName) {
      case 'content-length': {
        if (this.contentLength !== -1)
          fail('HPE_UNEXPECTED_CONTENT_LENGTH', 'duplicate Content-Length');
        if (value.length === 0 || value.length > 15 || !/^[0-9]+$/.test(value))
          fail('HPE_INVALID_CONTENT_LENGTH', 'invalid Content-Length');
        this.contentLength = Number(value);
        break;
      }
      case 'transfer-encoding': {
        this.hasTransferEncoding = true;
        if (value.length === 7 && value.toLowerCase() === 'chunked' && !this.chunked) {
          this.chunked = true;
          break;
        }
        // Several fields are one list; only a final `chunked` frames the body.
        const codings = value.toLowerCase().split(',');
        for (let i = 0; i < codings.length; i++) {
          const coding = codings[i].trim();
          if (coding === 'chunked') {
            if (i !== codings.length - 1 || this.chunked)
              fail('HPE_INVALID_TRANSFER_ENCODING', 'chunked must be the last coding, once');
            this.chunked = true;
          } else if (this.chunked) {
            fail('HPE_INVALID_TRANSFER_ENCODING', 'chunked must be the last coding');
          }
        }
        this.hasTransferEncoding = true;
        break;
      }
      case 'connection': {
        // The common values first, without splitting.
        if (value.length === 10 && value.toLowerCase() === 'keep-alive') {
          if (this.minorVersion === 0) this.keepAlive = true;
          break;
        }
        if (value.length === 5 && value.toLowerCase() === 'close') {
          this.keepAlive = false;
          break;
        }
        for (const token of value.toLowerCase().split(',')) {
          const t = token.trim();
          if (t === 'close') this.keepAlive = false;
          else if (t === 'keep-alive' && this.minorVersion === 0) this.keepAlive = true;
        }
        break;
      }
      case 'keep-alive': {
        const m = /(?:^|[\s,])timeout\s*=\s*"?(\d+)/i.exec(value);
        if (m !== null) this.keepAliveHintMs = Number(m[1]) * 1000;
        break;
      }
    }
  }

  /** Picks the body framing of a final (>= 200) response. */
  private frame(status: number): void {
    if (this.contentLength !== -1 && this.hasTransferEncoding)
      fail('HPE_UNEXPECTED_CONTENT_LENGTH', 'both Content-Length and Transfer-Encoding');
    if (this.noBody || status === 204 || status === 304) {
      this.state = S_DONE;
    } else if (this.chunked) {
      this.state = S_CHUNK_SIZE;
      this.remaining = 0;
      this.chunkDigits = 0;
    } else if (this.hasTransferEncoding) {
      // A response with a coding other than chunked runs until the connection closes.
      this.state = S_BODY_EOF;
      this.keepAlive = false;
    } else if (this.contentLength !== -1) {
      this.remaining = this.contentLength;
      this.state = this.contentLength === 0 ? S_DONE : S_BODY_LENGTH;
    } else {
      this.state = S_BODY_EOF;
      this.keepAlive = false;
    }
  }
}

/**
 * Scans field lines in [p, end) into `out` as [name, value, ...]. `end` is just past the last
 * line's CRLF, so every line is known to end with CR; a CR not followed by LF, a bare LF or any
 * control character is an error.
 */
function scanFields(
  buf: Buffer,
  p: number,
  end: number,
  out: string[],
  framing: ResponseParser | null,
): void {
  while (p < end) {
    const nameStart = p;
    while (TOKEN[buf[p]] === 1) p++;
    if (p === nameStart || buf[p] !== COLON)
      fail('HPE_INVALID_HEADER_TOKEN', 'invalid header field name');
    const nameEnd = p++;
    while (buf[p] === SP || buf[p] === HTAB) p++;
    const valueStart = p;
    let valueEnd = p;
    for (;;) {
      const c = buf[p];
      if (c === CR) break;
      if (VALUE[c] !== 1) fail('HPE_INVALID_HEADER_TOKEN', 'invalid character in header value');
      p++;
      if (c !== SP && c !== HTAB) valueEnd = p;
    }
    if (buf[p + 1] !== LF) fail('HPE_LF_EXPECTED', 'missing LF after a header field');
    p += 2;
    const name = knownFieldName(buf, nameStart, nameEnd) ?? latin1(buf, nameStart, nameEnd);
    const value = valueEnd > valueStart ? latin1(buf, valueStart, valueEnd) : '';
    out.push(name, value);
    if (framing !== null) {
      const length = nameEnd - nameStart;
      if (length === 14 || length === 17 || length === 10)
        framing.onFramingField(lowerFieldName(name), value);
    }
  }
}

/** Fails early on a bare LF or CR in a head still being received (it would never end). */
function checkLineEnds(part: Buffer): void {
  let i = part.indexOf(LF);
  while (i !== -1) {
    if (i === 0 || part[i - 1] !== CR) fail('HPE_LF_EXPECTED', 'bare LF in the response head');
    i = part.indexOf(LF, i + 1);
  }
  i = part.indexOf(CR);
  while (i !== -1 && i < part.length - 1) {
    if (part[i + 1] !== LF) fail('HPE_LF_EXPECTED', 'bare CR in the response head');
    i = part.indexOf(CR, i + 1);
  }
}
