/**
 * Short-term numbers for the live dashboard: per-second request rate, error rate and latency
 * quantiles (overall and per route), recent errors, cache and rate-limit counts. Kept apart from
 * the Prometheus registry because the dashboard wants windows ("the last minute"), which
 * cumulative counters cannot give without history.
 */

/** Latency bucket upper bounds in milliseconds; the last bucket is everything above. */
const BOUNDS_MS = [
  1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000,
  10000, 30000,
];
const HISTORY = 60;
const RECENT_ERRORS = 30;

function bucketOf(ms: number): number {
  let i = 0;
  while (i < BOUNDS_MS.length && ms > BOUNDS_MS[i]) i++;
  return i;
}

/** Quantile from bucket counts, interpolating linearly inside the bucket. */
function quantile(buckets: Uint32Array, total: number, q: number): number {
  if (total === 0) return 0;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i];
    if (n === 0) continue;
    if (seen + n >= rank) {
      const low = i === 0 ? 0 : BOUNDS_MS[i - 1];
      const high = i < BOUNDS_MS.length ? BOUNDS_MS[i] : low * 2;
      return low + ((high - low) * (rank - seen)) / n;
    }
    seen += n;
  }
  return BOUNDS_MS[BOUNDS_MS.length - 1];
}

/** One second (or any span) of requests: count, errors and a latency histogram. */
class Window {
  requests = 0;
  errors = 0;
  readonly buckets = new Uint32Array(BOUNDS_MS.length + 1);

  add(ms: number, error: boolean): void {
    this.requests++;
    if (error) this.errors++;
    this.buckets[bucketOf(ms)]++;
  }

  merge(other: Window): void {
    this.requests += other.requests;
    this.errors += other.errors;
    for (let i = 0; i < this.buckets.length; i++) this.buckets[i] += other.buckets[i];
  }

  reset(): void {
    this.requests = 0;
    this.errors = 0;
    this.buckets.fill(0);
  }
}

export interface Point {
  /** Unix time in ms at the end of the second. */
  t: number;
  rps: number;
  errorRate: number;
  p50: number;
  p99: number;
}

export interface RouteStats {
  name: string;
  requests: number;
  errors: number;
  rateLimited: number;
  /** Over the last 10 seconds. */
  rps: number;
  errorRate: number;
  p50: number;
  p99: number;
}

export interface RecentError {
  time: string;
  status: number;
  method: string;
  host: string;
  path: string;
  route: string;
  upstream: string;
  requestId: string;
}

class RouteTrack {
  requests = 0;
  errors = 0;
  rateLimited = 0;
  readonly current = new Window();
  /** The last 10 complete seconds, oldest first. */
  readonly recent: Window[] = [];
}

export class LiveStats {
  private readonly current = new Window();
  private readonly routes = new Map<string, RouteTrack>();
  private readonly history: Point[] = [];
  private readonly errors: RecentError[] = [];
  private readonly timer: NodeJS.Timeout;
  readonly cache = new Map<string, number>();
  rateLimitedTotal = 0;
  requestsTotal = 0;
  errorsTotal = 0;

  constructor(private readonly now: () => number = Date.now) {
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  private route(name: string): RouteTrack {
    let track = this.routes.get(name);
    if (track === undefined) {
      track = new RouteTrack();
      this.routes.set(name, track);
    }
    return track;
  }

  /** Records a finished request. `error` means a server-side failure (status 500 or more). */
  record(route: string, durationMs: number, status: number): void {
    const error = status >= 500;
    this.requestsTotal++;
    if (error) this.errorsTotal++;
    this.current.add(durationMs, error);
    const track = this.route(route === '' ? '(none)' : route);
    track.requests++;
    if (error) track.errors++;
    track.current.add(durationMs, error);
  }

  recordError(entry: RecentError): void {
    this.errors.push(entry);
    if (this.errors.length > RECENT_ERRORS) this.errors.shift();
  }

  recordRateLimited(route: string): void {
    this.rateLimitedTotal++;
    this.route(route === '' ? '(none)' : route).rateLimited++;
  }

  recordCache(result: string): void {
    this.cache.set(result, (this.cache.get(result) ?? 0) + 1);
  }

  /** Closes the current second; runs once a second. */
  tick(): void {
    const w = this.current;
    this.history.push({
      t: this.now(),
      rps: w.requests,
      errorRate: w.requests === 0 ? 0 : w.errors / w.requests,
      p50: quantile(w.buckets, w.requests, 0.5),
      p99: quantile(w.buckets, w.requests, 0.99),
    });
    if (this.history.length > HISTORY) this.history.shift();
    w.reset();
    for (const track of this.routes.values()) {
      const done = new Window();
      done.merge(track.current);
      track.current.reset();
      track.recent.push(done);
      if (track.recent.length > 10) track.recent.shift();
    }
  }

  /** A JSON-ready view for the dashboard. */
  snapshot(knownRoutes: readonly string[]): {
    history: Point[];
    routes: RouteStats[];
    recentErrors: RecentError[];
    totals: {
      requests: number;
      errors: number;
      rateLimited: number;
      cache: Record<string, number>;
      cacheHitRatio: number | null;
    };
  } {
    const names = [...knownRoutes];
    for (const name of this.routes.keys()) if (!names.includes(name)) names.push(name);
    const routes = names.map((name): RouteStats => {
      const track = this.routes.get(name);
      if (track === undefined)
        return {
          name,
          requests: 0,
          errors: 0,
          rateLimited: 0,
          rps: 0,
          errorRate: 0,
          p50: 0,
          p99: 0,
        };
      const sum = new Window();
      for (const w of track.recent) sum.merge(w);
      sum.merge(track.current);
      const seconds = Math.max(1, track.recent.length);
      return {
        name,
        requests: track.requests,
        errors: track.errors,
        rateLimited: track.rateLimited,
        rps: sum.requests / seconds,
        errorRate: sum.requests === 0 ? 0 : sum.errors / sum.requests,
        p50: quantile(sum.buckets, sum.requests, 0.5),
        p99: quantile(sum.buckets, sum.requests, 0.99),
      };
    });
    const cache = Object.fromEntries(this.cache);
    const hits = (cache.hit ?? 0) + (cache.stale ?? 0) + (cache.revalidated ?? 0);
    const lookups = hits + (cache.miss ?? 0) + (cache.expired ?? 0);
    return {
      history: this.history.slice(),
      routes,
      recentErrors: this.errors.slice().reverse(),
      totals: {
        requests: this.requestsTotal,
        errors: this.errorsTotal,
        rateLimited: this.rateLimitedTotal,
        cache,
        cacheHitRatio: lookups === 0 ? null : hits / lookups,
      },
    };
  }

  close(): void {
    clearInterval(this.timer);
  }
}
