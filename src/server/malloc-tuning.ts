/**
 * Stops glibc from handing heap memory back to the kernel after every garbage collection.
 *
 * Every socket read allocates its buffer with malloc (node asks for 64 KiB, below glibc's
 * 128 KiB mmap threshold, so it comes from the brk heap). A scavenge frees hundreds of them at
 * once; the free space at the top of the heap then passes glibc's 128 KiB trim threshold, the
 * heap shrinks, and the next reads grow it again: every new page is a page fault and a zeroed
 * page. With 100 KiB responses this cost 3-5x the CPU per request (8-19 minor faults per
 * request; 0 after this; see docs/performance.md).
 *
 * glibc's thresholds are dynamic: freeing an mmap'd block larger than the current mmap
 * threshold raises it to that size and the trim threshold to twice that. So one block of
 * `mib` MiB, mmap'd and freed, does what `MALLOC_TRIM_THRESHOLD_` would do without needing the
 * environment at process start. An ArrayBuffer's zero-filled backing store is such a block
 * (calloc of fresh mmap'd pages never touches them, so it costs no resident memory); it is
 * freed by the next garbage collection, which the first requests bring. Other allocators (musl)
 * just see one short-lived allocation.
 *
 * 31 MiB sits just under glibc's 32 MiB cap for the dynamic threshold; with 4-16 MiB (trim at
 * 8-32 MiB) some runs still trimmed after large scavenges. The price is memory: up to 62 MiB of
 * freed heap may stay resident (about +25-35 MiB peak RSS). So the CLI applies it only once a
 * large upstream body goes through (proxy/forward.ts `onFirstLargeBody`), long after start-up's
 * own garbage was returned. `SWITCHYARD_MALLOC_TUNING=0` turns it off.
 */
export function keepMallocHeap(mib = 31): boolean {
  if (process.platform !== 'linux' || process.env.SWITCHYARD_MALLOC_TUNING === '0') return false;
  void new ArrayBuffer(mib * 1024 * 1024);
  return true;
}
