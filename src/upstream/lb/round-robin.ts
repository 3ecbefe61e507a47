import type { Balancer } from './balancer.js';
import type { Host } from '../host.js';

/**
 * Smooth weighted round-robin, nginx's algorithm: every pick adds each host's weight to its
 * running score, takes the highest, and subtracts the total from the winner. Weights 5,1,1 give
 * a,a,b,a,c,a,a: spread out, never bursts. The running score lives in `host.lbState`.
 */
export function createRoundRobin(): Balancer {
  return {
    select(hosts: readonly Host[], _ctx, exclude?: Host): Host | undefined {
      let best: Host | undefined;
      let total = 0;
      for (let i = 0; i < hosts.length; i++) {
        const host = hosts[i];
        if (!host.available || host === exclude) continue;
        const weight = host.effectiveWeight;
        host.lbState += weight;
        total += weight;
        if (best === undefined || host.lbState > best.lbState) best = host;
      }
      if (best !== undefined) best.lbState -= total;
      return best;
    },
  };
}
