import { createHash, scrypt, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import type bcrypt from 'bcryptjs';

// bcryptjs is loaded only when a route has a bcrypt hash.
const requireLazily = createRequire(import.meta.url);
import { LRUCache } from 'lru-cache';
import { parsePasswordHash } from '../../config/password-hash.js';
import type { RequestContext, ResponseHead } from '../../core/context.js';
import { channels } from '../../core/events.js';
import type { Filter, FilterDeps, FilterFactory } from '../../core/filter.js';

interface BasicAuthConfig {
  realm?: string;
  users: Record<string, string>;
}

/** Verified `Authorization` values are remembered briefly, so bcrypt runs once per session. */
const VERIFIED_CACHE = { max: 1024, ttl: 5 * 60_000 };

type Verifier = (password: string) => Promise<boolean>;

function decodeBase64(text: string): Buffer {
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/').replace(/\./g, '+'), 'base64');
}

/**
 * Builds a checker for one stored hash. Config validation already refused anything else
 * (src/config/password-hash.ts); this throws only for a config that skipped it.
 */
export function compileHash(text: string, user: string): Verifier {
  const hash = parsePasswordHash(text);
  if ('problem' in hash) throw new Error(`basicAuth.users.${user}: ${hash.problem}`);
  if (hash.kind === 'bcrypt') {
    const { compare } = requireLazily('bcryptjs') as typeof bcrypt;
    return (password) => compare(password, text);
  }
  const N = 2 ** hash.ln;
  const { r, p } = hash;
  const salt = decodeBase64(hash.salt);
  const expected = decodeBase64(hash.hash);
  const maxmem = 256 * N * r + 1024 * 1024;
  return (password) =>
    new Promise((resolve) => {
      scrypt(password, salt, expected.length, { N, r, p, maxmem }, (err, derived) => {
        resolve(err === null && timingSafeEqual(derived, expected));
      });
    });
}

/** Splits `Basic base64(user:password)`; null when the header is absent or malformed. */
export function parseBasic(header: string | undefined): [string, string] | null {
  if (header === undefined || header.length < 7) return null;
  if (header.slice(0, 6).toLowerCase() !== 'basic ') return null;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return null;
  return [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

/**
 * `basicAuth: { realm, users }`: HTTP Basic authentication against bcrypt or scrypt hashes. An
 * unknown user is checked against a real hash too, so the answer takes as long as for a wrong
 * password and reveals nothing about which users exist. Failures get 401 with WWW-Authenticate.
 */
export const basicAuthFeature: FilterFactory = {
  key: 'basicAuth',
  order: 400,
  create(raw: unknown, _deps: FilterDeps): Filter {
    const config = raw as BasicAuthConfig;
    const realm = (config.realm ?? 'restricted').replace(/["\\]/g, '');
    const challenge = `Basic realm="${realm}", charset="UTF-8"`;
    const users = new Map<string, Verifier>();
    for (const [user, hash] of Object.entries(config.users))
      users.set(user, compileHash(hash, user));
    const decoy = users.values().next().value ?? (async () => false);
    const verified = new LRUCache<string, true>(VERIFIED_CACHE);
    const challengeHook = (_ctx: RequestContext, head: ResponseHead) => {
      head.headers['www-authenticate'] = challenge;
    };
    const refuse = (ctx: RequestContext) => {
      if (channels.requestDenied.hasSubscribers)
        channels.requestDenied.publish({ ctx, by: 'basicAuth' });
      ctx.addResponseHeadHook(challengeHook);
      ctx.sendError('UNAUTHORIZED');
    };
    return {
      name: 'basicAuth',
      handle(ctx, next) {
        const header = ctx.req.headers.authorization;
        const credentials = parseBasic(header);
        if (credentials === null) return refuse(ctx);
        const cacheKey = createHash('sha256').update(header!).digest('base64');
        if (verified.has(cacheKey)) return next(ctx);
        const [user, password] = credentials;
        const check = users.get(user);
        return (check ?? decoy)(password).then((ok) => {
          if (ok && check !== undefined) {
            verified.set(cacheKey, true);
            return next(ctx);
          }
          refuse(ctx);
        });
      },
    };
  },
};
