import type { RequestContext } from '../core/context.js';
import { channels } from '../core/events.js';
import type { UpstreamConfig } from '../config/types.js';
import { OutlierDetector } from '../health/passive.js';
import { systemClock, type Clock, type RandomSource } from './clock.js';
import { createBalancer, type Balancer } from './lb/index.js';
import { setIgnoreEjections, type Host } from './host.js';
import { parsePolicy, type CircuitBreakerSettings, type RetrySettings } from './policy.js';
import type { UpstreamPolicy } from './policy.js';
import { UpstreamState } from './state.js';
import { StickySessions } from './sticky.js';

export interface GroupDeps {
  /** Survives reloads; a fresh one when omitted (tests building a group by hand). */
  state?: UpstreamState;
  random?: RandomSource;
  clock?: Clock;
}

/**
 * An upstream as configured: its hosts split into primaries and backups, its balancer, and the
 * parsed resilience policy. Rebuilt on every reload; the hosts inside are the long-lived ones
 * from the HostRegistry, and so is `state` (breaker counts, retry budget).
 *
 * Every optional feature is a field that is `null` when off, so the proxy's hot path pays one
 * comparison for it.
 */
export class UpstreamGroup {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly hosts: readonly Host[];
  readonly primaries: readonly Host[];
  readonly backups: readonly Host[];
  readonly balancer: Balancer;
  readonly policy: UpstreamPolicy;
  readonly state: UpstreamState;
  readonly clock: Clock;
  readonly retries: RetrySettings | null;
  readonly passive: OutlierDetector | null;
  readonly breaker: CircuitBreakerSettings | null;
  readonly sticky: StickySessions | null;
  /** The balancer wants latency samples (ewma); null otherwise. */
  readonly latency: Balancer | null;

  constructor(config: UpstreamConfig, hosts: Host[], deps: GroupDeps = {}) {
    this.name = config.name;
    this.config = config;
    this.hosts = hosts;
    this.primaries = hosts.filter((h) => !h.backup);
    this.backups = hosts.filter((h) => h.backup);
    this.clock = deps.clock ?? systemClock;
    this.state = deps.state ?? new UpstreamState(config.name);
    this.balancer = createBalancer(config, {
      random: deps.random ?? Math.random,
      clock: this.clock,
    });
    this.policy = parsePolicy(config);
    this.retries = this.policy.retries;
    this.breaker = this.policy.circuitBreaker;
    this.passive =
      this.policy.passiveHealth === null
        ? null
        : new OutlierDetector(this.policy.passiveHealth, hosts);
    this.sticky =
      this.policy.sticky === null
        ? null
        : new StickySessions(config.name, hosts, this.policy.sticky);
    this.latency = this.balancer.observe === undefined ? null : this.balancer;
  }

  /**
   * Picks a host: the sticky one when pinned and available, else a primary, else a backup;
   * undefined when none can serve. `exclude` is the host a retry just failed on.
   */
  selectHost(ctx: RequestContext, exclude?: Host): Host | undefined {
    if (this.sticky !== null) {
      const pinned = this.sticky.pinned(ctx, exclude);
      if (pinned !== undefined) return pinned;
    }
    const host = this.pick(ctx, exclude);
    if (host !== undefined || this.passive === null) return host;
    return this.panic(ctx, exclude);
  }

  private pick(ctx: RequestContext, exclude: Host | undefined): Host | undefined {
    const host = this.balancer.select(this.primaries, ctx, exclude);
    if (host !== undefined || this.backups.length === 0) return host;
    return this.balancer.select(this.backups, ctx, exclude);
  }

  /**
   * Panic mode: nothing is available, but some servers are out only because passive health
   * ejected them. Sending to them beats answering 503 to everyone (Envoy's panic threshold);
   * servers that active checks call unhealthy, or that are draining, stay out.
   */
  private panic(ctx: RequestContext, exclude: Host | undefined): Host | undefined {
    let ejectedOnly = false;
    for (const h of this.hosts) {
      if (h !== exclude && h.healthy && !h.draining && h.ejectedUntil !== 0) ejectedOnly = true;
    }
    if (!ejectedOnly) return undefined;
    setIgnoreEjections(true);
    try {
      const host = this.pick(ctx, exclude);
      if (host !== undefined && channels.upstreamPanic.hasSubscribers)
        channels.upstreamPanic.publish({ ctx, upstream: this.name });
      return host;
    } finally {
      setIgnoreEjections(false);
    }
  }
}
