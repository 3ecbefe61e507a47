import { parseSize } from '../../config/units.js';
import type { Filter, FilterDeps, FilterFactory } from '../../core/filter.js';
import {
  DEFAULT_CACHED_LEVELS,
  DEFAULT_LEVELS,
  isAvailable,
  LEVEL_RANGES,
  type Encoding,
  type Levels,
} from './codecs.js';
import { EncodingNegotiator } from './negotiate.js';
import { createTypeMatcher } from './types.js';
import { CompressingWriter, type CompressionPolicy } from './writer.js';

export { CACHEABLE_STATE } from './writer.js';
export { ZSTD_AVAILABLE } from './codecs.js';
export { EncodingNegotiator } from './negotiate.js';
export { createTypeMatcher } from './types.js';

/** `routes[].compression` as written (the schema has checked the shape). */
export interface CompressionSettings {
  algorithms?: Encoding[];
  minLength?: number | string;
  types?: string[];
  level?: Partial<Levels>;
  cachedLevel?: Partial<Levels>;
  decompress?: boolean;
}

/** zstd is offered where the runtime has it; deflate only when a route asks for it. */
const DEFAULT_ALGORITHMS: readonly Encoding[] = ['br', 'zstd', 'gzip'];
const DEFAULT_MIN_LENGTH = 1024;

/** Builds a route's policy: everything that does not depend on the request. */
export function createPolicy(
  config: unknown,
  deps: FilterDeps,
  routeName: string,
): CompressionPolicy {
  const settings: CompressionSettings = config === true ? {} : (config as CompressionSettings);
  const wanted = settings.algorithms ?? DEFAULT_ALGORITHMS;
  const offered: Encoding[] = [];
  for (const encoding of wanted) {
    if (offered.includes(encoding)) continue;
    if (isAvailable(encoding)) offered.push(encoding);
    else if (settings.algorithms !== undefined) {
      deps.log(
        'warn',
        `compression: ${encoding} is not available in this Node.js runtime (${process.version}); it is not offered`,
        {
          route: routeName,
        },
      );
    }
  }
  return {
    negotiator: new EncodingNegotiator(offered),
    matchType: createTypeMatcher(settings.types),
    minLength:
      settings.minLength === undefined ? DEFAULT_MIN_LENGTH : parseSize(settings.minLength),
    levels: mergeLevels(DEFAULT_LEVELS, settings.level),
    cachedLevels: mergeLevels(DEFAULT_CACHED_LEVELS, settings.cachedLevel),
    decompress: settings.decompress === true,
    onStreamError(ctx, stage, coding, err) {
      deps.log(
        'warn',
        stage === 'decode'
          ? `upstream body is not valid ${coding}; the response was cut`
          : `${coding} compression failed; the response was cut`,
        {
          requestId: ctx.requestId,
          route: ctx.routeName,
          error: (err as Error & { code?: string }).code ?? err.message,
        },
      );
    },
  };
}

function mergeLevels(defaults: Levels, overrides: Partial<Levels> | undefined): Levels {
  const levels = { ...defaults };
  if (overrides === undefined) return levels;
  for (const key of Object.keys(LEVEL_RANGES) as Encoding[]) {
    const value = overrides[key];
    if (value === undefined) continue;
    const [min, max] = LEVEL_RANGES[key];
    if (!Number.isInteger(value) || value < min || value > max)
      throw new RangeError(
        `compression level for ${key} must be a whole number from ${min} to ${max}`,
      );
    levels[key] = value;
  }
  return levels;
}

/**
 * `routes[].compression`: compresses responses with the best coding the client accepts
 * (brotli, gzip, zstd where the runtime has it, deflate when asked), streaming, with
 * backpressure; optionally decodes upstream bodies for clients that cannot read them.
 * Order 800: inside the cache (700), so the cache stores compressed variants and a hit does no
 * compression work.
 */
export const compressionFeature: FilterFactory = {
  key: 'compression',
  order: 800,
  create(config: unknown, deps: FilterDeps, route: { name: string }): Filter {
    const policy = createPolicy(config, deps, route.name);
    return {
      name: 'compression',
      handle(ctx, next) {
        ctx.res = new CompressingWriter(ctx, ctx.res, policy);
        return next(ctx);
      },
    };
  },
};
