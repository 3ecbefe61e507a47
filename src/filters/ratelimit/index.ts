import type { RequestContext, ResponseHead } from '../../core/context.js';
import { channels } from '../../core/events.js';
import type { Filter, FilterDeps, FilterFactory, Handler } from '../../core/filter.js';
import { compileTemplate } from '../../core/template.js';
import { parseDuration, parseRate } from '../../config/units.js';
import { gcraLimit, type RateLimitDecision } from './gcra.js';
import { MemoryRateLimitStore } from './memory-store.js';
import { RedisRateLimitStore } from './redis-store.js';
import { MEMORY_STORE_KEY, type RateLimitStore } from './store.js';

export { MEMORY_STORE_KEY, type RateLimitStore } from './store.js';
export { MemoryRateLimitStore } from './memory-store.js';
export { gcraDecide, gcraLimit, type GcraLimit, type RateLimitDecision } from './gcra.js';

interface RateLimitConfig {
  rate: string;
  burst?: number;
  key?: string;
  delay?: string;
  failOpen?: boolean;
  onStoreError?: StoreErrorFallback;
}

/** What a route does when its shared store (Redis) cannot decide. */
export type StoreErrorFallback = 'local' | 'open' | 'closed';

const STATE = 'rateLimit';
/** At most one "store failing" log line per route in this window; the event fires every time. */
const STORE_ERROR_LOG_INTERVAL_MS = 10_000;

/** Shared across reloads so the Redis connection (and its state) is reused, not reopened. */
interface RedisHolder {
  url: string;
  store: RedisRateLimitStore | null;
}

function redisStore(deps: FilterDeps, url: string): RedisRateLimitStore {
  const holder = deps.shared<RedisHolder>('ratelimit:store:redis', () => ({ url, store: null }));
  if (holder.store === null || holder.store.closed || holder.url !== url) {
    holder.url = url;
    holder.store = new RedisRateLimitStore({ url, log: deps.log });
  }
  holder.store.acquire();
  return holder.store;
}

