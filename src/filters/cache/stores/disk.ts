import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import {
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
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

type Log = FilterDeps['log'];

/** A temp file older than this was abandoned by a crashed writer. */
const STALE_TEMP_MS = 10 * 60_000;

interface FileInfo {
  size: number;
  usedAt: number;
}

/**
 * One file per record under `dir/v1/xx/<sha256 of key>`. Writes go to `dir/v1/tmp` and are
 * renamed into place, so a reader (in this or another worker process) sees the old file or the
 * new one, never a half-written one. A file that fails its length or checksum check is deleted
 * and counted as a miss. The byte bound is kept per process from a scan at start-up plus its own
 * writes; with several processes it is approximate (each evicts what it knows, oldest first).
 */
export class DiskStore implements CacheStore {
  readonly kind = 'disk';
  private readonly root: string;
  private readonly tmp: string;
  private readonly maxSize: number;
  private readonly log: Log;
  private readonly files = new Map<string, FileInfo>();
  private total = 0;
  private evicting: Promise<void> | null = null;
  /** Writes in progress, so close() can let them finish. */
  private readonly pending = new Set<Promise<void>>();
  /** Resolves when the start-up scan has counted what is already on disk. */
  readonly ready: Promise<void>;

  constructor(dir: string, maxSize: number, log: Log) {
    this.root = path.resolve(dir, 'v1');
    this.tmp = path.join(this.root, 'tmp');
    this.maxSize = maxSize;
    this.log = log;
    // Created synchronously so a permission problem is reported when the config loads.
    mkdirSync(this.tmp, { recursive: true });
    this.ready = this.scan().catch((err: Error) => {
      this.log('warn', 'cache: could not scan the disk store', { error: err.message });
    });
  }

  private fileFor(key: string): { hash: string; file: string } {
    const hash = createHash('sha256').update(key).digest('hex');
    return { hash, file: path.join(this.root, hash.slice(0, 2), hash) };
  }

  private async scan(): Promise<void> {
    for (const sub of await readdir(this.root)) {
      if (sub === 'tmp' || sub.length !== 2) continue;
      for (const name of await readdir(path.join(this.root, sub)).catch(() => [] as string[])) {
        const s = await stat(path.join(this.root, sub, name)).catch(() => null);
        if (s === null || !s.isFile() || this.files.has(name)) continue;
        this.files.set(name, { size: s.size, usedAt: s.mtimeMs });
        this.total += s.size;
      }
    }
    // Temp files left by a crash are garbage; recent ones may be another process's write.
    const cutoff = Date.now() - STALE_TEMP_MS;
    for (const name of await readdir(this.tmp).catch(() => [] as string[])) {
      const file = path.join(this.tmp, name);
      const s = await stat(file).catch(() => null);
      if (s !== null && s.mtimeMs < cutoff) await unlink(file).catch(() => {});
    }
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    const { hash, file } = this.fileFor(key);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch {
      return undefined;
    }
    const record = decodeRecord(bytes);
    if (record === null) {
      this.log('warn', 'cache: dropped a corrupt disk cache file', { file });
      await this.remove(hash, file);
      return undefined;
    }
    if (record.meta.key !== key) return undefined;
    if (record.meta.expiresAt <= Date.now()) {
      await this.remove(hash, file);
      return undefined;
    }
    const info = this.files.get(hash);
    if (info !== undefined) info.usedAt = Date.now();
    return record;
  }

  set(key: string, record: CacheRecord): Promise<void> {
    const pending = this.write(key, record);
    this.pending.add(pending);
    void pending.finally(() => this.pending.delete(pending));
    return pending;
  }

  private async write(key: string, record: CacheRecord): Promise<void> {
    const { hash, file } = this.fileFor(key);
    const bytes = encodeRecord(record);
    if (bytes.length > this.maxSize) return;
    const temp = path.join(this.tmp, `${hash}.${process.pid}.${randomBytes(6).toString('hex')}`);
    try {
      await writeFile(temp, bytes);
      await mkdir(path.dirname(file), { recursive: true });
      await rename(temp, file);
    } catch (err) {
      await unlink(temp).catch(() => {});
      this.log('warn', 'cache: could not write to the disk store', {
        error: (err as Error).message,
      });
      return;
    }
    const previous = this.files.get(hash);
    if (previous !== undefined) this.total -= previous.size;
    this.files.set(hash, { size: bytes.length, usedAt: Date.now() });
    this.total += bytes.length;
    if (this.total > this.maxSize) await this.evict();
  }

  /**
   * Removes least recently used files until the store is under 90% of its bound. Concurrent
   * callers share one pass, and a write resolves only once the bound holds again.
   */
  private evict(): Promise<void> {
    if (this.evicting === null) {
      this.evicting = this.evictPass().finally(() => {
        this.evicting = null;
      });
    }
    return this.evicting;
  }

  private async evictPass(): Promise<void> {
    const byAge = [...this.files].sort((a, b) => a[1].usedAt - b[1].usedAt);
    const target = this.maxSize * 0.9;
    for (const [hash] of byAge) {
      if (this.total <= target) break;
      await this.remove(hash, path.join(this.root, hash.slice(0, 2), hash));
    }
  }

  private async remove(hash: string, file: string): Promise<void> {
    await unlink(file).catch(() => {});
    const info = this.files.get(hash);
    if (info !== undefined) {
      this.total -= info.size;
      this.files.delete(hash);
    }
  }

  async delete(key: string): Promise<void> {
    const { hash, file } = this.fileFor(key);
    await this.remove(hash, file);
  }

  /** Reads only each file's meta. Costs a scan of the directory: purges are rare admin actions. */
  async purge(match: (meta: RecordMeta) => boolean): Promise<number> {
    let count = 0;
    for (const { hash, file } of await this.listFiles()) {
      const meta = await readMeta(file);
      if (meta === null) {
        await this.remove(hash, file);
        continue;
      }
      if (match(meta)) {
        await this.remove(hash, file);
        count++;
      }
    }
    return count;
  }

  async clear(): Promise<number> {
    const all = await this.listFiles();
    for (const { hash, file } of all) await this.remove(hash, file);
    return all.length;
  }

  private async listFiles(): Promise<Array<{ hash: string; file: string }>> {
    const out: Array<{ hash: string; file: string }> = [];
    for (const sub of await readdir(this.root).catch(() => [] as string[])) {
      if (sub === 'tmp' || sub.length !== 2) continue;
      for (const name of await readdir(path.join(this.root, sub)).catch(() => [] as string[])) {
        out.push({ hash: name, file: path.join(this.root, sub, name) });
      }
    }
    return out;
  }

  /** Bytes this process believes the store holds. */
  get size(): number {
    return this.total;
  }

  async close(): Promise<void> {
    await this.ready;
    await Promise.all(this.pending);
  }

  /** Removes the whole directory tree (tests). */
  async destroy(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}

async function readMeta(file: string): Promise<RecordMeta | null> {
  let handle;
  try {
    handle = await open(file, 'r');
    const head = Buffer.alloc(RECORD_HEADER_SIZE);
    const { bytesRead } = await handle.read(head, 0, RECORD_HEADER_SIZE, 0);
    const length = metaLengthOf(head.subarray(0, bytesRead));
    if (length === null) return null;
    const meta = Buffer.alloc(length);
    const got = await handle.read(meta, 0, length, RECORD_HEADER_SIZE);
    if (got.bytesRead !== length) return null;
    return JSON.parse(meta.toString('utf8')) as RecordMeta;
  } catch {
    return null;
  } finally {
    await handle?.close();
  }
}
