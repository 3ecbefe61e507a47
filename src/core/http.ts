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

/**
 * Whether an HTTP/1.x request head announces a body (RFC 9112 §6.3): Transfer-Encoding, or a
 * Content-Length other than 0. Without either, none follows.
 */
export function announcesBody(headers: {
  'transfer-encoding'?: string | string[];
  'content-length'?: string | string[];
}): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
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

/**
 * On a response that stands in for node's ServerResponse until one is needed (the HTTP/1.1
 * loop's response for a kept quick request, core/quick-answer.ts): node's response once made,
 * else null. Code that treats node's responses specially (a plain socket under them) looks
 * through it.
 */
export const nodeResponseOf = Symbol('switchyard.nodeResponseOf');

/**
 * Slots for functions a response runs once when it closes, in order, just before its 'close'
 * event (with the response as `this`). Responses of Switchyard's HTTP/1.1 loop have them, null
 * while free. A request has up to three such watchers (the listener's request count, the
 * request-end event, the proxy's client-abort check): as slots they cost a property write each,
 * as 'close' listeners a listener array, a once-wrapper each and an apply each on close.
 */
export const closeHook0 = Symbol('switchyard.closeHook0');
export const closeHook1 = Symbol('switchyard.closeHook1');
export const closeHook2 = Symbol('switchyard.closeHook2');

export type CloseHook = (this: any) => void;

export interface CloseHookSlots {
  [closeHook0]: CloseHook | null;
  [closeHook1]: CloseHook | null;
  [closeHook2]: CloseHook | null;
}

/**
 * `target.once('close', fn)`: through a free close-hook slot when the target has one, as a
 * listener otherwise (HTTP/2 responses, wrapped responses, a fourth watcher).
 */
export function onceClosed<T extends { once(event: 'close', listener: () => void): unknown }>(
  target: T,
  fn: (this: T) => void,
): void {
  const slots = target as unknown as Partial<CloseHookSlots>;
  if (slots[closeHook0] === null) slots[closeHook0] = fn;
  else if (slots[closeHook1] === null) slots[closeHook1] = fn;
  else if (slots[closeHook2] === null) slots[closeHook2] = fn;
  else target.once('close', fn);
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
