import type { OutgoingHeaders, RequestContext, ResponseWriter } from '../../core/context.js';
import {
  compressWhole,
  createDecoder,
  createEncoder,
  flushKind,
  LARGE_CHUNK_SIZE,
  type CodecStream,
  type Encoding,
  type EncoderHints,
  type Levels,
  type WholeJob,
} from './codecs.js';
import type { EncodingNegotiator } from './negotiate.js';
import { mediaType, type TypeMatcher } from './types.js';

/** Everything a route's compression needs, built once in create() and shared by its requests. */
export interface CompressionPolicy {
  readonly negotiator: EncodingNegotiator;
  readonly matchType: TypeMatcher;
  readonly minLength: number;
  readonly levels: Levels;
  readonly cachedLevels: Levels;
  readonly decompress: boolean;
  /** A stream failed mid-body (the response is cut); `stage` says which side is to blame. */
  onStreamError(ctx: RequestContext, stage: 'decode' | 'encode', coding: string, err: Error): void;
}

/**
 * Per-request state key another feature (the cache) may set to true or false to say whether this
 * response will be stored, overriding the Cache-Control heuristic that picks the cached level.
 */
export const CACHEABLE_STATE = 'compression.cacheable';

/**
 * Bodies with a declared length up to this many bytes are collected and compressed in one call
 * (see WholeBody) and sent with an exact Content-Length; longer or open-ended bodies stream.
 */
export const WHOLE_BODY_LIMIT = 1024 * 1024;

/**
 * At most this many bytes of whole bodies are held at once, process-wide, so a burst of large
 * responses cannot pile up memory: past it, new responses take the streaming path instead.
 */
export const WHOLE_BODY_BUDGET = 64 * 1024 * 1024;

let wholeBodyBytes = 0;
const EMPTY = Buffer.alloc(0);

/** Bytes currently held by responses waiting to be compressed whole (for tests and metrics). */
export function wholeBodyBytesHeld(): number {
  return wholeBodyBytes;
}

/** What a transformed body is written to: the streaming pipeline or a whole-body compressor. */
interface BodySink {
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): void;
  destroy(): void;
  onceDrain(listener: () => void): void;
}

/**
 * Stands in for `ctx.res`. At writeHead time, with the status, the final headers and the request
 * in hand, it decides once whether the body is transformed; when it is not, it steps aside (puts
 * the writer it wraps back on `ctx.res`) so the rest of the response pays nothing.
 */
export class CompressingWriter implements ResponseWriter {
  private readonly ctx: RequestContext;
  private readonly inner: ResponseWriter;
  private readonly policy: CompressionPolicy;
  private decided = false;
  private ended = false;
  private pipeline: BodySink | null = null;

  constructor(ctx: RequestContext, inner: ResponseWriter, policy: CompressionPolicy) {
    this.ctx = ctx;
    this.inner = inner;
    this.policy = policy;
  }

  get headersSent(): boolean {
    // A whole body holds its head back until it is compressed; for the caller it is sent.
    return this.pipeline !== null || this.inner.headersSent;
  }

  get writableEnded(): boolean {
    return this.pipeline === null ? this.inner.writableEnded : this.ended;
  }

  get destroyed(): boolean {
    return this.inner.destroyed;
  }

  writeHead(status: number, headers?: OutgoingHeaders): unknown {
    if (this.decided) return this.inner.writeHead(status, headers);
    this.decided = true;
    const head = headers ?? {};
    const plan = this.plan(status, head);
    if (plan !== null && takesWholeBody(plan)) {
      this.pipeline = new WholeBody(this.ctx, this.inner, this.policy, plan, status, head);
      return this;
    }
    this.inner.writeHead(status, head);
    if (plan === null) {
      if (this.ctx.res === this) this.ctx.res = this.inner;
    } else {
      this.pipeline = new BodyPipeline(this.ctx, this.inner, this.policy, plan);
    }
    return this;
  }

  write(chunk: Buffer | string): boolean {
    const pipeline = this.pipeline;
    return pipeline === null ? this.inner.write(chunk) : pipeline.write(chunk);
  }

  end(chunk?: Buffer | string): unknown {
    const pipeline = this.pipeline;
    if (pipeline === null) return this.inner.end(chunk);
    this.ended = true;
    pipeline.end(chunk);
    return this;
  }

  addTrailers(headers: Record<string, string>): void {
    this.inner.addTrailers(headers);
  }

