import { availableParallelism } from 'node:os';
import zlib from 'node:zlib';
import type { Transform } from 'node:stream';

/** Content codings Switchyard can produce. */
export type Encoding = 'br' | 'zstd' | 'gzip' | 'deflate';

/** A zlib stream: a Transform that can be told to push out what it holds. */
export type CodecStream = Transform & { flush(kind?: number, callback?: () => void): void };

/** Per-encoding compression levels (brotli quality, gzip/deflate level, zstd level). */
export type Levels = Record<Encoding, number>;

interface ZstdRuntime {
  createZstdCompress(options?: { params?: Record<number, number> }): CodecStream;
  createZstdDecompress(): CodecStream;
  zstdCompress(
    body: Buffer,
    options: { params?: Record<number, number>; chunkSize?: number },
    callback: (error: Error | null, result: Buffer) => void,
  ): void;
}

/**
 * zstd arrived in node:zlib in Node.js 22.15 / 23.8; older runtimes simply do not offer it. The
 * detection runs once, at module load.
 */
const zstdRuntime: ZstdRuntime | null =
  typeof (zlib as unknown as Partial<ZstdRuntime>).createZstdCompress === 'function' &&
  typeof (zlib as unknown as Partial<ZstdRuntime>).createZstdDecompress === 'function' &&
  typeof (zlib as unknown as Partial<ZstdRuntime>).zstdCompress === 'function'
    ? (zlib as unknown as ZstdRuntime)
    : null;

const constants = zlib.constants as typeof zlib.constants & Record<string, number>;

export const ZSTD_AVAILABLE = zstdRuntime !== null;

/** Whether this runtime can produce (and read) `encoding`. */
export function isAvailable(encoding: Encoding): boolean {
  return encoding !== 'zstd' || ZSTD_AVAILABLE;
}

/** Valid level ranges, for messages and clamping. */
export const LEVEL_RANGES: Record<Encoding, [number, number]> = {
  br: [0, 11],
  gzip: [1, 9],
  deflate: [1, 9],
  zstd: [1, 22],
};

/** Tuned for dynamic content: fast enough to keep up with a proxy, still a good ratio. */
export const DEFAULT_LEVELS: Levels = { br: 4, gzip: 6, deflate: 6, zstd: 3 };

/**
 * For responses a shared cache may store: they are compressed once and served many times, so a
 * slower, tighter setting pays off. Measured on a 100 KiB JSON body: brotli 8 is about 8% smaller
 * than 4 for a few milliseconds, while 9 costs tens of milliseconds more for under 1% (and 10-11
 * hundreds); zstd 12 is 11% smaller than 3 for about 4 ms.
 */
export const DEFAULT_CACHED_LEVELS: Levels = { br: 8, gzip: 9, deflate: 9, zstd: 12 };

export interface EncoderHints {
  /** Body length when the upstream declared it; lets brotli size its window. */
  length: number;
  /** Whether the body is text (brotli has a mode tuned for UTF-8). */
  text: boolean;
}

/**
 * zlib's output buffer per pass. Node's default (16 KiB) makes a 100 KiB JSON body take several
 * passes through the thread pool, each with its own callback and Buffer; 64 KiB holds the coded
 * form of bodies up to a few hundred KiB in one pass (measured: about 20% less CPU per response
 * for gzip 6 on 100 KiB JSON). Used where the body is known to be large or whole; streams that
 * flush small pieces (event streams, long polls) keep the default, which also bounds their memory.
 */
export const LARGE_CHUNK_SIZE = 64 * 1024;

interface EncoderOptions {
  level?: number;
  chunkSize?: number;
  params?: Record<number, number>;
}

function encoderOptions(
  encoding: Encoding,
  level: number,
  hints: EncoderHints,
  chunkSize: number | undefined,
): EncoderOptions {
  const options: EncoderOptions = {};
  if (chunkSize !== undefined) options.chunkSize = chunkSize;
  switch (encoding) {
    case 'gzip':
    case 'deflate':
      options.level = level;
      break;
    case 'br': {
      const params: Record<number, number> = {
        [constants.BROTLI_PARAM_QUALITY]: level,
        [constants.BROTLI_PARAM_MODE]: hints.text
          ? constants.BROTLI_MODE_TEXT
          : constants.BROTLI_MODE_GENERIC,
      };
      if (hints.length > 0) {
        params[constants.BROTLI_PARAM_SIZE_HINT] = Math.min(hints.length, 0x7fffffff);
        // A window larger than the body buys nothing and costs memory per stream.
        params[constants.BROTLI_PARAM_LGWIN] = Math.min(
          constants.BROTLI_DEFAULT_WINDOW,
          Math.max(constants.BROTLI_MIN_WINDOW_BITS, Math.ceil(Math.log2(hints.length + 16))),
        );
      }
      options.params = params;
      break;
    }
    case 'zstd': {
      options.params = { [constants.ZSTD_c_compressionLevel]: level };
      break;
    }
  }
  return options;
}

