/**
 * Host normalization shared by route compilation and request matching, so that a route's
 * `host: [Example.COM]` and a request's `Host: example.com.:8080` compare equal.
 */

const CHAR_A = 65; // 'A'
const CHAR_Z = 90; // 'Z'
const CHAR_COLON = 58; // ':'
const CHAR_DOT = 46; // '.'
const CHAR_OPEN_BRACKET = 91; // '['

/**
 * Lowercases a Host header value (or a configured host name), strips the port and one trailing
 * dot, and removes the brackets around an IPv6 literal: `[::1]:8080` becomes `::1`.
 *
 * An unbracketed value with more than one colon is taken to be a bare IPv6 address (as a config
 * may write it) and keeps all its colons, since there is no way to tell a port apart from it.
 * The common case, a value that is already normal, returns the input without allocating.
 */
export function normalizeHost(host: string): string {
  const length = host.length;
  if (length === 0) return host;
  if (host.charCodeAt(0) === CHAR_OPEN_BRACKET) return normalizeBracketed(host);

  let firstColon = -1;
  let colons = 0;
  let hasUpper = false;
  for (let i = 0; i < length; i++) {
    const c = host.charCodeAt(i);
    if (c === CHAR_COLON) {
      if (colons === 0) firstColon = i;
      colons++;
    } else if (c >= CHAR_A && c <= CHAR_Z) {
      hasUpper = true;
    }
  }

  let end = colons === 1 ? firstColon : length;
  if (end > 0 && host.charCodeAt(end - 1) === CHAR_DOT) end--;
  if (end === length && !hasUpper) return host;
  const name = end === length ? host : host.slice(0, end);
  return hasUpper ? name.toLowerCase() : name;
}

/** `[v6]` or `[v6]:port`; a missing `]` keeps everything after the `[`. */
function normalizeBracketed(host: string): string {
  const close = host.indexOf(']');
  const inner = close === -1 ? host.slice(1) : host.slice(1, close);
  return inner.toLowerCase();
}
