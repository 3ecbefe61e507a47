import { channels } from '../core/events.js';
import type { Host } from '../upstream/host.js';
import type { PassiveHealthSettings } from '../upstream/policy.js';

/**
 * Passive health (outlier detection) for one upstream: real requests report their outcome, and
 * `maxFails` consecutive failures within `window` eject the server for `ejectFor`, times the
 * number of recent ejections (capped by `maxEjectFor`), so a flapping server stays out longer
 * each time. The streak counters live on the Host, so they survive reloads; this object only
 * holds the settings and the group's host list.
 *
 * Safety valves, as in Envoy: at most `maxEjectionPercent` of the servers (but always at least
 * one) are ejected at once, and the last server that can still take traffic is never ejected.
 */
export class OutlierDetector {
  readonly settings: PassiveHealthSettings;
  private readonly hosts: readonly Host[];

  constructor(settings: PassiveHealthSettings, hosts: readonly Host[]) {
    this.settings = settings;
    this.hosts = hosts;
  }

  /** A response arrived. Counted as a failure only for 5xx with `failOn5xx`. */
  onResponse(host: Host, status: number): void {
    if (status >= 500 && this.settings.failOn5xx) this.onFailure(host);
    else host.consecutiveFailures = 0;
  }

  /** An attempt failed: connect error, reset, timeout (or a counted 5xx). */
  onFailure(host: Host): void {
    const now = host.clock.now();
    if (host.consecutiveFailures === 0 || now - host.failureStreakStart > this.settings.windowMs) {
      host.consecutiveFailures = 1;
      host.failureStreakStart = now;
    } else {
      host.consecutiveFailures++;
    }
    if (host.consecutiveFailures >= this.settings.maxFails) this.eject(host, now);
  }

  private eject(host: Host, now: number): boolean {
    if (host.ejectedUntil !== 0 && now < host.ejectedUntil) return false;
    const s = this.settings;
    let ejected = 0;
    let othersServing = 0;
    for (const other of this.hosts) {
      if (other === host) continue;
      const out = other.ejectedUntil !== 0 && now < other.ejectedUntil;
      if (out) ejected++;
      else if (other.healthy && !other.draining) othersServing++;
    }
    const cap = Math.max(1, Math.floor((this.hosts.length * s.maxEjectionPercent) / 100));
    if (ejected + 1 > cap || othersServing === 0) return false;
    // A server that stayed in for longer than maxEjectFor since its last ejection starts over.
    const recent = host.lastEjectionEnd !== 0 && now - host.lastEjectionEnd < s.maxEjectForMs;
    host.ejections = recent ? host.ejections + 1 : 1;
    const duration = Math.min(s.ejectForMs * host.ejections, s.maxEjectForMs);
    host.ejectedUntil = now + duration;
    host.lastEjectionEnd = host.ejectedUntil;
    host.consecutiveFailures = 0;
    if (channels.serverEjected.hasSubscribers)
      channels.serverEjected.publish({
        upstream: host.upstream,
        server: host.origin,
        ejectForMs: duration,
        ejections: host.ejections,
      });
    if (channels.healthChange.hasSubscribers)
      channels.healthChange.publish({
        upstream: host.upstream,
        server: host.origin,
        healthy: false,
        source: 'passive',
      });
    return true;
  }
}
