import type { GcraLimit, RateLimitDecision, RateLimitStore } from '../filters/ratelimit/index.js';
import type { FromWorker } from './messages.js';

/** A decision the primary has not answered within this time fails (open or closed, per route). */
const DEFAULT_TIMEOUT_MS = 1000;
const SWEEP_MS = 250;

interface Pending {
  resolve(decision: RateLimitDecision): void;
  reject(err: Error): void;
  sentAt: number;
}

/**
 * The worker side of the per-instance memory rate limit: every `take` goes to the primary, where
 * one MemoryRateLimitStore decides for all workers in arrival order, so a limit is exact for the
 * instance however the kernel spreads connections. One IPC round trip per decision (tens of
 * microseconds on one machine). Timeouts are swept on a coarse timer rather than armed per call.
 */
export class PrimaryRateLimitStore implements RateLimitStore {
  readonly kind = 'memory';
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private readonly timeoutMs: number;
  private readonly send: (message: FromWorker) => boolean;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(send: (message: FromWorker) => boolean, timeoutMs = DEFAULT_TIMEOUT_MS) {
    this.send = send;
    this.timeoutMs = timeoutMs;
  }

  take(key: string, limit: GcraLimit): Promise<RateLimitDecision> {
    const id = this.nextId++;
    return new Promise<RateLimitDecision>((resolve, reject) => {
      try {
        this.send({ sy: 'rl', id, key, limit });
      } catch (err) {
        reject(new Error(`the primary process is unreachable: ${(err as Error).message}`));
        return;
      }
      this.pending.set(id, { resolve, reject, sentAt: Date.now() });
      if (this.sweeper === null) {
        this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
        this.sweeper.unref();
      }
    });
  }

  /** The primary's answer to request `id`. */
  answer(id: number, decision: RateLimitDecision | undefined, error: string | undefined): void {
    const entry = this.pending.get(id);
    if (entry === undefined) return;
    this.pending.delete(id);
    if (decision !== undefined) entry.resolve(decision);
    else entry.reject(new Error(error ?? 'the primary could not decide'));
  }

  private sweep(): void {
    const deadline = Date.now() - this.timeoutMs;
    for (const [id, entry] of this.pending) {
      if (entry.sentAt > deadline) continue;
      this.pending.delete(id);
      entry.reject(new Error('the primary did not answer in time'));
    }
    if (this.pending.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Fails every waiting decision (the primary went away). */
  failAll(reason: string): void {
    for (const entry of this.pending.values()) entry.reject(new Error(reason));
    this.pending.clear();
  }
}
