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
}

/**
 * zstd arrived in node:zlib in Node.js 22.15 / 23.8; older runtimes simply do not offer it. The
 * detection runs once, at module load.
 */
const zstdRuntime: ZstdRuntime | null =
  typeof (zlib as unknown as Partial<ZstdRuntime>).createZstdCompress === 'function' &&
  typeof (zlib as unknown as Partial<ZstdRuntime>).createZstdDecompress === 'function'
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

/** Creates an asynchronous compressor (the work runs on libuv's thread pool, never the loop). */
export function createEncoder(encoding: Encoding, level: number, hints: EncoderHints): CodecStream {
  switch (encoding) {
    case 'gzip':
      return zlib.createGzip({ level }) as CodecStream;
    case 'deflate':
      return zlib.createDeflate({ level }) as CodecStream;
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
      return zlib.createBrotliCompress({ params }) as CodecStream;
    }
    case 'zstd': {
      if (zstdRuntime === null) throw new Error('zstd is not available in this runtime');
      return zstdRuntime.createZstdCompress({
        params: { [constants.ZSTD_c_compressionLevel]: level },
      });
    }
  }
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
