import type { Balancer } from './balancer.js';
import type { Host } from '../host.js';

/**
 * Weighted least connections: the host with the fewest requests in flight per unit of weight.
 * Ties rotate (the scan starts one further each pick), so an idle upstream still spreads
 * requests evenly instead of sending them all to the first server.
 */
export function createLeastConnections(): Balancer {
  let cursor = 0;
  return {
    select(hosts: readonly Host[], _ctx, exclude?: Host): Host | undefined {
      const n = hosts.length;
      if (n === 0) return undefined;
      cursor = cursor >= n - 1 ? 0 : cursor + 1;
      let best: Host | undefined;
      let bestScore = Infinity;
      for (let i = 0; i < n; i++) {
        const host = hosts[(cursor + i) % n];
        if (host === exclude || !host.available) continue;
        const score = (host.activeRequests + 1) / host.effectiveWeight;
        if (score < bestScore) {
          best = host;
          bestScore = score;
        }
      }
      return best;
    },
  };
}
