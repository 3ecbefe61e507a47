import { close, write, writev } from 'node:fs';
import { createRequire } from 'node:module';
import type pino from 'pino';

// pino (for its SonicBoom destination) is loaded only when a log goes to stdout.
const requireLazily = createRequire(import.meta.url);

/** Where access-log lines go: a file (FileLines) or stdout (StdoutLines). */
export interface LineSink {
  /** Takes one finished line (newline included); never blocks, never throws. */
  write(line: string): void;
  /** Hands over what is gathered now (before a reopen or close). */
  flush(): void;
  /** Writes out everything taken, then releases the descriptor. */
  end(): Promise<void>;
}

/**
 * Bytes gathered before a write. An asynchronous fs.write costs tens of microseconds of CPU
 * whatever its size (a libuv thread-pool hand-off, measured 25-50 us here), so at 4 KiB (about
 * 9 lines) the writes cost more than building the lines; at 64 KiB (about 150 lines) they cost
 * well under a microsecond a line. Light traffic is still written every FLUSH_MS.
 */
const PAGE_BYTES = 64 * 1024;
const FLUSH_MS = 500;
/** A disk that cannot keep up loses lines past this much backlog rather than grow the heap. */
const MAX_BACKLOG_BYTES = 16 * 1024 * 1024;
/** Emptied pages kept for reuse (more only while writes lag behind). */
const SPARE_PAGES = 2;

/**
 * Lines to a file: each is encoded straight into a 64 KiB page, and a full page goes out with
 * one fs.write. One write is in flight at a time, so lines keep their order; pages filled
 * meanwhile queue behind it and go out together (writev). Compared with joining a turn's lines
 * into a string, encoding that into a Buffer and handing it to sonic-boom (which gathers and
 * concatenates again), a line is copied once instead of three times and leaves less garbage.
 */
export class FileLines implements LineSink {
  private page: Buffer = Buffer.allocUnsafeSlow(PAGE_BYTES);
  private used = 0;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private writing = false;
  private readonly spare: Buffer[] = [];
  private ending: (() => void) | null = null;
  private ended: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly fd: number,
    private readonly onError: (err: Error) => void,
  ) {
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  write(line: string): void {
    if (this.ended !== null) return;
    // A UTF-16 unit encodes to at most 3 bytes: the page has room when this fits.
    const most = line.length * 3;
    if (this.used + most > PAGE_BYTES) {
      this.flush();
      if (most > PAGE_BYTES) {
        this.enqueue(Buffer.from(line));
        return;
      }
    }
    this.used += this.page.write(line, this.used);
  }

  flush(): void {
    if (this.used === 0) return;
    const full = this.page.subarray(0, this.used);
    this.page = this.spare.pop() ?? Buffer.allocUnsafeSlow(PAGE_BYTES);
    this.used = 0;
    this.enqueue(full);
  }

  end(): Promise<void> {
    if (this.ended !== null) return this.ended;
    clearInterval(this.timer);
    this.flush();
    this.ended = new Promise((resolve) => {
      const finish = () => close(this.fd, () => resolve());
      if (!this.writing) finish();
      else this.ending = finish;
    });
    return this.ended;
  }

  private enqueue(buf: Buffer): void {
    if (this.queuedBytes + buf.length > MAX_BACKLOG_BYTES) {
      this.onError(new Error('the disk is not keeping up; lines dropped'));
      return;
    }
    this.queue.push(buf);
    this.queuedBytes += buf.length;
    if (!this.writing) this.writeNext();
  }

  private writeNext(): void {
    if (this.queue.length === 0) {
      this.writing = false;
      const ending = this.ending;
      this.ending = null;
      ending?.();
      return;
    }
    this.writing = true;
    const bufs = this.queue.splice(0);
    const done = (err: NodeJS.ErrnoException | null, written: number) =>
      this.written(bufs, err, written);
    if (bufs.length === 1) write(this.fd, bufs[0]!, 0, bufs[0]!.length, null, done);
    else writev(this.fd, bufs, null, done);
  }

  private written(bufs: Buffer[], err: NodeJS.ErrnoException | null, written: number): void {
    let total = 0;
    for (const b of bufs) total += b.length;
    if (err !== null) {
      // Lost: retrying a failing disk would only grow the backlog.
      this.queuedBytes -= total;
      this.onError(err);
    } else {
      this.queuedBytes -= Math.min(written, total);
      // A short write (rare for files): the rest goes first next time.
      let skip = written;
      const rest: Buffer[] = [];
      for (const b of bufs) {
        if (skip >= b.length) skip -= b.length;
        else {
          rest.push(skip > 0 ? b.subarray(skip) : b);
          skip = 0;
        }
      }
      if (rest.length > 0) this.queue.unshift(...rest);
    }
    // Pages written whole go back for reuse (a short write's rest is still queued).
    if (this.queue.length === 0)
      for (const b of bufs)
        if (
          this.spare.length < SPARE_PAGES &&
          b.byteOffset === 0 &&
          b.buffer.byteLength === PAGE_BYTES
        )
          this.spare.push(Buffer.from(b.buffer));
    this.writeNext();
  }
}

/**
 * Lines to stdout through pino's sonic-boom, which copes with a pipe that is full (EAGAIN) and
 * a reader that goes away. A turn's lines go over as one Buffer (sonic-boom's string mode
 * measures its whole pending string on every write and encodes it twice).
 */
export class StdoutLines implements LineSink {
  private readonly destination: ReturnType<typeof pino.destination>;
  private batch: string[] = [];
  private scheduled = false;
  private readonly flushNow = (): void => this.flush();

  constructor(onError: (err: Error) => void) {
    this.destination = (requireLazily('pino') as typeof pino).destination({
      dest: 1,
      sync: false,
      contentMode: 'buffer',
      minLength: PAGE_BYTES,
      maxWrite: 4 * PAGE_BYTES,
      periodicFlush: FLUSH_MS,
      maxLength: MAX_BACKLOG_BYTES,
    });
    this.destination.on('error', onError);
  }

  write(line: string): void {
    this.batch.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.batch.length === 0) return;
    const text = this.batch.length === 1 ? this.batch[0]! : this.batch.join('');
    this.batch = [];
    (this.destination as unknown as { write(data: Buffer): boolean }).write(Buffer.from(text));
  }

  end(): Promise<void> {
    this.flush();
    // stdout stays open: what is gathered is written, nothing is closed.
    return new Promise((resolve) => this.destination.flush(() => resolve()));
  }
}
