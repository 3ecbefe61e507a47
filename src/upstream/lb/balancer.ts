import type { RequestContext } from '../../core/context.js';
import type { UpstreamConfig } from '../../config/types.js';
import type { Clock, RandomSource } from '../clock.js';
import type { Host } from '../host.js';

/**
 * A load-balancing policy. `select` sees the whole host list (primaries or backups) and must skip
 * hosts that are not `available` and the `exclude`d one (the host a retry just failed on).
 * Weights are read from `host.effectiveWeight` (the configured weight, lowered by slow start).
 * It must not allocate per call.
 */
export interface Balancer {
  select(hosts: readonly Host[], ctx: RequestContext, exclude?: Host): Host | undefined;
  /**
   * Feedback for latency-aware policies: called with each attempt's time to response head (or
   * to failure) only when present, so other policies cost nothing.
   */
  observe?(host: Host, latencyMs: number, failed: boolean): void;
}

/** What a policy may use besides the config: injected so tests and the simulator are seeded. */
export interface BalancerDeps {
  random: RandomSource;
  clock: Clock;
}

export type BalancerFactory = (upstream: UpstreamConfig, deps: BalancerDeps) => Balancer;

const registry = new Map<string, BalancerFactory>();

export function registerBalancer(name: string, factory: BalancerFactory): void {
  registry.set(name, factory);
}

export function createBalancer(upstream: UpstreamConfig, deps: BalancerDeps): Balancer {
  const factory = registry.get(upstream.balancer);
  if (!factory) throw new Error(`balancer "${upstream.balancer}" is not available in this build`);
  return factory(upstream, deps);
}

export function balancerNames(): string[] {
  return [...registry.keys()];
}
