import { createHash, createHmac } from 'node:crypto';
import type { OutgoingHeaders, RequestContext } from '../core/context.js';
import type { StickySettings } from './policy.js';
import type { Host } from './host.js';

/**
 * Session affinity with a cookie. The cookie carries an opaque id per server, an HMAC of the
 * server's origin, so it names no address; the proxy maps it back with a table built at load.
 * When the pinned server cannot take the request (down, draining, ejected, or the one a retry
 * just left), the balancer picks another and the response re-pins the client to it.
 */
export class StickySessions {
  readonly cookie: string;
  private readonly byId = new Map<string, Host>();
  private readonly idOf = new Map<Host, string>();
  private readonly setCookie = new Map<Host, [plain: string, secure: string]>();

  constructor(upstream: string, hosts: readonly Host[], settings: StickySettings) {
    this.cookie = settings.cookie;
    // Without a configured secret the key is derived from the upstream's name, so every worker
    // and instance agrees on the ids (and a reload that adds servers keeps existing pins).
    const key =
      settings.secret ?? createHash('sha256').update(`switchyard-sticky\0${upstream}`).digest();
    const attributes = `; Path=/; HttpOnly; SameSite=Lax${
      settings.maxAgeSeconds === null ? '' : `; Max-Age=${settings.maxAgeSeconds}`
    }`;
    for (const host of hosts) {
      const id = createHmac('sha256', key).update(host.origin).digest('base64url').slice(0, 22);
      this.byId.set(id, host);
      this.idOf.set(host, id);
      const plain = `${settings.cookie}=${id}${attributes}`;
      this.setCookie.set(host, [plain, `${plain}; Secure`]);
    }
  }

  /** The pinned host named by the request's cookie, if it can take the request. */
  pinned(ctx: RequestContext, exclude: Host | undefined): Host | undefined {
    const id = ctx.cookie(this.cookie);
    if (id === undefined) return undefined;
    const host = this.byId.get(id);
    if (host === undefined || host === exclude || !host.available) return undefined;
    return host;
  }

  /** Adds Set-Cookie to a response when the client is not already pinned to `host`. */
  pin(ctx: RequestContext, host: Host, headers: OutgoingHeaders): void {
    const id = this.idOf.get(host);
    if (id === undefined || ctx.cookie(this.cookie) === id) return;
    const cookie = this.setCookie.get(host)![ctx.scheme === 'https' ? 1 : 0];
    const existing = headers['set-cookie'];
    if (existing === undefined) headers['set-cookie'] = cookie;
    else if (Array.isArray(existing)) existing.push(cookie);
    else headers['set-cookie'] = [String(existing), cookie];
  }
}
