/**
 * Whole-instance views for the admin API in a cluster primary: the workers' upstream and live
 * stats snapshots merged into one. Counters add up; a server is healthy only when every worker
 * says so (like the `min` aggregation of switchyard_upstream_server_healthy); drained or ejected
 * when any worker has it so.
 */
import type { AdminServerView, AdminUpstreamView } from '../admin/server.js';
import type { LiveStats } from '../observability/stats.js';
import type { WorkerHostView, WorkerUpstreamView } from './messages.js';

export type StatsSnapshot = ReturnType<LiveStats['snapshot']>;

export class MergedHost implements AdminServerView {
  readonly origin: string;
  weight = 0;
  healthy = true;
  draining = false;
  ejected = false;
  activeRequests = 0;
  totalRequests = 0;

  constructor(
    origin: string,
    private readonly onDrain: (origin: string, draining: boolean) => void,
  ) {
    this.origin = origin;
  }

  get state(): string {
    if (this.draining) return 'draining';
    return this.healthy && !this.ejected ? 'up' : 'down';
  }

  add(h: WorkerHostView, first: boolean): void {
    this.weight = h.weight;
    this.healthy = first ? h.healthy : this.healthy && h.healthy;
    this.draining = first ? h.draining : this.draining || h.draining;
    this.ejected = first ? h.ejected : this.ejected || h.ejected;
    this.activeRequests += h.activeRequests;
    this.totalRequests += h.totalRequests;
  }

  setDraining(draining: boolean): void {
    this.draining = draining;
    this.onDrain(this.origin, draining);
  }
}

export function mergeUpstreams(
  perWorker: WorkerUpstreamView[][],
  onDrain: (upstream: string, origin: string, draining: boolean) => void,
): AdminUpstreamView[] {
  const merged = new Map<
    string,
    { name: string; config: WorkerUpstreamView['config']; hosts: Map<string, MergedHost> }
  >();
  for (const upstreams of perWorker) {
    for (const u of upstreams) {
      let entry = merged.get(u.name);
      if (entry === undefined) {
        entry = { name: u.name, config: u.config, hosts: new Map() };
        merged.set(u.name, entry);
      }
      for (const h of u.hosts) {
        let host = entry.hosts.get(h.origin);
        const first = host === undefined;
        if (host === undefined) {
          const name = u.name;
          host = new MergedHost(h.origin, (origin, d) => onDrain(name, origin, d));
          entry.hosts.set(h.origin, host);
        }
        host.add(h, first);
      }
    }
  }
  return [...merged.values()].map((e) => ({
    name: e.name,
    config: e.config,
    hosts: [...e.hosts.values()],
  }));
}

/**
 * Adds up the workers' dashboard snapshots. Per-second history is aligned from the newest
 * second; rates and counts add up; percentiles take the worst worker's (an upper bound: exact
 * percentiles cannot be rebuilt from per-worker percentiles).
 */
export function mergeStats(snapshots: StatsSnapshot[]): StatsSnapshot | null {
  if (snapshots.length === 0) return null;
  if (snapshots.length === 1) return snapshots[0];
  const [first, ...rest] = snapshots;
  const out: StatsSnapshot = structuredClone(first);
  for (const s of rest) {
    const offset = out.history.length - s.history.length;
    s.history.forEach((p, i) => {
      const target = out.history[i + offset];
      if (target === undefined) return;
      const errors = target.errorRate * target.rps + p.errorRate * p.rps;
      target.rps += p.rps;
      target.errorRate = target.rps === 0 ? 0 : errors / target.rps;
      target.p50 = Math.max(target.p50, p.p50);
      target.p99 = Math.max(target.p99, p.p99);
    });
    for (const r of s.routes) {
      const target = out.routes.find((t) => t.name === r.name);
      if (target === undefined) {
        out.routes.push({ ...r });
        continue;
      }
      const errors = target.errorRate * target.rps + r.errorRate * r.rps;
      target.requests += r.requests;
      target.errors += r.errors;
      target.rateLimited += r.rateLimited;
      target.rps += r.rps;
      target.errorRate = target.rps === 0 ? 0 : errors / target.rps;
      target.p50 = Math.max(target.p50, r.p50);
      target.p99 = Math.max(target.p99, r.p99);
    }
    out.recentErrors.push(...s.recentErrors);
    out.totals.requests += s.totals.requests;
    out.totals.errors += s.totals.errors;
    out.totals.rateLimited += s.totals.rateLimited;
    for (const [k, v] of Object.entries(s.totals.cache))
      out.totals.cache[k] = (out.totals.cache[k] ?? 0) + v;
  }
  out.recentErrors.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  out.recentErrors.length = Math.min(out.recentErrors.length, 50);
  const c = out.totals.cache;
  const hits = (c.hit ?? 0) + (c.stale ?? 0) + (c.revalidated ?? 0);
  const lookups = hits + (c.miss ?? 0) + (c.expired ?? 0);
  out.totals.cacheHitRatio = lookups === 0 ? null : hits / lookups;
  return out;
}
