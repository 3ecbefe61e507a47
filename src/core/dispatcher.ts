import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ListenerInfo } from './context.js';
import type { QuickRequest, QuickResponse } from './quick-answer.js';

/**
 * What a listener hands each request to. The server layer knows nothing of routes or upstreams;
 * the runtime built from the current config implements this, and a reload swaps it atomically.
 */
export interface RequestDispatcher {
  /** `upgrade` is set for WebSocket upgrades (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT). */
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    listener: ListenerInfo,
    upgrade?: UpgradeIO,
  ): void;
  /**
   * Present when some route can answer a request at once from memory, or has an upstream
   * (core/quick-answer.ts): answers `req` through `res` (sent, or kept) and returns true, or
   * returns false having written nothing and published nothing, and `handle` gets the request
   * as usual.
   */
  readonly quickAnswer?: (req: QuickRequest, res: QuickResponse, listener: ListenerInfo) => boolean;
}

/**
 * The raw connection behind a WebSocket upgrade. Errors and refusals are still answered through
 * the request's response object; only an accepted upgrade writes to `socket` directly.
 */
export interface UpgradeIO {
  /** HTTP/1.1: the client socket. HTTP/2: the request's stream. */
  socket: Duplex;
  /** Bytes the client sent after the request head (already part of the tunnel). */
  head: Buffer;
  /** True for RFC 8441 extended CONNECT: accept with a 200 on the stream, not a 101. */
  http2: boolean;
  /** Lets go of the response object before raw bytes are written to the socket. */
  detach?: () => void;
}

/** ctx state key under which the upgrade terminal finds the UpgradeIO. */
export const UPGRADE_STATE = 'upgrade';
