/**
 * Units used in the config file. Each parser throws a RangeError whose message can be shown to
 * the user as is.
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/y;

/** `250ms`, `5s`, `1.5s`, `2m`, `1h`, `1m30s` -> milliseconds (rounded to a whole number). */
export function parseDuration(text: string): number {
  if (typeof text !== 'string' || text.length === 0) {
    throw new RangeError(`expected a duration like "5s", got ${JSON.stringify(text)}`);
  }
  let total = 0;
  let pos = 0;
  let lastUnit = Infinity;
  while (pos < text.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(text);
    if (!m) {
      throw new RangeError(
        `invalid duration ${JSON.stringify(text)}: expected a number and a unit (ms, s, m, h), like "5s"`,
      );
    }
    const unit = DURATION_UNITS[m[2]];
    // Combined durations must go from the largest unit down, as in `1h30m`, so `30s1m` is a typo.
    if (unit >= lastUnit) {
      throw new RangeError(
        `invalid duration ${JSON.stringify(text)}: combine units from largest to smallest, like "1m30s"`,
      );
    }
    lastUnit = unit;
    total += Number(m[1]) * unit;
    pos = DURATION_PART.lastIndex;
  }
  return Math.round(total);
}

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  kB: 1000,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};
const SIZE_RE = /^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|kB|B)$/;

/** A number of bytes, or `100B`, `16KiB`, `10MiB`, `1GiB`, `512KB` -> bytes (whole). */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`invalid size ${value}: expected a whole number of bytes`);
    }
    return value;
  }
  const m = typeof value === 'string' ? SIZE_RE.exec(value.trim()) : null;
  if (!m) {
    throw new RangeError(
      `invalid size ${JSON.stringify(value)}: expected bytes or a number with a unit, like "16KiB" or "10MiB"`,
    );
  }
  return Math.floor(Number(m[1]) * SIZE_UNITS[m[2]]);
}

export interface Rate {
  /** Requests allowed per window. */
  count: number;
  /** The window in milliseconds. */
  perMs: number;
}

const RATE_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };
const RATE_RE = /^([0-9]+)\/(s|m|h)$/;

/** `100/s`, `600/m`, `1000/h` -> { count, perMs }. */
export function parseRate(text: string): Rate {
  const m = typeof text === 'string' ? RATE_RE.exec(text.trim()) : null;
  if (!m) {
    throw new RangeError(
      `invalid rate ${JSON.stringify(text)}: expected a count per second, minute or hour, like "100/s"`,
    );
  }
  const count = Number(m[1]);
  if (count === 0) {
    throw new RangeError(`invalid rate ${JSON.stringify(text)}: the count must be at least 1`);
  }
  return { count, perMs: RATE_UNITS[m[2]] };
}
