import type { Pool } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { Host, type PoolSettings } from './host.js';
import { UpstreamGroup } from './group.js';

function poolSettings(config: UpstreamConfig): PoolSettings {
  return {
    connectTimeoutMs: config.connectTimeoutMs,
    keepAliveIdleMs: config.keepAlive.idleTimeoutMs,
    maxConnections: null,
    protocol: config.protocol,
  };
}

/**
 * Owns every Host across reloads, keyed by upstream name and origin, so a server that stays in
 * the config keeps its pool, health and counters. Pools of removed servers are closed gracefully
 * (in-flight requests finish first).
 */
export class HostRegistry {
  private hosts = new Map<string, Host>();

  /** Builds the groups for a config, reusing hosts that already exist. */
  build(upstreams: Iterable<UpstreamConfig>): Map<string, UpstreamGroup> {
    const next = new Map<string, Host>();
    const groups = new Map<string, UpstreamGroup>();
    const retiredPools: Pool[] = [];
    for (const upstream of upstreams) {
      const settings = poolSettings(upstream);
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
          host = new Host(upstream.name, server.origin, server.weight, server.backup, settings);
        } else {
          const old = host.reconfigure(server.weight, server.backup, settings);
          if (old) retiredPools.push(old);
        }
        next.set(key, host);
        hosts.push(host);
      }
      groups.set(upstream.name, new UpstreamGroup(upstream, hosts));
    }
    for (const [key, host] of this.hosts) {
      if (!next.has(key)) retiredPools.push(host.pool);
    }
    this.hosts = next;
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