  once(event: 'drain' | 'close', listener: () => void): unknown {
    if (event === 'drain' && this.pipeline !== null) this.pipeline.onceDrain(listener);
    else this.inner.once(event, listener);
    return this;
  }

  destroy(error?: Error): unknown {
    this.pipeline?.destroy();
    return this.inner.destroy(error);
  }

  /**
   * The skip rules, in order: statuses without a transformable body, ranges, no-transform, an
   * existing Content-Encoding (decoded only where enabled and needed), then type and size. Edits
   * `headers` in place; returns null to pass the body through untouched.
   */
  private plan(status: number, headers: OutgoingHeaders): PipelinePlan | null {
    const ctx = this.ctx;
    if (status === 304) {
      matchWeakenedValidator(headers, ctx.req.headers['if-none-match']);
      return null;
    }
    if (status < 200 || status === 204 || status === 206) return null;
    if (headers['content-range'] !== undefined) return null;
    if (
      hasNoTransform(headers['cache-control']) ||
      hasNoTransform(ctx.req.headers['cache-control'])
    )
      return null;
    const policy = this.policy;
    const contentType = firstValue(headers['content-type']);
    const typeOk = contentType !== undefined && policy.matchType(contentType);
    const coding = firstValue(headers['content-encoding']);
    if (coding !== undefined && coding !== '' && coding.toLowerCase() !== 'identity') {
      return policy.decompress ? this.planDecode(coding, typeOk, headers) : null;
    }
    const length = contentLength(headers);
    const negotiated = policy.negotiator.negotiate(ctx.req.headers['accept-encoding']);
    if (!typeOk || (length >= 0 && length < policy.minLength)) {
      // Not worth it, unless the client refuses an uncoded body: then a coding is the only
      // acceptable answer (RFC 9110 §12.5.3), whatever the type or size.
      if (negotiated.identity || negotiated.encoding === null) return null;
    }
    // From here the representation depends on Accept-Encoding, whatever this client chose.
    mergeVary(headers);
    if (ctx.method === 'HEAD' || negotiated.encoding === null) return null;
    const plan = newPlan(
      headers,
      contentType,
      length,
      null,
      negotiated.encoding,
      this.level(headers),
    );
    rewriteHeaders(headers, negotiated.encoding);
    return plan;
  }

  /** An upstream body already coded: pass it on when the client reads it, else decode it. */
  private planDecode(
    coding: string,
    typeOk: boolean,
    headers: OutgoingHeaders,
  ): PipelinePlan | null {
    const token = coding.trim().toLowerCase();
    // Layered codings (`gzip, br`) are rare enough to pass through as they are.
    if (token.includes(',')) return null;
    if (!canDecode(token)) return null;
    const negotiated = this.policy.negotiator.negotiate(this.ctx.req.headers['accept-encoding']);
    mergeVary(headers);
    if (negotiated.accepted.has(token) || this.ctx.method === 'HEAD') return null;
    const decoder = createDecoder(token);
    if (decoder === null) return null;
    let encoding = negotiated.encoding;
    if (encoding !== null && !typeOk && negotiated.identity) encoding = null;
    const contentType = firstValue(headers['content-type']);
    const plan = newPlan(headers, contentType, -1, decoder, encoding, this.level(headers));
    plan.decodedFrom = token;
    rewriteHeaders(headers, encoding);
    return plan;
  }

  private level(headers: OutgoingHeaders): Levels {
    const override = this.ctx.getState<boolean>(CACHEABLE_STATE);
    const cacheable = override ?? isSharedCacheable(headers);
    return cacheable ? this.policy.cachedLevels : this.policy.levels;
  }
}

interface PipelinePlan {
  decoder: CodecStream | null;
  decodedFrom: string;
  encoding: Encoding | null;
  levels: Levels;
  length: number;
  text: boolean;
  /** 'each': after every chunk (event streams); 'idle': when the upstream pauses; 'none'. */
  flush: 'each' | 'idle' | 'none';
}

/**
 * Whether the body is compressed whole: its length is known and small enough, it is not being
 * decoded, it is not an event stream, and the process-wide budget has room for it.
 */
function takesWholeBody(plan: PipelinePlan): boolean {
  return (
    plan.decoder === null &&
    plan.encoding !== null &&
    plan.flush === 'none' &&
    plan.length >= 0 &&
    plan.length <= WHOLE_BODY_LIMIT &&
    wholeBodyBytes + plan.length <= WHOLE_BODY_BUDGET
  );
}

