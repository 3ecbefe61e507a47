import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';
import type { OutgoingHeaders, RequestContext } from '../../core/context.js';
import { channels } from '../../core/events.js';
import { isHopByHop } from '../../core/http.js';
import type { Filter, FilterDeps, FilterFactory } from '../../core/filter.js';
import { parseDuration } from '../../config/units.js';

// undici loads only when a route uses forwardAuth (the feature is registered for every config).
const requireLazily = createRequire(import.meta.url);

interface ForwardAuthConfig {
  url: string;
  copyHeaders?: string[];
  timeout?: string;
}

/**
 * Request headers never sent to the auth service: hop-by-hop fields plus the framing of the
 * original request (the auth request has no body).
 */
function notSent(lower: string): boolean {
  return isHopByHop(lower) || lower === 'host' || lower === 'content-length' || lower === 'expect';
}

/** Auth response headers not passed to the client with a denial. */
function notReturned(lower: string): boolean {
  return (
    isHopByHop(lower) ||
    lower === 'content-length' ||
    lower === 'server' ||
    lower === 'x-powered-by' ||
    lower === 'date'
  );
}

/** A denial body larger than this is cut: an auth answer is a page, not a download. */
const MAX_DENIAL_BODY = 64 * 1024;

/**
 * `forwardAuth: { url, copyHeaders, timeout }`: asks an auth service first, like nginx
 * auth_request, Traefik ForwardAuth or Caddy forward_auth. The service gets the client's headers
 * plus X-Forwarded-Method/-Proto/-Host/-Uri/-For; a 2xx answer lets the request through with the
 * `copyHeaders` taken from it (the client's own values of those headers are always removed, so
 * they cannot be forged); any other answer is returned to the client as is (status, headers such
 * as Location or WWW-Authenticate, and body). An unreachable service answers 502, a slow one 504.
 */
export const forwardAuthFeature: FilterFactory = {
  key: 'forwardAuth',
  order: 500,
  create(raw: unknown, deps: FilterDeps, route: { name: string }): Filter {
    const config = raw as ForwardAuthConfig;
    const url = new URL(config.url);
    const authUrl = url.href;
    const timeoutMs = parseDuration(config.timeout ?? '5s');
    const copy = (config.copyHeaders ?? []).map((h) => h.toLowerCase());
    const copySet = new Set(copy);
    const { Agent, request } = requireLazily('undici') as typeof import('undici');
    const agent = new Agent({ keepAliveTimeout: 30_000, connections: 64 });

    const authHeaders = (ctx: RequestContext): string[] => {
      const raw = ctx.req.rawHeaders;
      const out: string[] = ['host', url.host];
      for (let i = 0; i < raw.length; i += 2) {
        const lower = raw[i].toLowerCase();
        if (notSent(lower) || lower.startsWith('x-forwarded-') || copySet.has(lower)) continue;
        out.push(raw[i], raw[i + 1]);
      }
      out.push(
        'x-forwarded-method',
        ctx.method,
        'x-forwarded-proto',
        ctx.scheme,
        'x-forwarded-host',
        ctx.host,
        'x-forwarded-uri',
        ctx.query === '' ? ctx.path : `${ctx.path}?${ctx.query}`,
        'x-forwarded-for',
        ctx.clientIp,
        'x-request-id',
        ctx.requestId,
      );
      return out;
    };

    /** Removes the client's values of the headers the auth service vouches for. */
    const stripCopied = (ctx: RequestContext) => {
      const req = ctx.req;
      let found = false;
      for (const name of copy) {
        if (req.headers[name] !== undefined) {
          delete req.headers[name];
          found = true;
        }
      }
      if (!found) return;
      const kept: string[] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (!copySet.has(req.rawHeaders[i].toLowerCase()))
          kept.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
      }
      req.rawHeaders = kept;
    };

    const allow = (ctx: RequestContext, headers: Dispatcher.ResponseData['headers']) => {
      for (const name of copy) {
        const value = headers[name];
        if (value === undefined) continue;
        (ctx.extraUpstreamHeaders ??= {})[name] = Array.isArray(value) ? value.join(', ') : value;
      }
    };

    const deny = async (ctx: RequestContext, res: Dispatcher.ResponseData) => {
      const headers: OutgoingHeaders = {};
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined && !notReturned(name)) headers[name] = value;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_DENIAL_BODY) {
          res.body.destroy();
          break;
        }
        chunks.push(chunk);
      }
      if (channels.requestDenied.hasSubscribers)
        channels.requestDenied.publish({ ctx, by: 'forwardAuth' });
      ctx.respond(res.statusCode, headers, Buffer.concat(chunks));
    };

    return {
      name: 'forwardAuth',
      async handle(ctx, next) {
        stripCopied(ctx);
        let res: Dispatcher.ResponseData;
        try {
          res = await request(authUrl, {
            method: 'GET',
            headers: authHeaders(ctx),
            dispatcher: agent,
            headersTimeout: timeoutMs,
            bodyTimeout: timeoutMs,
          });
        } catch (err) {
          const e = err as Error & { code?: string };
          const timedOut =
            e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT';
          deps.log('warn', 'forward auth service failed', {
            route: route.name,
            requestId: ctx.requestId,
            error: e.code ?? e.message,
          });
          ctx.sendError(timedOut ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_FAILED');
          return;
        }
        if (res.statusCode >= 200 && res.statusCode < 300) {
          allow(ctx, res.headers);
          await res.body.dump();
          return next(ctx);
        }
        await deny(ctx, res);
      },
      close() {
        return agent.close();
      },
    };
  },
};
