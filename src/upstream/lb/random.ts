import type { Balancer, BalancerDeps } from './balancer.js';
import type { Host } from '../host.js';
import { weightedRandom } from './pick.js';

/** Weighted random: each available host in proportion to its weight. */
export function createRandom(_upstream: unknown, deps: BalancerDeps): Balancer {
  const random = deps.random;
  return {
    select(hosts: readonly Host[], _ctx, exclude?: Host): Host | undefined {
      return weightedRandom(hosts, random, exclude, undefined);
    },
  };
}
