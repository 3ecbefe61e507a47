import { LRUCache } from 'lru-cache';
import { channels, type CachePurgeEvent } from '../../core/events.js';
import type { CacheStore, RecordMeta } from './store.js';
import { DiskStore } from './stores/disk.js';
import { MemoryStore } from './stores/memory.js';
import { RedisStore } from './stores/redis.js';

type Log = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

export interface StoreSettings {
  store: 'memory' | 'disk' | 'redis';
  maxSize: number;
  maxObjectSize: number;
  path: string | undefined;
  redisUrl: string | undefined;
  redisMaxBodySize: number;
}

/** A leader's upstream request that followers for the same key wait on (request collapsing). */
export interface Inflight {
  readonly done: Promise<boolean>;
  /** true: the response was stored (followers look it up); false: they go upstream. */
  settle(stored: boolean): void;
  settled: boolean;
}

export function createInflight(): Inflight {
  let resolve!: (stored: boolean) => void;
  const done = new Promise<boolean>((r) => (resolve = r));
  const inflight: Inflight = {
    done,
    settled: false,
    settle(stored) {
      if (inflight.settled) return;
      inflight.settled = true;
      resolve(stored);
    },
  };
  return inflight;
}

/**
 * One store plus the per-process state around it: leaders of collapsed requests, keys being
 * refreshed in the background, and keys recently found uncacheable ("hit-for-pass", so requests
 * for them neither wait on each other nor lose their Range and conditional headers). Shared by
 * every cache route and kept across reloads while the store settings stay the same.
 */
export class CacheEngine {
  readonly store: CacheStore;
  readonly settings: StoreSettings;
  readonly inflight = new Map<string, Inflight>();
  readonly refreshing = new Set<string>();
  readonly uncacheable = new LRUCache<string, true>({ max: 10_000, ttl: 30_000 });
  refs = 0;

  constructor(settings: StoreSettings, log: Log) {
    this.settings = settings;
    if (settings.store === 'disk') {
      this.store = new DiskStore(settings.path ?? './var/cache', settings.maxSize, log);
    } else if (settings.store === 'redis') {
      if (settings.redisUrl === undefined) throw new Error('cache.store redis needs redis.url');
      this.store = new RedisStore(
        {
          url: settings.redisUrl,
          maxBodySize: settings.redisMaxBodySize,
          localMaxSize: settings.maxSize,
        },
        log,
      );
    } else {
      this.store = new MemoryStore(settings.maxSize);
    }
  }
}

/** What the admin API sends to purge: exactly one of url, prefix, tag or all. */
export interface CachePurgeRequest {
  url?: string;
  prefix?: string;
  tag?: string;
  all?: boolean;
}

/** Throws a TypeError for an invalid request; otherwise resolves with the number removed. */
export type CachePurger = (request: CachePurgeRequest) => Promise<{ purged: number }>;

/** Absolute URL as the cache records it: lowercased scheme and host, path and query as given. */
export function normalizeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search}`;
  } catch {
    return url;
  }
}

/**
 * The engines alive in this process, by store settings. Lives in FilterDeps.shared so a reload
 * with the same settings keeps the cached objects; the last route to release an engine closes it.
 */
export class CacheEngines {
  private readonly engines = new Map<string, CacheEngine>();
  private subscribed = false;

  acquire(settings: StoreSettings, log: Log): CacheEngine {
    const id = JSON.stringify(settings);
    let engine = this.engines.get(id);
    if (engine === undefined) {
      engine = new CacheEngine(settings, log);
      this.engines.set(id, engine);
    }
    engine.refs++;
    if (!this.subscribed) {
      channels.cachePurge.subscribe(this.onPurge);
      this.subscribed = true;
    }
    return engine;
  }

  async release(engine: CacheEngine): Promise<void> {
    engine.refs--;
    if (engine.refs > 0) return;
    this.engines.delete(JSON.stringify(engine.settings));
    if (this.engines.size === 0 && this.subscribed) {
      channels.cachePurge.unsubscribe(this.onPurge);
      this.subscribed = false;
    }
    await engine.store.close();
  }

  /**
   * The admin API publishes a CachePurgeEvent; we answer by setting `result`. Several proxies
   * in one process each add their count to whatever an earlier subscriber already set.
   */
  private readonly onPurge = (message: unknown): void => {
    const event = message as CachePurgeEvent;
    let mine: Promise<number>;
    try {
      mine = this.purge(event.purge as CachePurgeRequest).then((r) => r.purged);
    } catch (err) {
      mine = Promise.reject(err);
    }
    const previous = event.result;
    event.result =
      previous === undefined ? mine : Promise.all([previous, mine]).then(([a, b]) => a + b);
  };

  /** The purge entry point registered for the admin API (FilterDeps.shared 'cache:purge'). */
  readonly purge: CachePurger = (request) => {
    // Validation errors throw synchronously, so a caller can answer 400 at once.
    const match = purgeMatcher(request);
    return this.purgeWith(match);
  };

  private async purgeWith(
    match: 'all' | ((meta: RecordMeta) => boolean),
  ): Promise<{ purged: number }> {
    let purged = 0;
    for (const engine of this.engines.values()) {
      purged += match === 'all' ? await engine.store.clear() : await engine.store.purge(match);
    }
    return { purged };
  }
}

/** Validates a purge request; throws a TypeError whose message can be shown to the caller. */
export function purgeMatcher(request: CachePurgeRequest): 'all' | ((meta: RecordMeta) => boolean) {
  if (typeof request !== 'object' || request === null) {
    throw new TypeError('expected a JSON object with url, prefix, tag or all');
  }
  const given = (['url', 'prefix', 'tag', 'all'] as const).filter((k) => request[k] !== undefined);
  if (given.length !== 1) {
    throw new TypeError('give exactly one of url, prefix, tag or all');
  }
  if (request.all !== undefined) {
    if (request.all !== true) throw new TypeError('all must be true');
    return 'all';
  }
  if (request.tag !== undefined) {
    if (typeof request.tag !== 'string' || request.tag === '')
      throw new TypeError('tag must be a non-empty string');
    const tag = request.tag;
    return (meta) => meta.tags.includes(tag);
  }
  const value = (request.url ?? request.prefix) as unknown;
  if (typeof value !== 'string' || !/^https?:\/\//i.test(value)) {
    throw new TypeError(`${request.url !== undefined ? 'url' : 'prefix'} must be an http(s) URL`);
  }
  if (request.url !== undefined) {
    const url = normalizeUrl(value);
    return (meta) => normalizeUrl(meta.url) === url;
  }
  const prefix = normalizeUrl(value);
  return (meta) => normalizeUrl(meta.url).startsWith(prefix);
}
