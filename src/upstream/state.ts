/**
 * Per-upstream runtime state that must outlive a reload, like Host does for one server: the
 * circuit breaker's counts (requests still running on the old config count against the new
 * one's limits) and the retry budget. Kept by the HostRegistry by upstream name.
 */
export class UpstreamState {
  readonly name: string;
  /** Requests in flight to any server of the upstream (counted only with a circuit breaker). */
  activeRequests = 0;
  /** Requests dispatched but not yet written to a connection (idem). */
  pendingRequests = 0;
  /** Requests answered 503 by the circuit breaker, for the admin API. */
  shedRequests = 0;
  /**
   * Retry budget as a token bucket: each request deposits `budget` tokens (0.2 means at most one
   * retry per five requests in a storm), each retry takes one. The reserve lets a quiet upstream
   * retry its first few failures; without it the first failure after a restart could not be
   * retried at all.
   */
  retryTokens = RETRY_RESERVE;
  retriesDenied = 0;

  constructor(name: string) {
    this.name = name;
  }

  depositRetryToken(ratio: number): void {
    const next = this.retryTokens + ratio;
    this.retryTokens = next > RETRY_RESERVE ? RETRY_RESERVE : next;
  }

  /** Takes a token for a retry; false (and counted) when the budget is spent. */
  withdrawRetryToken(): boolean {
    if (this.retryTokens >= 1) {
      this.retryTokens -= 1;
      return true;
    }
    this.retriesDenied++;
    return false;
  }
}

/** Retries allowed before the ratio applies, and the cap of the bucket. */
export const RETRY_RESERVE = 10;
