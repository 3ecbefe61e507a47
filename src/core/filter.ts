import type { RequestContext } from './context.js';
import type { QuickReply } from './quick-answer.js';

/** The last step of a chain, or what a filter calls to continue. */
export type Handler = (ctx: RequestContext) => void | Promise<void>;

/**
 * A feature's per-route step. A filter either answers the request itself (and returns without
 * calling `next`), or prepares the context (hooks, wrapped writer, extra headers) and calls
 * `next(ctx)`. Instances are built once per route at config load and shared by all requests, so
 * they hold only immutable, precomputed state; per-request state goes on the context.
 */
export interface Filter {
  readonly name: string;
  /**
   * On a route with an upstream, a GET or HEAD without a body may be a kept quick request
   * (core/quick-answer.ts): `ctx.req` is then a QuickRequest (fields only, no stream) and
   * `ctx.res` the HTTP/1.1 loop's response, which makes node's objects when first written to.
   */
  handle(ctx: RequestContext, next: Handler): void | Promise<void>;
  /**
   * For a filter that can answer some requests from memory (a cache): the complete answer to a
   * GET or HEAD without body, when it has one at once, with the effects `handle` would have for
   * it (events, ctx.status), or undefined having had none. Asked only when the filter is first
   * in its route's chain, on HTTP/1.x, before node's request objects exist
   * (core/quick-answer.ts); `ctx.req` then has only the fields of a QuickRequest, and `ctx.res`
   * cannot be written to. The reply must be byte for byte what `handle` would write.
   */
  quickAnswer?(ctx: RequestContext): QuickReply | undefined;
  /** Called when the config that built this filter is replaced; release timers and pools. */
  close?(): void | Promise<void>;
}

/** What a filter factory may use. Kept small so filters stay independent of the layers above. */
export interface FilterDeps {
  /** Logs a warning or error about this filter at runtime. */
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
  /** Shared, feature-scoped state that survives reloads (e.g. rate-limit buckets). */
  shared<T>(key: string, create: () => T): T;
  /** Global config sections owned by features (cache, waf, redis, ...), as written. */
  globals: Record<string, unknown>;
}

/**
 * A feature: `key` is the route config key that turns it on; `order` places it in the chain
 * (lower runs first, so access control comes before caching before compression).
 */
export interface FilterFactory {
  readonly key: string;
  readonly order: number;
  create(config: unknown, deps: FilterDeps, route: { name: string }): Filter;
  /**
   * For features with a global section (e.g. `waf`): the value to create the filter with on a
   * route that does not set `key`, or undefined to leave such routes without it.
   */
  defaultConfig?(globals: Record<string, unknown>): unknown;
}

/** Builds the chain once. With no filters the terminal handler is returned unchanged. */
export function compose(filters: readonly Filter[], terminal: Handler): Handler {
  let next = terminal;
  for (let i = filters.length - 1; i >= 0; i--) {
    const filter = filters[i];
    const after = next;
    next = (ctx) => filter.handle(ctx, after);
  }
  return next;
}
