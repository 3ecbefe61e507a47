import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';

// Loaded on first use: a proxy without Redis never pays the module's memory.
const requireLazily = createRequire(import.meta.url);
function loadRedis(): typeof import('ioredis').Redis {
  return (requireLazily('ioredis') as typeof import('ioredis')).Redis;
}
import { admitted, type GcraLimit, type RateLimitDecision } from './gcra.js';
import type { RateLimitStore } from './store.js';
import { channels, type RedisStateEvent } from '../../core/events.js';

/**
 * GCRA as one Lua script, so each decision is a single atomic round trip and every instance that
 * shares the Redis shares the limit. The clock is Redis's own (TIME), so instances with skewed
 * clocks still agree. Returns { admitted 0|1, wait ms, TAT - now ms }.
 */
const GCRA_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local maxDelay = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > maxDelay then
  return { 0, tostring(wait), tostring(tat - now) }
end
local newTat = tat + interval
redis.call('SET', KEYS[1], tostring(newTat), 'PX', math.max(1, math.ceil(newTat - now)))
return { 1, tostring(wait), tostring(newTat - now) }
`;

const KEY_PREFIX = 'switchyard:rl:';
/** Keys longer than this (e.g. from a long header) are hashed to keep Redis keys small. */
const MAX_RAW_KEY = 200;

type RedisWithGcra = Redis & {
  switchyardGcra(
    key: string,
    interval: number,
    tolerance: number,
    maxDelay: number,
  ): Promise<[number, string, string]>;
};

export interface RedisStoreOptions {
  url: string;
  /** A decision not answered within this many ms fails (open or closed). */
  commandTimeoutMs?: number;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

/**
 * A limit shared by every instance. While Redis is unreachable, `take` rejects at once (no
 * queueing behind a dead connection) and the client keeps reconnecting in the background; each
 * change between reachable and unreachable is logged once.
 */
export class RedisRateLimitStore implements RateLimitStore {
  readonly kind = 'redis';
  private readonly redis: RedisWithGcra;
  private readonly log: RedisStoreOptions['log'];
  /** Set once a connection failed; cleared when it is ready again. */
  private down = false;
  private refs = 0;

  constructor(options: RedisStoreOptions) {
    this.log = options.log;
    this.redis = new (loadRedis())(options.url, {
      commandTimeout: options.commandTimeoutMs ?? 1000,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: true,
      retryStrategy: (times) => Math.min(100 * times, 2000),
      // Decisions are small and frequent; never let a reconnect replay stale ones.
      autoResendUnfulfilledCommands: false,
    }) as RedisWithGcra;
    this.redis.defineCommand('switchyardGcra', { numberOfKeys: 1, lua: GCRA_SCRIPT });
    this.redis.on('error', (err: Error) => {
      this.markDown(err.message);
      this.publishState(false, err.message);
    });
    this.redis.on('close', () => {
      this.markDown('connection closed');
      this.publishState(false);
    });
    this.redis.on('ready', () => {
      if (this.down) this.log('info', 'rate limit store is reachable again', { store: 'redis' });
      this.down = false;
      this.publishState(true);
    });
  }

  /** Failed decisions are published by the filter (rateLimitStoreError), not here. */
  private publishState(up: boolean, error?: string): void {
    if (this.refs <= 0 || !channels.redisState.hasSubscribers) return;
    const event: RedisStateEvent = { store: 'ratelimit', up, error };
    channels.redisState.publish(event);
  }

  private markDown(reason: string): void {
    if (this.down || this.refs === 0) return;
    this.down = true;
    this.log('error', 'rate limit store unreachable; routes fail open or closed as configured', {
      store: 'redis',
      error: reason,
    });
  }

  async take(key: string, limit: GcraLimit): Promise<RateLimitDecision> {
    // Fail fast while the connection is known to be down: a request never waits on a dead store.
    if (this.down && this.redis.status !== 'ready') throw new Error('redis is unreachable');
    const redisKey =
      key.length > MAX_RAW_KEY
        ? KEY_PREFIX + createHash('sha256').update(key).digest('base64url')
        : KEY_PREFIX + key;
    const [ok, waitText, aheadText] = await this.redis.switchyardGcra(
      redisKey,
      limit.intervalMs,
      limit.toleranceMs,
      limit.maxDelayMs,
    );
    const wait = Number(waitText);
    const ahead = Number(aheadText);
    if (ok === 1) return admitted(limit, ahead, wait);
    return { allowed: false, delayMs: 0, remaining: 0, retryAfterMs: wait, resetMs: ahead };
  }

  /** One reference per filter using the store; the connection closes with the last. */
  acquire(): void {
    this.refs++;
  }

  release(): void {
    if (--this.refs > 0) return;
    this.redis.disconnect();
  }

  get closed(): boolean {
    return this.refs <= 0;
  }
}
