/**
 * Switchyard's own HTTP/1.1 upstream client (plain http only): a keep-alive pool on net.Socket
 * with a strict JS response parser, exposing the subset of undici's `dispatch(opts, handler)`
 * that proxy/forward.ts and proxy/upgrade.ts use. See docs/performance.md for why and how much.
 */
export { H1Pool, type H1PoolOptions, type H1DispatchOptions } from './pool.js';
export { ZERO_COPY_MIN_BYTES, type H1DispatchHandler } from './connection.js';
export { H1ClientError, ResponseParseError } from './common.js';
export { lowerFieldName } from './parser.js';

/**
 * The module-level switch, read once at start: plain http1 upstreams use this client unless
 * `SWITCHYARD_UPSTREAM_CLIENT=undici` says otherwise (TLS and h2/h2c upstreams always use
 * undici). Default since 2026-11-29: once glibc's heap trimming was out of the way
 * (server/malloc-tuning.ts), it took 20-25% less CPU per request than undici at 1 KiB, less at
 * 100 KiB too, and about 40 MiB less peak memory (docs/performance.md).
 */
export const h1ClientEnabled = process.env.SWITCHYARD_UPSTREAM_CLIENT !== 'undici';
