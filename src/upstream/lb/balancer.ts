import type { RequestContext } from '../../core/context.js';
import type { UpstreamConfig } from '../../config/types.js';
import type { Host } from '../host.js';

/**
 * A load-balancing policy. `select` sees the whole host list (primaries or backups) and must skip
 * hosts that are not `available` and the `exclude`d one (the host a retry just failed on).
 * It must not allocate per call on the common path.
 */
export interface Balancer {
  select(hosts: readonly Host[], ctx: RequestContext, exclude?: Host): Host | undefined;
}

export type BalancerFactory = (upstream: UpstreamConfig) => Balancer;

const registry = new Map<string, BalancerFactory>();

export function registerBalancer(name: string, factory: BalancerFactory): void {
  registry.set(name, factory);
}

export function createBalancer(upstream: UpstreamConfig): Balancer {
  const factory = registry.get(upstream.balancer);
  if (!factory) throw new Error(`balancer "${upstream.balancer}" is not available in this build`);
  return factory(upstream);
}

export function balancerNames(): string[] {
  return [...registry.keys()];
}
