import type { Balancer, BalancerDeps } from './balancer.js';
import type { Host } from '../host.js';
import { weightedRandom } from './pick.js';

/** How fast old latency is forgotten (Finagle's default decay time). */
export const EWMA_DECAY_MS = 10_000;
/** A failed attempt counts as at least this slow, so a server that fails fast is not favoured. */
export const EWMA_FAILURE_PENALTY_MS = 1_000;
/** Cost of a server with requests in flight but no measurement yet: try it, but one at a time. */
const UNMEASURED_PENALTY = 1e9;

/**
 * Peak EWMA (Finagle, Linkerd): each server's latency is an exponentially weighted moving
 * average that jumps straight up to any slower sample (the peak) and decays back down with time,
 * so a server that turns slow is avoided after one slow answer, and gets traffic again once it
 * has been quiet for a while. Cost = latency x (requests in flight + 1) / weight; the cheaper of
 * two random choices wins.
 */
export function createEwma(_upstream: unknown, deps: BalancerDeps): Balancer {
  const { random, clock } = deps;

  function cost(host: Host, now: number): number {
    let latency = host.ewmaMs;
    if (latency === 0)
      return host.activeRequests === 0 ? 0 : UNMEASURED_PENALTY + host.activeRequests;
    const age = now - host.ewmaStamp;
    if (age > 0) latency *= Math.exp(-age / EWMA_DECAY_MS);
    return (latency * (host.activeRequests + 1)) / host.effectiveWeight;
  }

  return {
    select(hosts: readonly Host[], _ctx, exclude?: Host): Host | undefined {
      const first = weightedRandom(hosts, random, exclude, undefined);
      if (first === undefined) return undefined;
      const second = weightedRandom(hosts, random, exclude, first);
      if (second === undefined) return first;
      const now = clock.now();
      return cost(second, now) < cost(first, now) ? second : first;
    },
    observe(host: Host, latencyMs: number, failed: boolean): void {
      observeLatency(
        host,
        failed ? Math.max(latencyMs, EWMA_FAILURE_PENALTY_MS) : latencyMs,
        clock.now(),
      );
    },
  };
}

/** Folds one sample into the host's peak EWMA. */
export function observeLatency(host: Host, latencyMs: number, now: number): void {
  const sample = latencyMs > 0 ? latencyMs : 0.001;
  if (host.ewmaMs === 0) {
    host.ewmaMs = sample;
  } else {
    const w = Math.exp(-Math.max(0, now - host.ewmaStamp) / EWMA_DECAY_MS);
    const decayed = host.ewmaMs * w;
    host.ewmaMs = sample > decayed ? sample : decayed + sample * (1 - w);
  }
  host.ewmaStamp = now;
}
