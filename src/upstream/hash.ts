/**
 * 32-bit string hash (MurmurHash3's mixing over UTF-16 code units). Fast, allocation-free and
 * well spread, which ring hashing needs: FNV-style hashes cluster on similar keys such as
 * `server-1#0`, `server-1#1`.
 */
export function hashString(text: string, seed = 0): number {
  let h = seed >>> 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    let k = text.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
