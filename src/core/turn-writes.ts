import type { Writable } from 'node:stream';

/**
 * Socket writes made while the event loop handles one batch of ready sockets leave together, at
 * the end of that turn (its check phase), instead of one by one as each is made.
 *
 * Why: a write on loopback delivers the bytes to the reader and wakes it. When the reader (the
 * client, the upstream) waits on the other core, waking it is an inter-processor interrupt, and
 * on a virtual machine that is dear: in `perf` it was 4-5 us of kernel time per write, against
 * about 2 us for nginx, whose peers were mostly awake already. A turn under load handles tens of
 * sockets; held writes wake each peer about once per turn instead of once per request. Measured:
 * 6-14% less CPU per proxied 1 KiB request over https, 7% over http (docs/performance.md,
 * "Writes per turn").
 *
 * The first write of a turn still leaves at once: with one request at a time there is nothing
 * to batch with, and holding it would only add the wait for the check phase to its latency.
 *
 * Holding is `cork()` now and `uncork()` at the turn's end, so a held socket's later writes
 * (another response, an error page, `end()`) queue behind the held ones in order, whichever
 * code makes them. `end()` flushes at once; the release then finds nothing corked.
 *
 * `SWITCHYARD_WRITE_BATCHING=0` turns this off (every write leaves when it is made).
 */
export const writeBatching = process.env.SWITCHYARD_WRITE_BATCHING !== '0';

let held: Writable[] = [];
let spare: Writable[] = [];
/** A write has left in this turn, and the release at its end is scheduled. */
let turnOpen = false;

function releaseHeld(): void {
  turnOpen = false;
  const list = held;
  held = spare;
  spare = list;
  for (let i = 0; i < list.length; i++) list[i]!.uncork();
  list.length = 0;
}

/**
 * Call before writing to `stream`: the first write of a turn goes now, later ones are held
 * until the turn ends. Callers that cork around several writes call it after their `cork()`,
 * so their `uncork()` leaves the hold in place.
 */
export function holdUntilTurnEnds(stream: Writable): void {
  if (!writeBatching) return;
  if (!turnOpen) {
    turnOpen = true;
    setImmediate(releaseHeld);
    return;
  }
  stream.cork();
  held.push(stream);
}
