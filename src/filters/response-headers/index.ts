import type { HeaderOps } from '../../config/types.js';
import type { RequestContext, ResponseHead } from '../../core/context.js';
import type { Filter, FilterFactory } from '../../core/filter.js';
import { compileTemplate, type Template } from '../../core/template.js';

/**
 * `responseHeaders: { set, add, remove }`: edits the head of every response on the route,
 * proxied or generated (Caddy's `header` semantics rather than nginx's 2xx/3xx-only add_header).
 */
export const responseHeadersFeature: FilterFactory = {
  key: 'responseHeaders',
  order: 10,
  create(config: unknown): Filter {
    const ops = config as HeaderOps;
    const remove = ops.remove.map((n) => n.toLowerCase());
    const set = Object.entries(ops.set).map(
      ([n, v]) => [n.toLowerCase(), compileTemplate(v)] as [string, Template],
    );
    const add = Object.entries(ops.add).map(
      ([n, v]) => [n.toLowerCase(), compileTemplate(v)] as [string, Template],
    );
    const hook = (ctx: RequestContext, head: ResponseHead) => {
      const headers = head.headers;
      for (const name of remove) delete headers[name];
      for (const [name, template] of set) headers[name] = template(ctx);
      for (const [name, template] of add) {
        const value = template(ctx);
        const existing = headers[name];
        if (existing === undefined) headers[name] = value;
        else if (Array.isArray(existing)) existing.push(value);
        else headers[name] = [String(existing), value];
      }
    };
    return {
      name: 'responseHeaders',
      handle(ctx, next) {
        ctx.addResponseHeadHook(hook);
        return next(ctx);
      },
    };
  },
};
