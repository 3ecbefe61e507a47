/**
 * Switchyard's own HTTP/1.1 upstream client (plain http only): a keep-alive pool on net.Socket
 * with a strict JS response parser, exposing the subset of undici's `dispatch(opts, handler)`
 * that proxy/forward.ts and proxy/upgrade.ts use. See docs/performance.md for why and how much.
 */
export { H1Pool, type H1PoolOptions, type H1DispatchOptions } from './pool.js';
export type { H1DispatchHandler } from './connection.js';
export { H1ClientError, ResponseParseError } from './common.js';

/**
 * The module-level switch, read once at start: `SWITCHYARD_UPSTREAM_CLIENT=h1` puts plain
 * http1 upstreams on this client. It is opt-in: on a quiet machine it was 1.18x undici's
 * requests/s at 1 KiB but 2-4x slower at 100 KiB (docs/performance.md), so undici stays the
 * default until the large-body path is fixed.
 */
export const h1ClientEnabled = process.env.SWITCHYARD_UPSTREAM_CLIENT === 'h1';
