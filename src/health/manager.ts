import type { RandomSource } from '../upstream/clock.js';
import type { UpstreamGroup } from '../upstream/group.js';
import type { Host } from '../upstream/host.js';
import type { HealthCheckSettings } from '../upstream/policy.js';
import { HostChecker, type HealthLog } from './active.js';

export interface HealthManagerOptions {
  log: HealthLog;
  random?: RandomSource;
}

function settingsKey(s: HealthCheckSettings): string {
  return JSON.stringify({ ...s, body: s.body?.source ?? null });
}

/**
 * Runs the active health checkers of the current config. The composition root calls `update`
 * with each new runtime's groups (start and every reload) and `stop` at shutdown. A server whose
 * check settings did not change keeps its checker (and its schedule); health counters live on
 * the Host either way, so a reload never resets a server's health.
 */
export class HealthManager {
  private readonly log: HealthLog;
  private readonly random: RandomSource;
  private checkers = new Map<Host, { checker: HostChecker; key: string }>();

  constructor(options: HealthManagerOptions) {
    this.log = options.log;
    this.random = options.random ?? Math.random;
  }

  update(groups: Iterable<UpstreamGroup>): void {
    const next = new Map<Host, { checker: HostChecker; key: string }>();
    const unchecked: Host[] = [];
    for (const group of groups) {
      const settings = group.policy.healthCheck;
      for (const host of group.hosts) {
        if (settings === null) {
          unchecked.push(host);
          continue;
        }
        const key = settingsKey(settings);
        const current = this.checkers.get(host);
        if (current !== undefined && current.key === key) {
          next.set(host, current);
          continue;
        }
        const checker = new HostChecker(host, settings, this.random, this.log);
        next.set(host, { checker, key });
        checker.start();
      }
    }
    for (const [host, { checker }] of this.checkers) {
      if (next.get(host)?.checker !== checker) checker.stop();
    }
    // Active checks were turned off for these: nothing would ever mark them up again.
    for (const host of unchecked) {
      host.checkPasses = 0;
      host.checkFailures = 0;
      host.setHealthy(true, 'active');
    }
    this.checkers = next;
  }

  /** The checker of a host, for tests and the admin API. */
  checkerFor(host: Host): HostChecker | undefined {
    return this.checkers.get(host)?.checker;
  }

  stop(): void {
    for (const { checker } of this.checkers.values()) checker.stop();
    this.checkers.clear();
  }
}