/**
 * A body of known, bounded length compressed in one call. The upstream's bytes are copied into
 * one buffer of the declared size as they arrive (writes never push back: the size is bounded),
 * and at the end zlib's one-shot API compresses it on libuv's thread pool. The head waits for
 * the result so it can carry the exact Content-Length. Against the streaming pipeline this saves
 * the per-chunk stream machinery (one thread-pool job and one callback instead of several per
 * chunk) and answers with a fixed length instead of chunked framing.
 */
class WholeBody implements BodySink, WholeJob {
  private readonly ctx: RequestContext;
  private readonly inner: ResponseWriter;
  private readonly policy: CompressionPolicy;
  private readonly plan: PipelinePlan;
  private readonly status: number;
  private readonly headers: OutgoingHeaders;
  private body: Buffer | null;
  private filled = 0;
  /** Bytes counted in wholeBodyBytes for this response; 0 once given back. */
  private reserved: number;
  private compressing = false;
  private failed = false;
  // WholeJob: what compressWhole reads once end() hands the body over.
  encoding: Encoding;
  level = 0;
  hints: EncoderHints = { length: 0, text: false };
  input: Buffer = EMPTY;

  constructor(
    ctx: RequestContext,
    inner: ResponseWriter,
    policy: CompressionPolicy,
    plan: PipelinePlan,
    status: number,
    headers: OutgoingHeaders,
  ) {
    this.ctx = ctx;
    this.inner = inner;
    this.policy = policy;
    this.plan = plan;
    this.status = status;
    this.headers = headers;
    this.encoding = plan.encoding as Encoding;
    this.body = Buffer.allocUnsafe(plan.length);
    this.reserved = plan.length;
    wholeBodyBytes += plan.length;
    inner.once('close', this.onInnerClose);
  }

  write(chunk: Buffer | string): boolean {
    const body = this.body;
    if (body === null || this.compressing) return true;
    const size = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (this.filled + size > body.length) {
      this.fail(new Error('the body is longer than its Content-Length'));
      return true;
    }
    if (typeof chunk === 'string') body.write(chunk, this.filled);
    else chunk.copy(body, this.filled);
    this.filled += size;
    return true;
  }

  end(chunk?: Buffer | string): void {
    if (chunk !== undefined) this.write(chunk);
    const body = this.body;
    if (body === null || this.compressing) return;
    this.compressing = true;
    this.level = this.plan.levels[this.encoding];
    this.hints = { length: this.filled, text: this.plan.text };
    // Fewer bytes than declared can only come from a generated body: code what is there.
    this.input = this.filled === body.length ? body : body.subarray(0, this.filled);
    compressWhole(this);
  }

  get cancelled(): boolean {
    return this.failed;
  }

  done(error: Error | null, result: Buffer | null, skipped: boolean): void {
    this.input = EMPTY;
    this.release();
    if (skipped || this.failed) return;
    if (error !== null || result === null) {
      this.fail(error ?? new Error('no output'));
      return;
    }
    const inner = this.inner;
    if (inner.destroyed) return;
    this.headers['content-length'] = result.length;
    inner.writeHead(this.status, this.headers);
    inner.end(result);
  }

  destroy(): void {
    this.failed = true;
    // Once handed to compressWhole the buffer stays referenced until done() gives it back.
    if (!this.compressing) this.release();
  }

  onceDrain(listener: () => void): void {
    this.inner.once('drain', listener);
  }

  private release(): void {
    this.body = null;
    wholeBodyBytes -= this.reserved;
    this.reserved = 0;
  }

  private readonly onInnerClose = () => {
    // The client went away before the answer was ready: drop the collected body now.
    if (this.body !== null) this.destroy();
  };

  private fail(err: Error): void {
    if (this.failed) return;
    this.destroy();
    this.policy.onStreamError(this.ctx, 'encode', this.plan.encoding ?? '', err);
    // Nothing has been sent, but the caller believes the head is out: cut, as a stream would.
    this.inner.destroy();
  }
}

function newPlan(
  headers: OutgoingHeaders,
  contentType: string | undefined,
  length: number,
  decoder: CodecStream | null,
  encoding: Encoding | null,
  levels: Levels,
): PipelinePlan {
  const type = contentType === undefined ? '' : mediaType(contentType);
  let flush: PipelinePlan['flush'] = 'none';
  if (type === 'text/event-stream') flush = 'each';
  // A body of unknown length may be a stream or a long poll trickling in: do not let the
  // compressor sit on what it has once the upstream goes quiet.
  else if (headers['content-length'] === undefined) flush = 'idle';
  return {
    decoder,
    decodedFrom: '',
    encoding,
    levels,
    length,
    text: type.startsWith('text/') || type.endsWith('json') || type.endsWith('xml'),
    flush,
  };
}

