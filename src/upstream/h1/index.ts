/**
 * Switchyard's own HTTP/1.1 upstream client (plain http only): a keep-alive pool on net.Socket
 * with a strict JS response parser, exposing the subset of undici's `dispatch(opts, handler)`
 * that proxy/forward.ts and proxy/upgrade.ts use. See docs/performance.md for why and how much.
 */
export { H1Pool, type H1PoolOptions, type H1DispatchOptions } from './pool.js';
export type { H1DispatchHandler } from './connection.js';
export { H1ClientError, ResponseParseError } from './common.js';

/**
 * The module-level switch: `SWITCHYARD_UPSTREAM_CLIENT=undici` keeps every upstream on undici
 * (read once, at start).
 */
export const h1ClientEnabled = process.env.SWITCHYARD_UPSTREAM_CLIENT !== 'undici';
