import type { RequestContext } from '../core/context.js';

/**
 * Compiles `rewrite: { stripPrefix, addPrefix }` into a function of the request, or null when
 * the route has no rewrite. The query string is carried over byte for byte.
 */
export function compileRewrite(
  rewrite: { stripPrefix?: string; addPrefix?: string } | undefined,
): ((ctx: RequestContext) => string) | null {
  if (!rewrite || (!rewrite.stripPrefix && !rewrite.addPrefix)) return null;
  const strip = rewrite.stripPrefix ?? '';
  const add = rewrite.addPrefix ?? '';
  return (ctx) => {
    let path = ctx.path;
    if (strip !== '' && path.startsWith(strip)) {
      path = path.slice(strip.length);
      if (path[0] !== '/') path = `/${path}`;
    }
    if (add !== '')
      path = add.endsWith('/') && path.startsWith('/') ? add + path.slice(1) : add + path;
    return ctx.query === '' ? path : `${path}?${ctx.query}`;
  };
}