/**
 * The running transform of one response body: [decoder] → [encoder] → the wrapped writer, with
 * backpressure at every step. Writes go to `input`; what comes out of `output` is written to the
 * wrapped writer, and `output` is paused while that writer is full.
 */
class BodyPipeline implements BodySink {
  readonly input: CodecStream;
  private readonly output: CodecStream;
  private readonly encoder: CodecStream | null;
  private readonly decoder: CodecStream | null;
  private readonly ctx: RequestContext;
  private readonly inner: ResponseWriter;
  private readonly policy: CompressionPolicy;
  private readonly plan: PipelinePlan;
  private readonly kind: number | undefined;
  private outputPaused = false;
  private flushScheduled = false;
  private failed = false;
  private finished = false;

  constructor(
    ctx: RequestContext,
    inner: ResponseWriter,
    policy: CompressionPolicy,
    plan: PipelinePlan,
  ) {
    this.ctx = ctx;
    this.inner = inner;
    this.policy = policy;
    this.plan = plan;
    const encoding = plan.encoding;
    this.decoder = plan.decoder;
    this.encoder =
      encoding === null
        ? null
        : createEncoder(
            encoding,
            plan.levels[encoding],
            { length: plan.length, text: plan.text },
            // A fixed-length body (longer than WHOLE_BODY_LIMIT here) comes in large pieces.
            plan.flush === 'none' ? LARGE_CHUNK_SIZE : undefined,
          );
    this.kind = encoding === null ? undefined : flushKind(encoding);
    this.input = (this.decoder ?? this.encoder) as CodecStream;
    this.output = (this.encoder ?? this.decoder) as CodecStream;
    if (this.decoder !== null) {
      this.decoder.on('error', this.onDecodeError);
      if (this.encoder !== null) {
        this.decoder.on('data', this.onDecoded);
        this.decoder.once('end', this.onDecodedEnd);
      }
    }
    if (this.encoder !== null) this.encoder.on('error', this.onEncodeError);
    this.output.on('data', this.onOutput);
    this.output.once('end', this.onOutputEnd);
    inner.once('close', this.onInnerClose);
  }

  write(chunk: Buffer | string): boolean {
    if (this.failed) return true;
    const ok = this.input.write(chunk);
    if (this.decoder === null) this.afterEncoderWrite();
    return ok;
  }

  end(chunk?: Buffer | string): void {
    if (this.failed) return;
    if (chunk === undefined) this.input.end();
    else this.input.end(chunk);
  }

  destroy(): void {
    this.failed = true;
    this.decoder?.destroy();
    this.encoder?.destroy();
  }

  onceDrain(listener: () => void): void {
    this.input.once('drain', listener);
  }

  private afterEncoderWrite(): void {
    if (this.plan.flush === 'each') {
      (this.encoder as CodecStream).flush(this.kind);
    } else if (this.plan.flush === 'idle' && !this.flushScheduled) {
      // setImmediate runs after the current round of I/O callbacks: chunks arriving together
      // are compressed together, and the output is pushed as soon as the upstream pauses.
      this.flushScheduled = true;
      setImmediate(this.flushIdle);
    }
  }

  private readonly flushIdle = () => {
    this.flushScheduled = false;
    const encoder = this.encoder as CodecStream;
    if (!this.failed && !encoder.writableEnded) encoder.flush(this.kind);
  };

  private readonly onDecoded = (chunk: Buffer) => {
    const encoder = this.encoder as CodecStream;
    const ok = encoder.write(chunk);
    this.afterEncoderWrite();
    if (!ok) {
      this.input.pause();
      encoder.once('drain', this.resumeDecoder);
    }
  };

  private readonly resumeDecoder = () => {
    if (!this.failed) this.input.resume();
  };

  private readonly onDecodedEnd = () => {
    if (!this.failed) (this.encoder as CodecStream).end();
  };

  private readonly onOutput = (chunk: Buffer) => {
    if (this.failed) return;
    if (!this.inner.write(chunk) && !this.outputPaused) {
      this.outputPaused = true;
      this.output.pause();
      this.inner.once('drain', this.resumeOutput);
    }
  };

  private readonly resumeOutput = () => {
    this.outputPaused = false;
    if (!this.failed) this.output.resume();
  };

  private readonly onOutputEnd = () => {
    this.finished = true;
    if (!this.failed) this.inner.end();
  };

