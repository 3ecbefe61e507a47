import ipaddr from 'ipaddr.js';
import type { RequestContext } from '../../core/context.js';
import { channels } from '../../core/events.js';
import type { Filter, FilterDeps, FilterFactory } from '../../core/filter.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Range = [Address, number];

interface IpFilterConfig {
  allow?: string[];
  deny?: string[];
}

/**
 * Parses `10.0.0.0/8`, `::1`, `2001:db8::/32` or `::ffff:10.0.0.0/104`. An IPv4-mapped IPv6 range
 * (prefix of at least 96 bits) becomes the IPv4 range it names, because client addresses are
 * compared in their IPv4 form (see clientAddress).
 */
export function parseRange(text: string): Range {
  const slash = text.indexOf('/');
  let range: Range;
  if (slash === -1) {
    const address = ipaddr.parse(text);
    range = [address, address.kind() === 'ipv4' ? 32 : 128];
  } else {
    range = ipaddr.parseCIDR(text);
  }
  const [address, bits] = range;
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96)
    return [(address as ipaddr.IPv6).toIPv4Address(), bits - 96];
  return range;
}

/** The client address in comparable form: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as IPv4. */
export function clientAddress(ip: string): Address | null {
  try {
    return ipaddr.process(ip.startsWith('[') ? ip.slice(1, -1) : ip);
  } catch {
    return null;
  }
}

/** Splits ranges by family, so a lookup only compares like with like. */
export class RangeSet {
  private readonly v4: Range[] = [];
  private readonly v6: Range[] = [];

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const range = parseRange(entry);
      (range[0].kind() === 'ipv4' ? this.v4 : this.v6).push(range);
    }
  }

  get size(): number {
    return this.v4.length + this.v6.length;
  }

  has(address: Address): boolean {
    const list = address.kind() === 'ipv4' ? this.v4 : this.v6;
    for (const range of list) if (address.match(range)) return true;
    return false;
  }
}

/**
 * `ipFilter: { allow, deny }` on the real client address (after trustedProxies and PROXY
 * protocol): a denied address gets 403; with an allow list, so does every address not on it.
 * Deny wins over allow. An address that cannot be parsed is treated as not allowed.
 */
export const ipFilterFeature: FilterFactory = {
  key: 'ipFilter',
  order: 100,
  create(raw: unknown, _deps: FilterDeps): Filter {
    const config = raw as IpFilterConfig;
    const allow = new RangeSet(config.allow ?? []);
    const deny = new RangeSet(config.deny ?? []);
    const hasAllow = allow.size > 0;
    const permitted = (ctx: RequestContext): boolean => {
      const address = clientAddress(ctx.clientIp);
      if (address === null) return !hasAllow && deny.size === 0;
      if (deny.has(address)) return false;
      return !hasAllow || allow.has(address);
    };
    return {
      name: 'ipFilter',
      handle(ctx, next) {
        if (permitted(ctx)) return next(ctx);
        if (channels.requestDenied.hasSubscribers)
          channels.requestDenied.publish({ ctx, by: 'ipFilter' });
        ctx.sendError('FORBIDDEN');
      },
    };
  },
};
