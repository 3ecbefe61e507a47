import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListenerInfo } from './context.js';

/**
 * What a listener hands each request to. The server layer knows nothing of routes or upstreams;
 * the runtime built from the current config implements this, and a reload swaps it atomically.
 */
export interface RequestDispatcher {
  handle(req: IncomingMessage, res: ServerResponse, listener: ListenerInfo): void;
}
