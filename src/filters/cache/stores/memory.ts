import { LRUCache } from 'lru-cache';
import { recordSize, type CacheRecord, type CacheStore, type RecordMeta } from '../store.js';

/**
 * Records in process memory, least recently used evicted first, bounded by bytes (bodies plus
 * an estimate of headers). `get` answers synchronously: a memory hit costs no promise.
 */
export class MemoryStore implements CacheStore {
  readonly kind = 'memory';
  private readonly lru: LRUCache<string, CacheRecord>;

  constructor(maxSize: number) {
    this.lru = new LRUCache<string, CacheRecord>({
      maxSize: Math.max(1, maxSize),
      sizeCalculation: recordSize,
    });
  }

  get(key: string): CacheRecord | undefined {
    const record = this.lru.get(key);
    if (record === undefined) return undefined;
    if (record.meta.expiresAt <= Date.now()) {
      this.lru.delete(key);
      return undefined;
    }
    return record;
  }

  getNow(key: string): CacheRecord | undefined {
    return this.get(key);
  }

  async set(key: string, record: CacheRecord): Promise<void> {
    this.lru.set(key, record);
  }

  async delete(key: string): Promise<void> {
    this.lru.delete(key);
  }

  async purge(match: (meta: RecordMeta) => boolean): Promise<number> {
    const doomed: string[] = [];
    for (const [key, record] of this.lru.entries()) if (match(record.meta)) doomed.push(key);
    for (const key of doomed) this.lru.delete(key);
    return doomed.length;
  }

  async clear(): Promise<number> {
    const count = this.lru.size;
    this.lru.clear();
    return count;
  }

  /** Bytes held, for tests and diagnostics. */
  get size(): number {
    return this.lru.calculatedSize;
  }

  async close(): Promise<void> {
    this.lru.clear();
  }
}
