import { isIP } from 'node:net';
import type { Config } from '../config/types.js';

const DNS_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/;

/** A name an ACME server can issue for: a DNS name with a dot, not an IP, not a wildcard. */
export function isManageableName(name: string): boolean {
  return DNS_NAME.test(name) && isIP(name) === 0 && !name.endsWith('.localhost');
}

/**
 * The names ACME should manage: exact `match.host` names of routes that TLS listeners can reach,
 * and that no configured certificate of such a listener serves. `covered(listener, name)` says
 * whether a listener's own certificates serve a name.
 */
export function managedNames(
  config: Config,
  covered: (listener: string, name: string) => boolean,
): string[] {
  const tlsListeners = config.listeners.filter((l) => l.tls !== undefined).map((l) => l.name);
  const names = new Set<string>();
  for (const route of config.routes) {
    const hosts = route.match.host;
    if (!hosts) continue;
    const reachable =
      route.match.listener === undefined
        ? tlsListeners
        : tlsListeners.filter((l) => l === route.match.listener);
    if (reachable.length === 0) continue;
    for (const host of hosts) {
      const name = host.toLowerCase();
      if (!isManageableName(name)) continue;
      if (reachable.some((l) => !covered(l, name))) names.add(name);
    }
  }
  return [...names].sort();
}
