import type { Pool } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { systemClock, type Clock, type RandomSource } from './clock.js';
import { Host, type PoolSettings } from './host.js';
import { upstreamTlsOptions, type UpstreamTlsSettings } from './tls.js';
import { UpstreamGroup } from './group.js';
import { parseCircuitBreaker, type CircuitBreakerSettings } from './policy.js';
import { UpstreamState } from './state.js';
import { parseDuration } from '../config/units.js';

function poolSettings(config: UpstreamConfig): PoolSettings {
  const breaker = config.features.circuitBreaker as Parameters<typeof parseCircuitBreaker>[0];
  const limits: CircuitBreakerSettings | null = parseCircuitBreaker(breaker);
  return {
    connectTimeoutMs: config.connectTimeoutMs,
    keepAliveIdleMs: config.keepAlive.idleTimeoutMs,
    maxIdle: config.keepAlive.maxIdle,
    maxConnections: limits?.maxConnections ?? null,
    protocol: config.protocol,
    tls: upstreamTlsOptions(config.name, config.features.tls as UpstreamTlsSettings | undefined),
  };
}

export interface RegistryOptions {
  /** Time for ejections, slow start and EWMA; injected by tests. */
  clock?: Clock;
  /** Randomness for random, least-request and ewma; a seeded one in tests. */
  random?: RandomSource;
}

/**
 * Owns every Host across reloads, keyed by upstream name and origin, so a server that stays in
 * the config keeps its pool, health and counters. Pools of removed servers are closed gracefully
 * (in-flight requests finish first).
 */
export class HostRegistry {
  private hosts = new Map<string, Host>();
  private states = new Map<string, UpstreamState>();
  private built = false;
  readonly clock: Clock;
  private readonly random: RandomSource | undefined;

  constructor(options: RegistryOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.random = options.random;
  }

  /** Builds the groups for a config, reusing hosts that already exist. */
  build(upstreams: Iterable<UpstreamConfig>): Map<string, UpstreamGroup> {
    const next = new Map<string, Host>();
    const groups = new Map<string, UpstreamGroup>();
    const retiredPools: Pool[] = [];
    const states = new Map<string, UpstreamState>();
    for (const upstream of upstreams) {
      const settings = poolSettings(upstream);
      const slowStart = upstream.features.slowStart;
      const slowStartMs = typeof slowStart === 'string' ? parseDuration(slowStart) : 0;
      const hosts: Host[] = [];
      for (const server of upstream.servers) {
        const key = `${upstream.name}\u0000${server.origin}`;
        let host = next.get(key);
        if (host !== undefined) {
          // The same origin listed twice in one upstream: one host, weights added.
          host.weight += server.weight;
          continue;
        }
        host = this.hosts.get(key);
        if (host === undefined) {
          host = new Host(
            upstream.name,
            server.origin,
            server.weight,
            server.backup,
            settings,
            this.clock,
          );
          host.slowStartMs = slowStartMs;
          // A server added by a reload ramps up; the ones present at start begin together.
          if (this.built) host.startSlowStart();
        } else {
          const old = host.reconfigure(server.weight, server.backup, settings);
          if (old) retiredPools.push(old);
          host.slowStartMs = slowStartMs;
        }
        next.set(key, host);
        hosts.push(host);
      }
      const state = this.states.get(upstream.name) ?? new UpstreamState(upstream.name);
      states.set(upstream.name, state);
      groups.set(
        upstream.name,
        new UpstreamGroup(upstream, hosts, { state, clock: this.clock, random: this.random }),
      );
    }
    for (const [key, host] of this.hosts) {
      if (!next.has(key)) retiredPools.push(host.pool);
    }
    this.hosts = next;
    this.states = states;
    this.built = true;
    for (const pool of retiredPools) pool.close().catch(() => undefined);
    return groups;
  }

  all(): IterableIterator<Host> {
    return this.hosts.values();
  }

  /** Closes every pool; used at shutdown after in-flight requests are done. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.hosts.values()].map((h) => h.pool.close()));
  }

  /** Destroys every pool at once; used when the shutdown timeout ran out. */
  async destroy(): Promise<void> {
    await Promise.allSettled([...this.hosts.values()].map((h) => h.pool.destroy()));
  }
}
