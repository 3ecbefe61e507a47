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
 * How many whole bodies are compressed at once on the thread pool. More jobs than cores only share
 * those cores: measured with the proxy pinned to one core, four gzip jobs at a time cost about 40%
 * more CPU per 100 KiB body than one at a time (cache thrashing and thread switches), with no gain
 * in throughput. `availableParallelism` honours the CPU affinity the process was started with.
 */
export const WHOLE_CONCURRENCY = Math.max(1, availableParallelism());
let wholeRunning = 0;
const wholeWaiting: WholeJob[] = [];

/**
 * Whether small whole bodies are compressed on the event loop itself (see compressWhole). By
 * default only when the process has a single core: there the thread pool adds no parallelism,
 * only a thread hand-off per body whose worker preempts the main thread on that core and evicts
 * its caches (measured: about 20% more CPU per 100 KiB gzip response than compressing in place).
 * SWITCHYARD_COMPRESSION_ON_LOOP=1 or 0 overrides the default.
 */
let onLoop =
  process.env.SWITCHYARD_COMPRESSION_ON_LOOP === undefined ||
  process.env.SWITCHYARD_COMPRESSION_ON_LOOP === ''
    ? WHOLE_CONCURRENCY === 1
    : process.env.SWITCHYARD_COMPRESSION_ON_LOOP === '1';

/** Whether small whole bodies are compressed on the event loop (for tests and diagnostics). */
export function compressesOnLoop(): boolean {
  return onLoop;
}

/** Turns compression on the event loop on or off (tests use it to cover both paths). */
export function setCompressOnLoop(value: boolean): void {
  onLoop = value;
}

/**
 * A job compressed on the loop must be short: its estimated cost (below) is at most this many
 * milliseconds, so one job never holds the loop long. Larger or slower jobs go to the pool.
 */
export const LOOP_JOB_MAX_MS = 4;

/**
 * Jobs on the loop run one after another until this much time has passed in one turn; the rest
 * wait for the next turn (after the loop has handled the I/O that came in meanwhile). With
 * LOOP_JOB_MAX_MS, one turn holds the loop for at most about 14 ms (the target is a p99
 * event-loop delay under 50 ms while compressing under load).
 */
export const LOOP_TURN_BUDGET_MS = 10;

/**
 * Conservative CPU cost per input byte, in nanoseconds, by encoding and level (measured on JSON
 * with node's zlib at about 12 ns/byte for gzip 6 and 9 for brotli 4, then padded for slower
 * cores and less friendly data). Infinity: never on the loop.
 */
function nsPerByte(encoding: Encoding, level: number): number {
  switch (encoding) {
    case 'gzip':
    case 'deflate':
      return level <= 3 ? 15 : level <= 6 ? 25 : 60;
    case 'br':
      return level <= 2 ? 10 : level <= 4 ? 20 : level <= 6 ? 50 : level <= 8 ? 60 : Infinity;
    case 'zstd':
      return zstdSync === null ? Infinity : level <= 3 ? 10 : level <= 9 ? 30 : Infinity;
  }
}

/** Whether `job` is cheap enough to compress on the event loop. */
function fitsOnLoop(job: WholeJob): boolean {
  return (job.input.length * nsPerByte(job.encoding, job.level)) / 1e6 <= LOOP_JOB_MAX_MS;
}

const loopWaiting: WholeJob[] = [];
let loopScheduled = false;

/**
 * Compresses a whole body in one call. On a single core, a body cheap enough (fitsOnLoop) is
 * compressed on the event loop, right after the current round of I/O, with a zlib state kept
 * from the previous body of the same coding and level; otherwise zlib's one-shot API runs it on
 * libuv's thread pool (no stream state machine, no per-chunk callbacks; the loop only sees the
 * finished result), at most WHOLE_CONCURRENCY at a time and the rest in order.
 */
export function compressWhole(job: WholeJob): void {
  if (onLoop && fitsOnLoop(job)) {
    loopWaiting.push(job);
    if (!loopScheduled) {
      loopScheduled = true;
      setImmediate(drainLoop);
    }
    return;
  }
  if (wholeRunning < WHOLE_CONCURRENCY) {
    wholeRunning++;
    runWhole(job);
  } else {
    wholeWaiting.push(job);
  }
}

/** Runs the jobs waiting for the loop, in order, until LOOP_TURN_BUDGET_MS has passed. */
function drainLoop(): void {
  loopScheduled = false;
  const start = performance.now();
  let job = loopWaiting.shift();
  while (job !== undefined) {
    if (job.cancelled) {
      job.done(null, null, true);
    } else {
      let result: Buffer | null = null;
      let error: Error | null = null;
      try {
        result = compressNow(job);
      } catch (err) {
        error = err as Error;
      }
      job.done(error, result, false);
    }
    if (performance.now() - start >= LOOP_TURN_BUDGET_MS) break;
    job = loopWaiting.shift();
  }
  if (loopWaiting.length > 0 && !loopScheduled) {
    loopScheduled = true;
    setImmediate(drainLoop);
  }
}

