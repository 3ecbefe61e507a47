import type { Balancer, BalancerDeps } from './balancer.js';
import type { Host } from '../host.js';
import { weightedRandom } from './pick.js';

/**
 * Least request with the power of two random choices, as Envoy does: draw two distinct hosts
 * (in proportion to weight) and keep the one with fewer requests in flight per unit of weight.
 * Nearly as good as a full least-connections scan, O(1) in the common case, and it avoids the
 * herd effect of every proxy instance sending to the single least-loaded server at once.
 */
export function createLeastRequest(_upstream: unknown, deps: BalancerDeps): Balancer {
  const random = deps.random;
  return {
    select(hosts: readonly Host[], _ctx, exclude?: Host): Host | undefined {
      const first = weightedRandom(hosts, random, exclude, undefined);
      if (first === undefined) return undefined;
      const second = weightedRandom(hosts, random, exclude, first);
      if (second === undefined) return first;
      const a = (first.activeRequests + 1) / first.effectiveWeight;
      const b = (second.activeRequests + 1) / second.effectiveWeight;
      return b < a ? second : first;
    },
  };
}
