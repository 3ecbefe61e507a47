import type { UpstreamConfig } from '../../config/types.js';
import { compileTemplate } from '../../core/template.js';
import type { Balancer } from './balancer.js';
import type { Host } from '../host.js';
import { hashString } from '../hash.js';

/** Ring points per unit of weight, and the cap on the ring's size for very large upstreams. */
const POINTS_PER_WEIGHT = 160;
const MAX_RING_POINTS = 100_000;
/**
 * Bounded load (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads"):
 * no host takes more than this factor times its fair share of the requests in flight, so one
 * hot key cannot pile everything on one server; the overflow walks on to the next ring point.
 */
const LOAD_FACTOR = 1.25;

interface Ring {
  /** Sorted point hashes. */
  points: Uint32Array;
  /** Index into the host list, per point. */
  owners: Uint32Array;
}

/**
 * Builds the ring once per host list (the group's primaries or backups, rebuilt on reload). A
 * host's points depend only on its origin and weight, so removing a host removes only its
 * points: only the keys that it owned move, and they spread over the others.
 */
export function buildRing(hosts: readonly Host[]): Ring {
  let totalWeight = 0;
  for (const host of hosts) totalWeight += host.weight;
  const perWeight = Math.max(
    1,
    Math.min(POINTS_PER_WEIGHT, Math.floor(MAX_RING_POINTS / Math.max(1, totalWeight))),
  );
  const entries: Array<[number, number]> = [];
  hosts.forEach((host, index) => {
    const count = host.weight * perWeight;
    for (let i = 0; i < count; i++) entries.push([hashString(`${host.origin}#${i}`), index]);
  });
  // Ties (rare) are broken by origin so the ring does not depend on list order.
  entries.sort((x, y) => x[0] - y[0] || (hosts[x[1]].origin < hosts[y[1]].origin ? -1 : 1));
  return {
    points: Uint32Array.from(entries, (e) => e[0]),
    owners: Uint32Array.from(entries, (e) => e[1]),
  };
}

/** Index of the first point at or after `hash`, wrapping to 0. */
function firstPoint(points: Uint32Array, hash: number): number {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (points[mid] < hash) lo = mid + 1;
    else hi = mid;
  }
  return lo === points.length ? 0 : lo;
}

/**
 * Ring hash (Ketama) keyed by any placeholder template (`hashKey`, default `{client_ip}`), with
 * bounded load. An empty key (e.g. the header is missing) falls back to the client address.
 */
export function createConsistentHash(upstream: UpstreamConfig): Balancer {
  const key = compileTemplate(upstream.hashKey ?? '{client_ip}');
  const rings = new WeakMap<readonly Host[], Ring>();
  return {
    select(hosts: readonly Host[], ctx, exclude?: Host): Host | undefined {
      if (hosts.length === 0) return undefined;
      let ring = rings.get(hosts);
      if (ring === undefined) {
        ring = buildRing(hosts);
        rings.set(hosts, ring);
      }
      let inFlight = 0;
      let totalWeight = 0;
      for (let i = 0; i < hosts.length; i++) {
        const host = hosts[i];
        if (host === exclude || !host.available) continue;
        inFlight += host.activeRequests;
        totalWeight += host.effectiveWeight;
      }
      if (totalWeight === 0) return undefined;
      let text = key(ctx);
      if (text === '') text = ctx.clientIp;
      const { points, owners } = ring;
      const start = firstPoint(points, hashString(text));
      // Capacity of a host is its weighted share of (in flight + this request) times the factor.
      const perWeight = (LOAD_FACTOR * (inFlight + 1)) / totalWeight;
      let fallback: Host | undefined;
      for (let step = 0; step < points.length; step++) {
        let index = start + step;
        if (index >= points.length) index -= points.length;
        const host = hosts[owners[index]];
        if (host === exclude || !host.available) continue;
        if (host.activeRequests < Math.ceil(perWeight * host.effectiveWeight)) return host;
        fallback ??= host;
      }
      return fallback;
    },
  };
}
