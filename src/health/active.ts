import type { Pool } from 'undici';
import { undici } from '../upstream/undici.js';
import { channels } from '../core/events.js';
import type { RandomSource } from '../upstream/clock.js';
import type { Host } from '../upstream/host.js';
import type { HealthCheckSettings } from '../upstream/policy.js';

/** Bytes of a check's response body read for the `body` regex; the rest is discarded. */
const MAX_BODY_BYTES = 64 * 1024;

export type HealthLog = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

export interface CheckResult {
  ok: boolean;
  status: number;
  error: string;
}

/**
 * Active health checks for one server: one check at a time, every `interval` give or take
 * `jitter` (so checks of many servers, and of many proxies, do not line up), each bounded by
 * `timeout`. `healthyThreshold` consecutive passes mark a server up and `unhealthyThreshold`
 * consecutive failures mark it down; the counters live on the Host so a reload that keeps the
 * server keeps its progress.
 *
 * Checks use their own single connection, not the traffic pool: a server saturated by traffic
 * (or limited by maxConnections) must not fail its checks because they queue behind requests.
 */
export class HostChecker {
  readonly host: Host;
  readonly settings: HealthCheckSettings;
  private readonly random: RandomSource;
  private readonly log: HealthLog;
  private readonly pool: Pool;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: AbortController | null = null;
  private stopped = false;

  constructor(host: Host, settings: HealthCheckSettings, random: RandomSource, log: HealthLog) {
    this.host = host;
    this.settings = settings;
    this.random = random;
    this.log = log;
    const pool = host.poolSettings;
    this.pool = new (undici().Pool)(host.origin, {
      connections: 1,
      pipelining: 1,
      keepAliveTimeout: Math.max(settings.intervalMs * 2, 1000),
      connect: { timeout: settings.timeoutMs, ...(pool.tls ?? {}) },
      allowH2: pool.protocol === 'h2',
      maxHeaderSize: 64 * 1024,
    });
  }

  /** Schedules the first check after a random share of the jitter, so checkers spread out. */
  start(): void {
    this.schedule(this.random() * this.settings.jitterMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.inFlight?.abort();
    this.pool.destroy().catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runOnce().then(() => {
        const { intervalMs, jitterMs } = this.settings;
        this.schedule(Math.max(0, intervalMs + (this.random() * 2 - 1) * jitterMs));
      });
    }, delayMs);
    this.timer.unref();
  }

  /** Runs one check and applies its verdict to the host. */
  async runOnce(): Promise<CheckResult> {
    const started = performance.now();
    const result = await this.check();
    if (this.stopped) return result;
    const durationMs = performance.now() - started;
    this.record(result);
    if (channels.healthCheck.hasSubscribers)
      channels.healthCheck.publish({
        upstream: this.host.upstream,
        server: this.host.origin,
        ok: result.ok,
        status: result.status,
        error: result.error,
        durationMs,
      });
    return result;
  }

  private async check(): Promise<CheckResult> {
    const s = this.settings;
    const abort = new AbortController();
    this.inFlight = abort;
    const timer = setTimeout(() => abort.abort(new Error('health check timed out')), s.timeoutMs);
    try {
      const res = await this.pool.request({
        path: s.path,
        method: s.method as 'GET',
        headers: { host: s.host ?? this.host.authority, 'user-agent': 'switchyard-health-check' },
        signal: abort.signal,
        headersTimeout: s.timeoutMs,
        bodyTimeout: s.timeoutMs,
      });
      const status = res.statusCode;
      if (status < s.statusMin || status > s.statusMax) {
        await res.body.dump();
        return { ok: false, status, error: `unexpected status ${status}` };
      }
      if (s.body === null) {
        await res.body.dump();
        return { ok: true, status, error: '' };
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= MAX_BODY_BYTES) break;
      }
      const text = Buffer.concat(chunks).subarray(0, MAX_BODY_BYTES).toString('utf8');
      return s.body.test(text)
        ? { ok: true, status, error: '' }
        : { ok: false, status, error: 'body does not match' };
    } catch (err) {
      const e = err as Error & { code?: string };
      return {
        ok: false,
        status: 0,
        error: abort.signal.aborted ? 'timeout' : (e.code ?? e.message),
      };
    } finally {
      clearTimeout(timer);
      this.inFlight = null;
    }
  }

  private record(result: CheckResult): void {
    const host = this.host;
    const s = this.settings;
    host.lastCheck = { ...result, at: Date.now() };
    if (result.ok) {
      host.checkFailures = 0;
      host.checkPasses++;
      if (!host.healthy && host.checkPasses >= s.rise && host.setHealthy(true, 'active'))
        this.log('info', 'upstream server is healthy again', {
          upstream: host.upstream,
          server: host.origin,
        });
    } else {
      host.checkPasses = 0;
      host.checkFailures++;
      if (host.healthy && host.checkFailures >= s.fall && host.setHealthy(false, 'active'))
        this.log('warn', 'upstream server failed its health checks', {
          upstream: host.upstream,
          server: host.origin,
          reason: result.error,
        });
    }
  }
}
