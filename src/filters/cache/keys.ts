import type { RequestContext } from '../../core/context.js';
import { compileTemplate, parseTemplate, type Template } from '../../core/template.js';

/**
 * Builds a cache key from a request. `method` is the method whose response is looked up (GET
 * for a HEAD request, so HEAD is answered from a cached GET); `path` and `query` are passed
 * separately so that invalidation can compute the key of a Location or Content-Location URI.
 */
export type KeyFunction = (
  ctx: RequestContext,
  method: string,
  path: string,
  query: string,
) => string;

export interface KeyOptions {
  /** A placeholder template; undefined for the default `{method} {scheme}://{host}{path}?{query}`. */
  template: string | undefined;
  /** Sort query parameters by name so `?a=1&b=2` and `?b=2&a=1` share an entry. */
  sortQuery: boolean;
  /** Query parameter names left out of the key; a trailing `*` matches a prefix (`utm_*`). */
  dropQuery: readonly string[];
}

type QueryNormalizer = (query: string) => string;

/** Compiles the query rules once; null when the query is used as received. */
export function compileQueryNormalizer(
  sort: boolean,
  drop: readonly string[],
): QueryNormalizer | null {
  if (!sort && drop.length === 0) return null;
  const exact = new Set(drop.filter((d) => !d.endsWith('*')));
  const prefixes = drop.filter((d) => d.endsWith('*')).map((d) => d.slice(0, -1));
  const dropped = (param: string): boolean => {
    const eq = param.indexOf('=');
    const name = eq === -1 ? param : param.slice(0, eq);
    if (exact.has(name)) return true;
    for (const p of prefixes) if (name.startsWith(p)) return true;
    return false;
  };
  return (query) => {
    if (query === '') return query;
    let params = query.split('&').filter((p) => p !== '');
    if (exact.size > 0 || prefixes.length > 0) params = params.filter((p) => !dropped(p));
    // A stable sort by name keeps repeated names in their original order (?a=2&a=1 differs).
    if (sort) params.sort(byName);
    return params.join('&');
  };
}

function byName(a: string, b: string): number {
  const an = a.indexOf('=') === -1 ? a : a.slice(0, a.indexOf('='));
  const bn = b.indexOf('=') === -1 ? b : b.slice(0, b.indexOf('='));
  return an < bn ? -1 : an > bn ? 1 : 0;
}

export function compileKey(options: KeyOptions): KeyFunction {
  const normalize = compileQueryNormalizer(options.sortQuery, options.dropQuery);
  if (options.template === undefined) {
    if (normalize === null) {
      return (ctx, method, path, query) =>
        query === ''
          ? `${method} ${ctx.scheme}://${ctx.host.toLowerCase()}${path}`
          : `${method} ${ctx.scheme}://${ctx.host.toLowerCase()}${path}?${query}`;
    }
    return (ctx, method, path, query) => {
      const q = normalize(query);
      return q === ''
        ? `${method} ${ctx.scheme}://${ctx.host.toLowerCase()}${path}`
        : `${method} ${ctx.scheme}://${ctx.host.toLowerCase()}${path}?${q}`;
    };
  }
  type Part =
    string | ((ctx: RequestContext, method: string, path: string, query: string) => string);
  const parts: Part[] = parseTemplate(options.template).map((p): Part => {
    if ('literal' in p) return p.literal;
    switch (p.name) {
      case 'method':
        return (_ctx, method) => method;
      case 'host':
        return (ctx) => ctx.host.toLowerCase();
      case 'path':
        return (_ctx, _m, path) => path;
      case 'query':
        return (_ctx, _m, _p, query) => (normalize === null ? query : normalize(query));
      case 'uri':
        return (_ctx, _m, path, query) => {
          const q = normalize === null ? query : normalize(query);
          return q === '' ? path : `${path}?${q}`;
        };
      default: {
        const t: Template = compileTemplate(`{${p.name}}`);
        return (ctx) => t(ctx);
      }
    }
  });
  return (ctx, method, path, query) => {
    let out = '';
    for (const part of parts)
      out += typeof part === 'string' ? part : part(ctx, method, path, query);
    return out;
  };
}
