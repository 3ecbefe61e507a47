import type { Balancer } from './balancer.js';
import type { Host } from '../host.js';
import { hashString } from '../hash.js';

/** Rehashes tried before giving up on the client's own servers (nginx tries 20 too). */
const MAX_REHASH = 20;

/**
 * Client address hashing: the same client reaches the same server while the server list and
 * weights stay the same. The address is mapped over every configured host (available or not),
 * so a server going down moves only its own clients, which rehash to other servers. For
 * affinity that survives list changes, use consistent-hash with `hashKey: "{client_ip}"`.
 */
export function createIpHash(): Balancer {
  return {
    select(hosts: readonly Host[], ctx, exclude?: Host): Host | undefined {
      let total = 0;
      for (let i = 0; i < hosts.length; i++) total += hosts[i].weight;
      if (total === 0) return undefined;
      const key = ctx.clientIp;
      for (let attempt = 0; attempt < MAX_REHASH; attempt++) {
        let point = hashString(key, attempt) % total;
        for (let i = 0; i < hosts.length; i++) {
          const host = hosts[i];
          point -= host.weight;
          if (point < 0) {
            if (host !== exclude && host.available) return host;
            break;
          }
        }
      }
      // Most servers are out: take the first one that can serve.
      for (let i = 0; i < hosts.length; i++) {
        const host = hosts[i];
        if (host !== exclude && host.available) return host;
      }
      return undefined;
    },
  };
}