/** A structured-field string (RFC 8941) for the policy name. */
function sfString(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * The behaviour when the store fails: an explicit `failOpen` wins (true = open, false = closed),
 * then `onStoreError`, then the default: `local` for Redis, `open` otherwise. `local` needs a
 * shared store to fall back from; with the memory store it means `open`.
 */
export function storeErrorFallback(
  config: { failOpen?: boolean; onStoreError?: StoreErrorFallback },
  redis: boolean,
): StoreErrorFallback {
  if (config.failOpen !== undefined) return config.failOpen ? 'open' : 'closed';
  const chosen = config.onStoreError ?? (redis ? 'local' : 'open');
  return chosen === 'local' && !redis ? 'open' : chosen;
}

/**
 * `rateLimit: { rate, burst, key, delay, failOpen, onStoreError }`: GCRA per key (see gcra.ts).
 * Past the limit the answer is 429 with Retry-After; every response on the route carries the IETF
 * `RateLimit` and `RateLimit-Policy` headers. With `delay`, a request that would conform within that time is
 * held until its slot instead of refused (nginx's `limit_req` without `nodelay`).
 */
export const rateLimitFeature: FilterFactory = {
  key: 'rateLimit',
  order: 300,
  create(raw: unknown, deps: FilterDeps, route: { name: string }): Filter {
    const config = raw as RateLimitConfig;
    const rate = parseRate(config.rate);
    const maxDelayMs = config.delay === undefined ? 0 : parseDuration(config.delay);
    const limit = gcraLimit(rate.count, rate.perMs, config.burst ?? 0, maxDelayMs);
    const keyOf = compileTemplate(config.key ?? '{client_ip}');
    const keyPrefix = `${route.name}\u0000`;
    const policyName = sfString(route.name);
    const policy = `${policyName};q=${rate.count};w=${Math.round(rate.perMs / 1000)}`;

    const redisUrl = (deps.globals.redis as { url?: string } | undefined)?.url;
    const useRedis = deps.globals.rateLimitStore === 'redis' && redisUrl !== undefined;
    const store: RateLimitStore = useRedis
      ? redisStore(deps, redisUrl)
      : deps.shared<RateLimitStore>(MEMORY_STORE_KEY, () => new MemoryRateLimitStore());
    const fallback = storeErrorFallback(config, useRedis);
    // During a Redis outage `local` decides with the per-instance store used without Redis
    // (the same limit, enforced per instance until Redis answers again).
    const localStore: RateLimitStore | null =
      fallback === 'local'
        ? deps.shared<RateLimitStore>(MEMORY_STORE_KEY, () => new MemoryRateLimitStore())
        : null;
    const failVerb = fallback === 'local' ? 'limiting locally' : `failing ${fallback}`;

    const headHook = (ctx: RequestContext, head: ResponseHead) => {
      const d = ctx.getState<RateLimitDecision>(STATE);
      if (d === undefined) return;
      head.headers['ratelimit-policy'] = policy;
      head.headers['ratelimit'] =
        `${policyName};r=${d.remaining};t=${Math.ceil(Math.max(d.allowed ? d.resetMs : d.retryAfterMs, 0) / 1000)}`;
      if (!d.allowed)
        head.headers['retry-after'] = String(Math.max(1, Math.ceil(d.retryAfterMs / 1000)));
    };

    let lastStoreLog = 0;
    const onStoreError = (ctx: RequestContext, key: string, err: unknown, next: Handler) => {
      const message = err instanceof Error ? err.message : String(err);
      const now = Date.now();
      if (now - lastStoreLog >= STORE_ERROR_LOG_INTERVAL_MS) {
        lastStoreLog = now;
        deps.log('warn', `rate limit store failed; ${failVerb}`, {
          route: route.name,
          store: store.kind,
          error: message,
        });
      }
      if (channels.rateLimitStoreError.hasSubscribers)
        channels.rateLimitStoreError.publish({
          ctx,
          store: store.kind,
          failedOpen: fallback === 'open',
          fallback,
          error: message,
        });
      if (localStore !== null) {
        // If the per-instance store cannot answer either (a worker's primary gone), let it pass.
        let local: RateLimitDecision | Promise<RateLimitDecision>;
        try {
          local = localStore.take(key, limit);
        } catch {
          return next(ctx);
        }
        if (local instanceof Promise)
          return local.then(
            (d) => apply(ctx, d, next),
            () => next(ctx),
          );
        return apply(ctx, local, next);
      }
      if (fallback === 'open') return next(ctx);
      ctx.setState(STATE, {
        allowed: false,
        delayMs: 0,
        remaining: 0,
        retryAfterMs: 1000,
        resetMs: 1000,
      } satisfies RateLimitDecision);
      ctx.addResponseHeadHook(headHook);
      ctx.sendError('RATE_LIMITED');
    };

    const apply = (ctx: RequestContext, d: RateLimitDecision, next: Handler) => {
      ctx.setState(STATE, d);
      ctx.addResponseHeadHook(headHook);
      if (channels.rateLimitDecision.hasSubscribers)
        channels.rateLimitDecision.publish({ ctx, allowed: d.allowed });
      if (!d.allowed) {
        if (channels.rateLimited.hasSubscribers) channels.rateLimited.publish({ ctx });
        ctx.sendError('RATE_LIMITED');
        return;
      }
      if (d.delayMs <= 0) return next(ctx);
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          if (ctx.clientResponse.destroyed) resolve();
          else Promise.resolve(next(ctx)).then(resolve, reject);
        }, d.delayMs);
        ctx.clientResponse.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    };

    return {
      name: 'rateLimit',
      handle(ctx, next) {
        let key = keyPrefix;
        let result: RateLimitDecision | Promise<RateLimitDecision>;
        try {
          key += keyOf(ctx);
          result = store.take(key, limit);
        } catch (err) {
          return onStoreError(ctx, key, err, next);
        }
        if (result instanceof Promise)
          return result.then(
            (d) => apply(ctx, d, next),
            (err: unknown) => onStoreError(ctx, key, err, next),
          );
        return apply(ctx, result, next);
      },
      close() {
        if (store instanceof RedisRateLimitStore) store.release();
      },
    };
  },
};
