import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';

// Loaded on first use: a proxy without Redis never pays the module's memory.
const requireLazily = createRequire(import.meta.url);
function loadRedis(): typeof import('ioredis').Redis {
  return (requireLazily('ioredis') as typeof import('ioredis')).Redis;
}
import {
  decodeRecord,
  encodeRecord,
  metaLengthOf,
  RECORD_HEADER_SIZE,
  type CacheRecord,
  type CacheStore,
  type RecordMeta,
} from '../store.js';
import type { FilterDeps } from '../../../core/filter.js';
import { MemoryStore } from './memory.js';
import { channels, type RedisStateEvent } from '../../../core/events.js';

type Log = FilterDeps['log'];

export interface RedisStoreOptions {
  url: string;
  /** Records with a larger body stay in this process's memory store. */
  maxBodySize: number;
  /** Byte bound of the local memory store. */
  localMaxSize: number;
  /** Prefix of every key this store writes. */
  prefix?: string;
}

const META_PROBE = 4096;

/**
 * Records shared by every instance through Redis (one string per record, in the disk store's
 * checksummed format, expiring with the record). Bodies over `maxBodySize` stay local, in a
 * memory store, so Redis holds many small objects rather than a few huge ones. When Redis is
 * unreachable, reads are misses and writes are skipped: the cache degrades, the proxy serves.
 */
export class RedisStore implements CacheStore {
  readonly kind = 'redis';
  readonly client: Redis;
  private readonly local: MemoryStore;
  private readonly maxBodySize: number;
  private readonly prefix: string;
  private readonly log: Log;
  private lastErrorLog = 0;
  /** Set by close(): the connection's end is then expected, not an outage. */
  private closing = false;

  constructor(options: RedisStoreOptions, log: Log) {
    this.log = log;
    this.maxBodySize = options.maxBodySize;
    this.prefix = options.prefix ?? 'switchyard:cache:';
    this.local = new MemoryStore(options.localMaxSize);
    this.client = new (loadRedis())(options.url, {
      maxRetriesPerRequest: 1,
      commandTimeout: 2000,
      connectTimeout: 2000,
      enableOfflineQueue: true,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    this.client.on('error', (err: Error) => {
      this.logThrottled('redis connection error', err);
      this.publishState(false, err.message);
    });
    this.client.on('close', () => this.publishState(false));
    this.client.on('ready', () => this.publishState(true));
  }

  private publishState(up: boolean, error?: string): void {
    if (this.closing || !channels.redisState.hasSubscribers) return;
    const event: RedisStateEvent = { store: 'cache', up, error };
    channels.redisState.publish(event);
  }

  /** A failed command: logged (throttled) and counted. */
  private warn(message: string, err: unknown): void {
    this.logThrottled(message, err);
    this.publishState(this.available, (err as Error).message);
  }

  private logThrottled(message: string, err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 10_000) return;
    this.lastErrorLog = now;
    this.log('warn', `cache: ${message}`, { error: (err as Error).message });
  }

  /**
   * While Redis is unreachable every call would wait for its timeout; the cache degrades to its
   * local part at once instead (a miss, a skipped write), so an outage never stalls requests.
   */
  private get available(): boolean {
    // The first connection is waited for (commands queue); a lost one is not.
    const status = this.client.status;
    return status !== 'reconnecting' && status !== 'end' && status !== 'close';
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    const local = this.local.get(key);
    if (local !== undefined) return local;
    if (!this.available) return undefined;
    let bytes: Buffer | null;
    try {
      bytes = await this.client.getBuffer(this.prefix + key);
    } catch (err) {
      this.warn('redis read failed', err);
      return undefined;
    }
    if (bytes === null) return undefined;
    const record = decodeRecord(bytes);
    if (record === null) {
      this.log('warn', 'cache: dropped a corrupt redis cache record', { key });
      await this.client.del(this.prefix + key).catch(() => {});
      return undefined;
    }
    if (record.meta.key !== key || record.meta.expiresAt <= Date.now()) return undefined;
    return record;
  }

  async set(key: string, record: CacheRecord): Promise<void> {
    const ttl = Math.ceil(record.meta.expiresAt - Date.now());
    if (ttl <= 0) return;
    if (!this.available) {
      // Kept locally so this instance still benefits; Redis gets it again once it is back.
      await this.local.set(key, record);
      return;
    }
    try {
      if (record.body.length > this.maxBodySize) {
        await this.local.set(key, record);
        // A smaller, older copy in Redis must not outlive this one.
        await this.client.del(this.prefix + key);
      } else {
        await this.local.delete(key);
        await this.client.set(this.prefix + key, encodeRecord(record), 'PX', ttl);
      }
    } catch (err) {
      this.warn('redis write failed', err);
    }
  }

  async delete(key: string): Promise<void> {
    await this.local.delete(key);
    if (!this.available) return;
    try {
      await this.client.del(this.prefix + key);
    } catch (err) {
      this.warn('redis delete failed', err);
    }
  }

  private async eachKey(fn: (keys: string[]) => Promise<void>): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.client.scan(cursor, 'MATCH', `${this.prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await fn(keys);
    } while (cursor !== '0');
  }

  /** Scans this store's keys, reading only each record's meta. */
  async purge(match: (meta: RecordMeta) => boolean): Promise<number> {
    let count = await this.local.purge(match);
    await this.eachKey(async (keys) => {
      for (const key of keys) {
        const meta = await this.readMeta(key);
        if (meta === undefined) continue;
        if (meta === null || match(meta)) {
          await this.client.del(key);
          if (meta !== null) count++;
        }
      }
    });
    return count;
  }

  /** undefined when the key vanished, null when the record is unreadable. */
  private async readMeta(key: string): Promise<RecordMeta | null | undefined> {
    const head = await this.client.getrangeBuffer(key, 0, RECORD_HEADER_SIZE + META_PROBE - 1);
    if (head.length === 0) return undefined;
    const length = metaLengthOf(head);
    if (length === null) return null;
    let metaBytes = head.subarray(RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + length);
    if (metaBytes.length < length) {
      metaBytes = await this.client.getrangeBuffer(
        key,
        RECORD_HEADER_SIZE,
        RECORD_HEADER_SIZE + length - 1,
      );
    }
    try {
      return JSON.parse(metaBytes.toString('utf8')) as RecordMeta;
    } catch {
      return null;
    }
  }

  async clear(): Promise<number> {
    let count = await this.local.clear();
    await this.eachKey(async (keys) => {
      count += await this.client.del(...keys);
    });
    return count;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.local.close();
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
