import { unescape } from 'node:querystring';

/**
 * Decoded query parameters, keeping only the keys some route asks about. A key that appears more
 * than once keeps every value, and a route's `query` condition holds when any of them is equal.
 */
export type QueryParams = Map<string, string[]>;

const PLUS = /\+/g;

/**
 * Decodes one query component the way browsers encode forms and `URLSearchParams` decodes them:
 * `+` is a space and `%XX` is a UTF-8 byte. A malformed escape such as `%zz` is kept as written
 * instead of failing the request (`querystring.unescape` falls back to a lenient decoder).
 */
export function decodeQueryComponent(raw: string): string {
  if (raw.indexOf('+') !== -1) raw = raw.replace(PLUS, ' ');
  return raw.indexOf('%') === -1 ? raw : unescape(raw);
}

/**
 * Parses a raw query string (without the `?`). Only keys in `wanted` are recorded, so values
 * nobody matches on are never decoded.
 */
export function parseQuery(query: string, wanted: ReadonlySet<string>): QueryParams {
  const params: QueryParams = new Map();
  const length = query.length;
  let start = 0;
  while (start <= length) {
    let end = query.indexOf('&', start);
    if (end === -1) end = length;
    if (end > start) {
      const eq = query.indexOf('=', start);
      const keyEnd = eq === -1 || eq > end ? end : eq;
      const key = decodeQueryComponent(query.slice(start, keyEnd));
      if (wanted.has(key)) {
        const value = keyEnd === end ? '' : decodeQueryComponent(query.slice(keyEnd + 1, end));
        const values = params.get(key);
        if (values === undefined) params.set(key, [value]);
        else values.push(value);
      }
    }
    start = end + 1;
  }
  return params;
}
