/**
 * The Generic Cell Rate Algorithm: one number per key (the theoretical arrival time, TAT) decides
 * whether a request conforms. Equivalent to a token bucket of `burst + 1` tokens refilled at
 * `rate`, but with no refill bookkeeping, so a store (memory or one Redis script) only reads and
 * writes a single value per decision.
 */

export interface GcraLimit {
  /** Milliseconds between two requests at the sustained rate (window / count). */
  intervalMs: number;
  /** How far ahead of now the TAT may run: burst * intervalMs. */
  toleranceMs: number;
  /** A request that would conform within this many ms is admitted late instead of refused. */
  maxDelayMs: number;
}

export interface RateLimitDecision {
  allowed: boolean;
  /** How long an admitted request must wait first (delay mode); 0 otherwise. */
  delayMs: number;
  /** Requests still allowed right now after this one. */
  remaining: number;
  /** Refused: ms until a request would be admitted. Admitted: 0. */
  retryAfterMs: number;
  /** Ms until the full allowance (burst + 1) is back. */
  resetMs: number;
}

/** Builds the limit from `count` requests per `perMs` with `burst` extra at once. */
export function gcraLimit(count: number, perMs: number, burst: number, maxDelayMs = 0): GcraLimit {
  const intervalMs = perMs / count;
  return { intervalMs, toleranceMs: burst * intervalMs, maxDelayMs };
}

/**
 * One decision. `tat` is the stored TAT (0 for a new key); returns the decision and the TAT to
 * store (undefined when nothing changes). Shared by the memory store and mirrored by the Redis
 * script in redis-store.ts, so both stores agree to the millisecond.
 */
export function gcraDecide(
  tat: number,
  now: number,
  limit: GcraLimit,
): { decision: RateLimitDecision; newTat: number | undefined } {
  const base = tat > now ? tat : now;
  const wait = base - now - limit.toleranceMs;
  if (wait > limit.maxDelayMs) {
    return {
      decision: {
        allowed: false,
        delayMs: 0,
        remaining: 0,
        retryAfterMs: wait,
        resetMs: base - now,
      },
      newTat: undefined,
    };
  }
  const newTat = base + limit.intervalMs;
  return { decision: admitted(limit, newTat - now, wait), newTat };
}

/** The decision for an admitted request, from how far the new TAT runs ahead of now. */
export function admitted(limit: GcraLimit, aheadMs: number, wait: number): RateLimitDecision {
  const room = limit.toleranceMs + limit.intervalMs - aheadMs;
  return {
    allowed: true,
    delayMs: wait > 0 ? wait : 0,
    remaining: room > 0 ? Math.floor(room / limit.intervalMs + 1e-9) : 0,
    retryAfterMs: 0,
    resetMs: aheadMs,
  };
}
