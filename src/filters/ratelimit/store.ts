import type { GcraLimit, RateLimitDecision } from './gcra.js';

/**
 * Where rate-limit state lives. One call per request: take one unit from `key`'s allowance and
 * say whether the request may go (possibly after `delayMs`). A store that cannot answer rejects
 * the promise; the filter then fails open or closed as the route says.
 *
 * Multi-worker hook: the memory store is fetched with `FilterDeps.shared(MEMORY_STORE_KEY, ...)`.
 * A cluster setup (several worker processes, one limit per instance) puts its own store under that
 * key before the first runtime is built, e.g. one that forwards `take` to the primary process over
 * IPC where a single MemoryRateLimitStore decides for every worker.
 */
export interface RateLimitStore {
  readonly kind: string;
  take(key: string, limit: GcraLimit): RateLimitDecision | Promise<RateLimitDecision>;
}

export const MEMORY_STORE_KEY = 'ratelimit:store:memory';
