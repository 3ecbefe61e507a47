import { LRUCache } from 'lru-cache';
import { gcraDecide, type GcraLimit, type RateLimitDecision } from './gcra.js';
import type { RateLimitStore } from './store.js';

/** Keys kept at most; the least recently used key is forgotten first. */
export const MEMORY_STORE_MAX_KEYS = 100_000;

/**
 * Exact limits within one process, in bounded memory: one number per key in an LRU. A key whose
 * TAT is in the past is the same as a new key, so forgetting it changes nothing; only a flood of
 * more than `maxKeys` distinct active keys can make the store forget (and so forgive) some.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly kind = 'memory';
  private readonly tats: LRUCache<string, number>;
  private readonly now: () => number;

  constructor(options: { maxKeys?: number; now?: () => number } = {}) {
    this.tats = new LRUCache({ max: options.maxKeys ?? MEMORY_STORE_MAX_KEYS });
    this.now = options.now ?? Date.now;
  }

  take(key: string, limit: GcraLimit): RateLimitDecision {
    const now = this.now();
    const { decision, newTat } = gcraDecide(this.tats.get(key) ?? 0, now, limit);
    if (newTat !== undefined) this.tats.set(key, newTat);
    return decision;
  }

  get size(): number {
    return this.tats.size;
  }
}