  private readonly onInnerClose = () => {
    // The client went away (or the response finished): free the native zlib state now rather
    // than when the garbage collector gets to it.
    if (!this.finished) this.destroy();
  };

  private readonly onDecodeError = (err: Error) => this.fail('decode', this.plan.decodedFrom, err);

  private readonly onEncodeError = (err: Error) =>
    this.fail('encode', this.plan.encoding ?? '', err);

  private fail(stage: 'decode' | 'encode', coding: string, err: Error): void {
    if (this.failed) return;
    this.destroy();
    this.policy.onStreamError(this.ctx, stage, coding, err);
    // The head is out: cutting the connection is the only honest signal of a broken body.
    this.inner.destroy();
  }
}

function canDecode(token: string): boolean {
  return (
    token === 'gzip' ||
    token === 'x-gzip' ||
    token === 'deflate' ||
    token === 'br' ||
    token === 'zstd'
  );
}

function firstValue(value: string | string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value[0];
  return String(value);
}

/** The declared body length, or -1 when unknown. */
function contentLength(headers: OutgoingHeaders): number {
  const value = headers['content-length'];
  if (value === undefined) return -1;
  const n = Number(Array.isArray(value) ? value[0] : value);
  return Number.isFinite(n) && n >= 0 ? n : -1;
}

const NO_TRANSFORM = /(?:^|,)\s*no-transform\s*(?:,|$)/i;

function hasNoTransform(value: string | string[] | number | undefined): boolean {
  if (value === undefined) return false;
  return NO_TRANSFORM.test(Array.isArray(value) ? value.join(',') : String(value));
}

const VARY_COVERS_ENCODING = /(?:^|,)\s*(?:\*|accept-encoding)\s*(?:,|$)/i;

/** Adds Accept-Encoding to Vary unless it (or `*`) is already there. */
function mergeVary(headers: OutgoingHeaders): void {
  const vary = headers.vary;
  if (vary === undefined || vary === '') {
    headers.vary = 'Accept-Encoding';
    return;
  }
  const text = Array.isArray(vary) ? vary.join(', ') : String(vary);
  if (!VARY_COVERS_ENCODING.test(text)) headers.vary = `${text}, Accept-Encoding`;
}

/**
 * The headers of a transformed body: the new coding, no length (a streamed body is framed
 * chunked; a body compressed whole gets its exact length when it is done), a weak validator (the bytes differ from the upstream's), and no ranges (a
 * range of a body coded on the fly cannot be served).
 */
function rewriteHeaders(headers: OutgoingHeaders, encoding: Encoding | null): void {
  if (encoding === null) delete headers['content-encoding'];
  else headers['content-encoding'] = encoding;
  delete headers['content-length'];
  delete headers['accept-ranges'];
  // Digests of the coded content no longer match.
  delete headers['content-md5'];
  delete headers['content-digest'];
  const etag = headers.etag;
  if (typeof etag === 'string' && etag.startsWith('"')) headers.etag = `W/${etag}`;
}

/**
 * A 304 confirms the copy the client holds. When that copy came compressed from here, the
 * client revalidates with the weak ETag it got (W/"x") and the upstream answers with its strong
 * one ("x"): answer with the validator the client (or the cache in front) actually stored.
 */
function matchWeakenedValidator(
  headers: OutgoingHeaders,
  ifNoneMatch: string | string[] | undefined,
): void {
  const etag = headers.etag;
  if (typeof etag !== 'string' || !etag.startsWith('"') || ifNoneMatch === undefined) return;
  const text = Array.isArray(ifNoneMatch) ? ifNoneMatch.join(',') : ifNoneMatch;
  if (!text.includes(`W/${etag}`)) return;
  headers.etag = `W/${etag}`;
  mergeVary(headers);
}

const PRIVATE = /(?:^|,)\s*(?:private|no-store|no-cache)\b/i;
const SHARED = /(?:^|,)\s*(?:public|s-maxage\s*=\s*[1-9]|max-age\s*=\s*[1-9])/i;

/**
 * Whether a shared cache may store the response (and so serve this compressed body many times):
 * fresh for a while, not private, no cookie. A heuristic: the cache feature can say for sure
 * through CACHEABLE_STATE.
 */
function isSharedCacheable(headers: OutgoingHeaders): boolean {
  const cc = headers['cache-control'];
  if (cc === undefined || headers['set-cookie'] !== undefined) return false;
  const text = Array.isArray(cc) ? cc.join(',') : String(cc);
  return SHARED.test(text) && !PRIVATE.test(text);
}
