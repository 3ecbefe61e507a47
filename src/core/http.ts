/** HTTP message rules shared by the proxy and the features that make their own requests. */

/**
 * RFC 9110 §7.6.1 hop-by-hop fields, plus fields the proxy itself owns on each hop
 * (framing, Expect, which Switchyard answers itself). Proxy-* is matched by prefix.
 */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
  // HTTP/2 pseudo-headers: mapped to Host and the request target, never sent as fields.
  ':method',
  ':path',
  ':authority',
  ':scheme',
  ':protocol',
]);

export function isHopByHop(lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName) || lowerName.startsWith('proxy-');
}

/** Header names listed in a Connection header (they are hop-by-hop for this message). */
export function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const text = typeof value === 'string' ? value : value.join(',');
  let set: Set<string> | null = null;
  for (const token of text.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '' || name === 'close' || name === 'keep-alive') continue;
    (set ??= new Set()).add(name);
  }
  return set;
}

/**
 * Implemented by the HTTP/1.1 responses of Switchyard's own connection loop (server/): ends the
 * response with a head whose fields are already serialized, so a feature that answers the same
 * stored bytes many times (a cache hit) validates and serializes its fields once, not per
 * request. `fields` is `name: value\r\n` lines that the caller has checked against RFC 9110's
 * field syntax, with Content-Length and without Connection; the loop adds the status line and
 * its own Connection and Keep-Alive fields. Returns false, having written nothing, when the
 * response cannot take this path (it already has a head, waits behind a pipelined response,
 * or owes a 100 Continue): the caller then writes the head the usual way.
 */
export const endWithSerializedHead = Symbol('switchyard.endWithSerializedHead');

export interface SerializedHeadResponse {
  /**
   * `lead`, when given, is the start of the head already encoded: the status line (for
   * `status`) and the fields that come first, `\r\n`-terminated; `fields` then holds only the
   * rest. A response answered many times with the same start (a cache hit) keeps it as bytes.
   */
  [endWithSerializedHead](
    status: number,
    fields: string,
    body: Buffer | undefined,
    lead?: Buffer,
  ): boolean;
}

let dateSecond = -1;
let dateText = '';

/** An IMF-fixdate for the Date field (RFC 9110 §5.6.7), made once a second as node:http does. */
export function httpDate(now: number = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}