function compressNow(job: WholeJob): Buffer {
  switch (job.encoding) {
    case 'gzip':
    case 'deflate':
      return deflateReusing(job.encoding, job.level, job.input);
    case 'br':
      return zlib.brotliCompressSync(
        job.input,
        encoderOptions(job.encoding, job.level, job.hints, LARGE_CHUNK_SIZE),
      );
    case 'zstd':
      if (zstdSync === null) throw new Error('zstd is not available in this runtime');
      return zstdSync(job.input, encoderOptions(job.encoding, job.level, job.hints, undefined));
  }
}

const zstdSync: ((body: Buffer, options: EncoderOptions) => Buffer) | null =
  typeof (zlib as unknown as { zstdCompressSync?: unknown }).zstdCompressSync === 'function'
    ? (zlib as unknown as { zstdCompressSync(body: Buffer, options: EncoderOptions): Buffer })
        .zstdCompressSync
    : null;

/**
 * The parts of node's zlib objects (stable since Node.js 10, used by zlib's own sync API) that
 * let one deflate state compress body after body: allocating and clearing a fresh state (about
 * 270 KiB) per body costs more than resetting one whose memory is still in the CPU's caches
 * (measured: about 7-14% less CPU per 100 KiB gzip 6 response than zlib.gzipSync).
 */
interface ZlibInternals {
  _handle?: {
    writeSync?(
      flush: number,
      input: Buffer,
      inOff: number,
      inLen: number,
      out: Buffer,
      outOff: number,
      outLen: number,
    ): void;
    reset?(): void;
  };
  _writeState?: Uint32Array;
}

interface DeflateSlot {
  readonly engine: zlib.Gzip | zlib.Deflate;
  readonly handle: Required<NonNullable<ZlibInternals['_handle']>>;
  readonly state: Uint32Array;
  /** The error zlib reported, once its 'error' event has come (none expected). */
  error: Error | null;
}

/** One deflate state per coding and level (a handful at most: `level` and `cachedLevel`). */
const deflateSlots = new Map<string, DeflateSlot | null>();
/** zlib's output per pass; the result is copied out at its exact size. */
const deflateOut = Buffer.allocUnsafe(LARGE_CHUNK_SIZE);

function deflateSlot(encoding: 'gzip' | 'deflate', level: number): DeflateSlot | null {
  const key = `${encoding}:${level}`;
  let slot = deflateSlots.get(key);
  if (slot !== undefined) return slot;
  const engine = encoding === 'gzip' ? zlib.createGzip({ level }) : zlib.createDeflate({ level });
  const internals = engine as unknown as ZlibInternals;
  const handle = internals._handle;
  const state = internals._writeState;
  if (
    handle === undefined ||
    typeof handle.writeSync !== 'function' ||
    typeof handle.reset !== 'function' ||
    !(state instanceof Uint32Array)
  ) {
    // A runtime whose zlib looks different: use the public one-shot API instead.
    engine.close();
    slot = null;
  } else {
    const created: DeflateSlot = {
      engine,
      handle: handle as DeflateSlot['handle'],
      state,
      error: null,
    };
    engine.on('error', (err: Error) => {
      created.error ??= err;
    });
    slot = created;
  }
  deflateSlots.set(key, slot);
  return slot;
}

/** gzip or deflate `input` in one pass on the calling thread, reusing a kept zlib state. */
function deflateReusing(encoding: 'gzip' | 'deflate', level: number, input: Buffer): Buffer {
  const slot = deflateSlot(encoding, level);
  if (slot === null) {
    const options = { level, chunkSize: LARGE_CHUNK_SIZE };
    return encoding === 'gzip' ? zlib.gzipSync(input, options) : zlib.deflateSync(input, options);
  }
  const { handle, state } = slot;
  const out = deflateOut;
  const pieces: Buffer[] = [];
  let total = 0;
  let inOff = 0;
  let inLen = input.length;
  try {
    for (;;) {
      handle.writeSync(constants.Z_FINISH, input, inOff, inLen, out, 0, out.length);
      // zlib reports a failure by destroying the engine (the 'error' event follows later).
      if (slot.engine.destroyed) throw slot.error ?? new Error(`${encoding} compression failed`);
      const availOut = state[0];
      const availIn = state[1];
      const have = out.length - availOut;
      if (have > 0) {
        pieces.push(Buffer.from(out.subarray(0, have)));
        total += have;
      }
      inOff += inLen - availIn;
      inLen = availIn;
      // Output space left over means zlib has written the end of the stream.
      if (availOut !== 0) break;
    }
    handle.reset();
  } catch (err) {
    // Never reuse a state in an unknown condition.
    deflateSlots.delete(`${encoding}:${level}`);
    slot.engine.close();
    throw err;
  }
  return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, total);
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
