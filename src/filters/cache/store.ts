import { crc32 } from 'node:zlib';

/**
 * A stored response with everything a hit needs precomputed at store time: client-ready headers
 * (hop-by-hop, tags and per-request fields removed, Content-Length set) and the freshness facts,
 * so serving it compares numbers and copies one object. Plain data: stores serialize it as JSON.
 */
export interface ResponseMeta {
  kind: 'response';
  /** The key it is stored under; checked on read so a hash collision can never mix entries. */
  key: string;
  /** The request URL (`scheme://host/path?query`), for purge by URL or prefix. */
  url: string;
  /** From Cache-Tag / Surrogate-Key, for purge by tag. */
  tags: string[];
  status: number;
  headers: Record<string, string | string[]>;
  /** Cache-Status of caches before us, kept so ours is appended (RFC 9211 §2). */
  upstreamCacheStatus: string | undefined;
  /** Epoch ms the response was received (or last revalidated). */
  responseTime: number;
  /** Seconds: corrected initial age and freshness lifetime. */
  initialAge: number;
  lifetime: number;
  noCache: boolean;
  mustRevalidate: boolean;
  /** Seconds from the response's stale-while-revalidate / stale-if-error. */
  swr: number;
  sie: number;
  etag: string | undefined;
  lastModified: number | undefined;
  /** Epoch ms after which the store may drop the record. */
  expiresAt: number;
}

/**
 * What a key holds when the response had Vary: the header names that select a variant, and the
 * variant keys seen so far (so invalidating the URI can remove every variant).
 */
export interface VaryMeta {
  kind: 'vary';
  key: string;
  url: string;
  tags: string[];
  vary: string[];
  variants: string[];
  expiresAt: number;
}

export type RecordMeta = ResponseMeta | VaryMeta;

export interface CacheRecord {
  meta: RecordMeta;
  body: Buffer;
}

export type MaybePromise<T> = T | Promise<T>;

/**
 * Where records live. Every implementation passes the one conformance suite in
 * test/cache-stores.test.mjs. `get` may answer synchronously (the memory store does) so a hit on
 * it costs no promise; a store that cannot reach its backend answers undefined (a miss) and logs.
 */
export interface CacheStore {
  readonly kind: string;
  get(key: string): MaybePromise<CacheRecord | undefined>;
  /**
   * The record if this process holds it in memory, at once and without I/O (as `get`, expired
   * records dropped). Only stores that keep records in memory have it: it is what lets a hit be
   * answered before node's request objects exist (core/quick-answer.ts).
   */
  getNow?(key: string): CacheRecord | undefined;
  set(key: string, record: CacheRecord): Promise<void>;
  delete(key: string): Promise<void>;
  /** Deletes every record whose meta matches; resolves with how many. */
  purge(match: (meta: RecordMeta) => boolean): Promise<number>;
  /** Deletes everything; resolves with how many. */
  clear(): Promise<number>;
  close(): Promise<void>;
}

const MAGIC = 0x53594331; // "SYC1"
const HEADER_SIZE = 16;

/**
 * The byte format shared by the disk and redis stores:
 * magic u32 | meta length u32 | body length u32 | crc32(meta + body) u32 | meta JSON | body.
 * The length fields and the checksum let a reader drop a truncated or corrupted record.
 */
export function encodeRecord(record: CacheRecord): Buffer {
  const meta = Buffer.from(JSON.stringify(record.meta));
  const out = Buffer.allocUnsafe(HEADER_SIZE + meta.length + record.body.length);
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(meta.length, 4);
  out.writeUInt32BE(record.body.length, 8);
  meta.copy(out, HEADER_SIZE);
  record.body.copy(out, HEADER_SIZE + meta.length);
  out.writeUInt32BE(crc32(out.subarray(HEADER_SIZE)), 12);
  return out;
}

/** The record, or null when the bytes are not a complete, intact record. */
export function decodeRecord(bytes: Buffer): CacheRecord | null {
  if (bytes.length < HEADER_SIZE || bytes.readUInt32BE(0) !== MAGIC) return null;
  const metaLength = bytes.readUInt32BE(4);
  const bodyLength = bytes.readUInt32BE(8);
  if (bytes.length !== HEADER_SIZE + metaLength + bodyLength) return null;
  if (crc32(bytes.subarray(HEADER_SIZE)) !== bytes.readUInt32BE(12)) return null;
  try {
    const meta = JSON.parse(
      bytes.toString('utf8', HEADER_SIZE, HEADER_SIZE + metaLength),
    ) as RecordMeta;
    if (typeof meta !== 'object' || meta === null || typeof meta.key !== 'string') return null;
    return { meta, body: bytes.subarray(HEADER_SIZE + metaLength) };
  } catch {
    return null;
  }
}

/** Reads only the meta of an encoded record from its first bytes (for purge scans). */
export function metaLengthOf(header: Buffer): number | null {
  if (header.length < HEADER_SIZE || header.readUInt32BE(0) !== MAGIC) return null;
  return header.readUInt32BE(4);
}

export const RECORD_HEADER_SIZE = HEADER_SIZE;

/** Approximate bytes a record holds in memory, for byte-bounded stores. */
export function recordSize(record: CacheRecord): number {
  let size = record.body.length + 256 + record.meta.key.length * 2 + record.meta.url.length * 2;
  if (record.meta.kind === 'response') {
    for (const name in record.meta.headers) {
      const v = record.meta.headers[name];
      size += name.length + (typeof v === 'string' ? v.length : v.join('').length) + 16;
    }
  } else {
    for (const v of record.meta.variants) size += v.length * 2;
  }
  return size;
}
