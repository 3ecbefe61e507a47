import type { RandomSource } from '../clock.js';
import type { Host } from '../host.js';

/**
 * Picks an available host at random in proportion to its effective weight, skipping `a` and
 * `b`. Two passes over the list, no allocation.
 */
export function weightedRandom(
  hosts: readonly Host[],
  random: RandomSource,
  a: Host | undefined,
  b: Host | undefined,
): Host | undefined {
  let total = 0;
  for (let i = 0; i < hosts.length; i++) {
    const host = hosts[i];
    if (host === a || host === b || !host.available) continue;
    total += host.effectiveWeight;
  }
  if (total <= 0) return undefined;
  let point = random() * total;
  let last: Host | undefined;
  for (let i = 0; i < hosts.length; i++) {
    const host = hosts[i];
    if (host === a || host === b || !host.available) continue;
    point -= host.effectiveWeight;
    last = host;
    if (point < 0) return host;
  }
  // Floating-point rounding can leave a sliver past the last host.
  return last;
}