/**
 * Creates an asynchronous compressor (the work runs on libuv's thread pool, never the loop).
 * `chunkSize` is zlib's output buffer per pass (node's default when undefined).
 */
export function createEncoder(
  encoding: Encoding,
  level: number,
  hints: EncoderHints,
  chunkSize?: number,
): CodecStream {
  const options = encoderOptions(encoding, level, hints, chunkSize);
  switch (encoding) {
    case 'gzip':
      return zlib.createGzip(options) as CodecStream;
    case 'deflate':
      return zlib.createDeflate(options) as CodecStream;
    case 'br':
      return zlib.createBrotliCompress(options) as CodecStream;
    case 'zstd':
      if (zstdRuntime === null) throw new Error('zstd is not available in this runtime');
      return zstdRuntime.createZstdCompress(options);
  }
}

/** A whole body waiting to be compressed in one call (see compressWhole). */
export interface WholeJob {
  readonly encoding: Encoding;
  readonly level: number;
  readonly hints: EncoderHints;
  readonly input: Buffer;
  /** True once nobody wants the result (the client left): the job is skipped if not started. */
  readonly cancelled: boolean;
  /** Called once: with the result, or with `skipped` true for a cancelled job. */
  done(error: Error | null, result: Buffer | null, skipped: boolean): void;
}

/**
 * How many whole bodies are compressed at once. More jobs than cores only share those cores:
 * measured with the proxy pinned to one core, four gzip jobs at a time cost about 40% more CPU per
 * 100 KiB body than one at a time (cache thrashing and thread switches), with no gain in
 * throughput. `availableParallelism` honours the CPU affinity the process was started with.
 */
export const WHOLE_CONCURRENCY = Math.max(1, availableParallelism());
let wholeRunning = 0;
const wholeWaiting: WholeJob[] = [];

/**
 * Compresses a whole body in one call on libuv's thread pool (zlib's one-shot API): no stream
 * state machine and no per-chunk callbacks, and the loop only sees the finished result. Jobs
 * beyond WHOLE_CONCURRENCY wait in order.
 */
export function compressWhole(job: WholeJob): void {
  if (wholeRunning < WHOLE_CONCURRENCY) {
    wholeRunning++;
    runWhole(job);
  } else {
    wholeWaiting.push(job);
  }
}

function runWhole(job: WholeJob): void {
  const options = encoderOptions(job.encoding, job.level, job.hints, LARGE_CHUNK_SIZE);
  const callback = (error: Error | null, result: Buffer) => {
    nextWhole();
    job.done(error, result, false);
  };
  switch (job.encoding) {
    case 'gzip':
      zlib.gzip(job.input, options, callback);
      return;
    case 'deflate':
      zlib.deflate(job.input, options, callback);
      return;
    case 'br':
      zlib.brotliCompress(job.input, options, callback);
      return;
    case 'zstd':
      if (zstdRuntime === null) {
        callback(new Error('zstd is not available in this runtime'), Buffer.alloc(0));
        return;
      }
      zstdRuntime.zstdCompress(job.input, options, callback);
      return;
  }
}

/** A slot freed: start the next waiting job (cancelled ones are skipped on the way). */
function nextWhole(): void {
  let next = wholeWaiting.shift();
  while (next !== undefined && next.cancelled) {
    next.done(null, null, true);
    next = wholeWaiting.shift();
  }
  if (next === undefined) wholeRunning--;
  else runWhole(next);
}

/**
 * The flush that pushes buffered output without ending the stream. For gzip/deflate a sync
 * flush keeps the dictionary (a full flush would reset it and cost ratio); brotli and zstd use
 * their default flush operation.
 */
export function flushKind(encoding: Encoding): number | undefined {
  return encoding === 'gzip' || encoding === 'deflate' ? constants.Z_SYNC_FLUSH : undefined;
}

/** Content codings an upstream may send that can be decoded here, by their lowercased token. */
export function createDecoder(coding: string): CodecStream | null {
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip() as CodecStream;
    case 'deflate':
      return zlib.createInflate() as CodecStream;
    case 'br':
      return zlib.createBrotliDecompress() as CodecStream;
    case 'zstd':
      return zstdRuntime === null ? null : zstdRuntime.createZstdDecompress();
    default:
      return null;
  }
}
