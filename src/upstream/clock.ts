/**
 * Time as the upstream layer sees it: milliseconds on a monotonic scale. Injected so tests and
 * the balancer simulation can drive windows (ejection, slow start, EWMA decay) without sleeping.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => performance.now() };

/** A source of uniform numbers in [0, 1); `Math.random` unless a test injects a seeded one. */
export type RandomSource = () => number;

/**
 * A small, fast, seeded generator (mulberry32). Used by tests and bench/lb-sim so distributions
 * are reproducible; production uses Math.random.
 */
export function seededRandom(seed: number): RandomSource {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
