import type { RequestContext } from '../core/context.js';
import type { UpstreamConfig } from '../config/types.js';
import { createBalancer, type Balancer } from './lb/index.js';
import type { Host } from './host.js';

/**
 * An upstream as configured: its hosts split into primaries and backups, and its balancer.
 * Rebuilt on every reload; the hosts inside are the long-lived ones from the HostRegistry.
 */
export class UpstreamGroup {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly hosts: readonly Host[];
  readonly primaries: readonly Host[];
  readonly backups: readonly Host[];
  readonly balancer: Balancer;

  constructor(config: UpstreamConfig, hosts: Host[]) {
    this.name = config.name;
    this.config = config;
    this.hosts = hosts;
    this.primaries = hosts.filter((h) => !h.backup);
    this.backups = hosts.filter((h) => h.backup);
    this.balancer = createBalancer(config);
  }

  /** Picks a host: a primary when any is available, else a backup; undefined when none is. */
  selectHost(ctx: RequestContext, exclude?: Host): Host | undefined {
    const host = this.balancer.select(this.primaries, ctx, exclude);
    if (host !== undefined || this.backups.length === 0) return host;
    return this.balancer.select(this.backups, ctx, exclude);
  }
}
