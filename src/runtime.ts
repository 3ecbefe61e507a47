import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { Config, RouteConfig } from './config/types.js';
import { RequestContext, type ClientRequest, type ListenerInfo } from './core/context.js';
import { UPGRADE_STATE, type RequestDispatcher, type UpgradeIO } from './core/dispatcher.js';
import { channels } from './core/events.js';
import { onceClosed } from './core/http.js';
import type { QuickRequest, QuickResponse } from './core/quick-answer.js';
import {
  compose,
  type Filter,
  type FilterDeps,
  type FilterFactory,
  type Handler,
} from './core/filter.js';
import { compileTemplate } from './core/template.js';
import { createForwardHandler } from './proxy/forward.js';
import { compileRequestHeaderOps } from './proxy/headers.js';
import { createRedirectHandler, createRespondHandler } from './proxy/local.js';
import { compileRewrite } from './proxy/rewrite.js';
import { createUpgradeHandler } from './proxy/upgrade.js';
import { createRouter, type Router } from './routing/index.js';
import type { UpstreamGroup } from './upstream/group.js';
import type { HostRegistry } from './upstream/registry.js';

export type LogFn = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

export interface RuntimeDeps {
  /** Every feature this build has; a route turns one on by having its key. */
  features: readonly FilterFactory[];
  hosts: HostRegistry;
  log: LogFn;
  /** Feature state that survives reloads (see FilterDeps.shared). */
  shared: Map<string, unknown>;
}

interface CompiledRoute {
  config: RouteConfig;
  handler: Handler;
  /** The same filters ending in the WebSocket tunnel; null for routes without an upstream. */
  upgradeHandler: Handler | null;
  filters: Filter[];
  /** The first filter, when it can answer requests at once (Filter.quickAnswer); else null. */
  quick: Filter | null;
  /**
   * The route proxies: it keeps a quick request (core/quick-answer.ts) that no filter answered
   * at once, and runs its chain with the loop's response, which makes node's objects only if
   * something needs them.
   */
  keepsQuick: boolean;
}

const MAX_REQUEST_ID_LENGTH = 200;
const REQUEST_ID_SYNTAX = /^[\x21-\x7e]+$/;

const kEndContext = Symbol('switchyard.endContext');
type EndTracked = { [kEndContext]?: RequestContext };

/**
 * Publishes requestEnd for a response's context when the response closes (`this` is the
 * response). One function shared by every request, so subscribing allocates no closure and no
 * once-wrapper; clearing the context makes a second `close` a no-op.
 */
function publishRequestEnd(this: object): void {
  const tracked = this as EndTracked;
  const ctx = tracked[kEndContext];
  if (ctx === undefined) return;
  tracked[kEndContext] = undefined;
  channels.requestEnd.publish(ctx);
}

/**
 * Everything built from one config: the router, each route's composed chain, the upstream
 * groups. Built once at load; requests only look things up. A reload builds a new Runtime and
 * swaps it in; requests already running finish on the one they started with.
 */
export class Runtime implements RequestDispatcher {
  readonly config: Config;
  readonly groups: Map<string, UpstreamGroup>;
  readonly loadedAt = new Date();
  private readonly router: Router<CompiledRoute>;
  private readonly routes: CompiledRoute[];
  private readonly trusted: BlockList | null;
  private readonly log: LogFn;
  private readonly errorPages: ReadonlyMap<number, Buffer> | null;
  /**
   * Set when some route's first filter can answer at once, or some route has an upstream
   * (RequestDispatcher.quickAnswer).
   */
  readonly quickAnswer: RequestDispatcher['quickAnswer'];

  constructor(config: Config, deps: RuntimeDeps) {
    this.config = config;
    this.log = deps.log;
    this.trusted = buildTrustList(config.trustedProxies);
    this.errorPages = loadErrorPages(config);
    this.groups = deps.hosts.build(config.upstreams.values());
    const filterDeps: FilterDeps = {
      log: deps.log,
      globals: config.features,
      shared<T>(key: string, create: () => T): T {
        if (!deps.shared.has(key)) deps.shared.set(key, create());
        return deps.shared.get(key) as T;
      },
    };
    const features = [...deps.features].sort((a, b) => a.order - b.order);
    this.routes = config.routes.map((route) => this.compileRoute(route, features, filterDeps));
    this.router = createRouter(this.routes.map((r) => ({ config: r.config, value: r })));
    this.quickAnswer = this.routes.some((r) => r.quick !== null || r.keepsQuick)
      ? this.answerQuickly
      : undefined;
  }

  private compileRoute(
    route: RouteConfig,
    features: readonly FilterFactory[],
    filterDeps: FilterDeps,
  ): CompiledRoute {
    const filters: Filter[] = [];
    const settings: Record<string, unknown> = { ...route.features };
    if (route.responseHeaders) settings.responseHeaders = route.responseHeaders;
    for (const feature of features) {
      let value = settings[feature.key];
      if (value === undefined) value = feature.defaultConfig?.(filterDeps.globals);
      if (value === undefined || value === false) continue;
      filters.push(feature.create(value, filterDeps, { name: route.name }));
    }
    let terminal: Handler;
    let upgradeTerminal: Handler | null = null;
    const action = route.action;
    if (action.type === 'redirect') {
      terminal = createRedirectHandler(action.location, action.status);
    } else if (action.type === 'respond') {
      terminal = createRespondHandler(action.status, action.body, action.headers);
    } else {
      const group = this.groups.get(action.upstream);
      if (group === undefined)
        throw new Error(`route ${route.name}: unknown upstream "${action.upstream}"`);
      const upstream = group.config;
      terminal = createForwardHandler({
        group,
        rewriteTarget: compileRewrite(route.rewrite),
        hostHeader: upstream.hostHeader === undefined ? null : compileTemplate(upstream.hostHeader),
        requestHeaderOps: compileRequestHeaderOps(route.requestHeaders, compileTemplate),
        readTimeoutMs: route.timeouts?.readMs ?? upstream.readTimeoutMs,
        sendTimeoutMs: route.timeouts?.sendMs ?? upstream.sendTimeoutMs,
        // 0 turns the override off, as 0 does for the other timeouts.
        connectTimeoutMs: route.timeouts?.connectMs || null,
        isTrustedPeer: (ctx) => this.isTrustedPeer(ctx.req),
        log: this.log,
      });
      upgradeTerminal = createUpgradeHandler({
        group,
        rewriteTarget: compileRewrite(route.rewrite),
        hostHeader: upstream.hostHeader === undefined ? null : compileTemplate(upstream.hostHeader),
        requestHeaderOps: compileRequestHeaderOps(route.requestHeaders, compileTemplate),
        readTimeoutMs: route.timeouts?.readMs ?? upstream.readTimeoutMs,
        // A WebSocket is idle when no frame moved for as long as a response may take.
        idleTimeoutMs: route.timeouts?.readMs ?? upstream.readTimeoutMs,
        isTrustedPeer: (ctx) => this.isTrustedPeer(ctx.req),
        log: this.log,
      });
    }
    const routeName = route.name;
    const chain = compose(filters, terminal);
    const handler: Handler = (ctx) => {
      ctx.routeName = routeName;
      return chain(ctx);
    };
    let upgradeHandler: Handler | null = null;
    if (upgradeTerminal !== null) {
      const upgradeChain = compose(filters, upgradeTerminal);
      upgradeHandler = (ctx) => {
        ctx.routeName = routeName;
        return upgradeChain(ctx);
      };
    }
    const quick = filters.length > 0 && filters[0].quickAnswer !== undefined ? filters[0] : null;
    const keepsQuick = action.type === 'upstream';
    return { config: route, handler, upgradeHandler, filters, quick, keepsQuick };
  }

  isTrustedPeer(req: Pick<IncomingMessage, 'socket'>): boolean {
    if (this.trusted === null) return false;
    return checkAddress(this.trusted, req.socket.remoteAddress ?? '');
  }

  handle(
    req: IncomingMessage,
    res: ServerResponse,
    listener: ListenerInfo,
    upgrade?: UpgradeIO,
  ): void {
    const trustedPeer = this.isTrustedPeer(req);
    const clientIp = trustedPeer ? this.clientIpFromForwarded(req) : peerAddress(req);
    const ctx = new RequestContext(req, res, listener, clientIp, requestIdFor(req, trustedPeer));
    ctx.errorPages = this.errorPages;
    if (channels.requestStart.hasSubscribers) channels.requestStart.publish(ctx);
    if (channels.requestEnd.hasSubscribers) {
      (res as EndTracked)[kEndContext] = ctx;
      onceClosed(res, publishRequestEnd);
    }
    const route = this.routeFor(ctx);
    if (route === undefined) {
      ctx.sendError('ROUTE_NOT_FOUND');
      return;
    }
    let handler = route.handler;
    if (upgrade !== undefined && route.upgradeHandler !== null) {
      ctx.setState(UPGRADE_STATE, upgrade);
      handler = route.upgradeHandler;
    }
    this.run(ctx, handler);
  }

  /** Runs a route's chain; what it throws or rejects with is answered 500 and logged. */
  private run(ctx: RequestContext, handler: Handler): void {
    try {
      const pending = handler(ctx);
      if (pending !== undefined)
        pending.then(undefined, (err: unknown) => this.onUnexpected(ctx, err));
    } catch (err) {
      this.onUnexpected(ctx, err);
    }
  }

  /** The route a context's request matches (its listener, method, host, path, query, fields). */
  private routeFor(ctx: RequestContext): CompiledRoute | undefined {
    return this.router.match({
      method: ctx.method,
      host: ctx.host,
      path: ctx.path,
      query: ctx.query,
      headers: ctx.req.headers,
      listener: ctx.listener.name,
    });
  }

  /**
   * What `handle` does for a request offered by the loop before node's request objects exist
   * (core/quick-answer.ts), when its route can take it that way: the same context, routing and
   * request events. A route whose first filter answers at once has the loop write that answer;
   * otherwise a route with an upstream keeps the request and runs its chain as `handle` would,
   * its response made by the loop. Declines (false) before any effect otherwise.
   */
  private readonly answerQuickly = (
    req: QuickRequest,
    res: QuickResponse,
    listener: ListenerInfo,
  ): boolean => {
    // The context and what reads it here (routing, cache keys, request ids, the access log, the
    // proxy's request head) use only the fields a QuickRequest has.
    const request = req as unknown as ClientRequest;
    const ctx = new RequestContext(request, res, listener, '', '');
    const route = this.routeFor(ctx);
    if (route === undefined) return false;
    const quick = route.quick;
    if (quick === null) {
      if (!route.keepsQuick) return false;
      const trusted = this.isTrustedPeer(request);
      ctx.clientIp = trusted ? this.clientIpFromForwarded(request) : peerAddress(request);
      return this.keepQuickly(ctx, route, res, trusted);
    }
    const trustedPeer = this.isTrustedPeer(request);
    ctx.clientIp = trustedPeer ? this.clientIpFromForwarded(request) : peerAddress(request);
    ctx.routeName = route.config.name;
    let reply;
    try {
      reply = quick.quickAnswer!(ctx);
    } catch (err) {
      this.log('error', 'unexpected error while answering a request at once', {
        route: ctx.routeName,
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
      return false;
    }
    // No answer at once (and no effect): the route's chain runs on the kept request.
    if (reply === undefined)
      return route.keepsQuick && this.keepQuickly(ctx, route, res, trustedPeer);
    // Made only now: a declined request gets its id on the usual path.
    ctx.requestId = requestIdFor(request, trustedPeer);
    reply.fields += `x-request-id: ${ctx.requestId}\r\n`;
    if (channels.requestStart.hasSubscribers) channels.requestStart.publish(ctx);
    res.send(reply);
    if (channels.requestEnd.hasSubscribers) channels.requestEnd.publish(ctx);
    return true;
  };

  /**
   * `handle` for a kept quick request whose client address is set: from here on it is the
   * route's, as any request.
   */
  private keepQuickly(
    ctx: RequestContext,
    route: CompiledRoute,
    res: QuickResponse,
    trustedPeer: boolean,
  ): true {
    ctx.requestId = requestIdFor(ctx.req, trustedPeer);
    ctx.errorPages = this.errorPages;
    res.keep();
    if (channels.requestStart.hasSubscribers) channels.requestStart.publish(ctx);
    if (channels.requestEnd.hasSubscribers) {
      (res as unknown as EndTracked)[kEndContext] = ctx;
      onceClosed(res, publishRequestEnd);
    }
    this.run(ctx, route.handler);
    return true;
  }

  private onUnexpected(ctx: RequestContext, err: unknown): void {
    this.log('error', 'unexpected error while serving a request', {
      requestId: ctx.requestId,
      route: ctx.routeName,
      error: err instanceof Error ? (err.stack ?? err.message) : String(err),
    });
    if (channels.requestError.hasSubscribers) channels.requestError.publish({ ctx, error: err });
    ctx.sendError('INTERNAL');
  }

  /**
   * Walks X-Forwarded-For (or, without it, the RFC 7239 Forwarded `for=` list) from the right,
   * skipping trusted proxies, like nginx's real_ip_recursive: the first untrusted address is the
   * client. A hop that is not an address (`unknown`, an obfuscated name) ends the walk at the
   * peer. X-Forwarded-For wins when both are present because it is what most proxies append to.
   */
  private clientIpFromForwarded(req: Pick<IncomingMessage, 'socket' | 'headers'>): string {
    const peer = peerAddress(req);
    if (this.trusted === null) return peer;
    const xff = req.headers['x-forwarded-for'];
    let hops: string[];
    if (typeof xff === 'string') hops = xff.split(',');
    else if (typeof req.headers.forwarded === 'string') hops = forwardedFor(req.headers.forwarded);
    else return peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = unmapIPv4(hops[i].trim());
      if (!isIPv4(hop) && !isIPv6(hop)) return peer;
      if (!checkAddress(this.trusted, hop)) return hop;
    }
    return unmapIPv4(hops[0]?.trim() ?? '') || peer;
  }

  /** Releases what filters hold (timers, pools). Hosts are not touched: they outlive runtimes. */
  async close(): Promise<void> {
    for (const route of this.routes) {
      for (const filter of route.filters) {
        try {
          await filter.close?.();
        } catch (err) {
          this.log('warn', 'error while closing a filter', {
            filter: filter.name,
            error: String(err),
          });
        }
      }
    }
  }
}

/**
 * Reads the configured error pages once per config load, relative to the config file. A page
 * that cannot be read fails the load (and so a reload keeps the old config).
 */
function loadErrorPages(config: Config): ReadonlyMap<number, Buffer> | null {
  const entries = Object.entries(config.errorPages);
  if (entries.length === 0) return null;
  const base =
    config.sourcePath === undefined ? process.cwd() : dirname(resolve(config.sourcePath));
  const pages = new Map<number, Buffer>();
  for (const [status, path] of entries) {
    try {
      pages.set(Number(status), readFileSync(resolve(base, path)));
    } catch (err) {
      throw new Error(`errorPages["${status}"]: cannot read ${path}: ${(err as Error).message}`);
    }
  }
  return pages;
}

/** The client's own X-Request-Id when a trusted proxy sent a sane one; a new one otherwise. */
function requestIdFor(req: Pick<IncomingMessage, 'headers'>, trustedPeer: boolean): string {
  const incomingId = trustedPeer ? req.headers['x-request-id'] : undefined;
  return typeof incomingId === 'string' &&
    incomingId.length <= MAX_REQUEST_ID_LENGTH &&
    REQUEST_ID_SYNTAX.test(incomingId)
    ? incomingId
    : randomUUID();
}

function peerAddress(req: Pick<IncomingMessage, 'socket'>): string {
  const address = req.socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/**
 * The `for=` values of an RFC 7239 Forwarded header, one per element, as bare addresses:
 * quotes, `[v6]` brackets and ports removed. An element without `for=` yields ''.
 */
export function forwardedFor(header: string): string[] {
  const out: string[] = [];
  let value = '';
  let inQuotes = false;
  let current = '';
  const flush = () => {
    out.push(value);
    value = '';
  };
  const pair = (text: string) => {
    const eq = text.indexOf('=');
    if (eq === -1 || text.slice(0, eq).trim().toLowerCase() !== 'for') return;
    let v = text.slice(eq + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    if (v.startsWith('[')) {
      const end = v.indexOf(']');
      v = end === -1 ? '' : v.slice(1, end);
    } else if (v.indexOf(':') !== -1 && v.indexOf(':') === v.lastIndexOf(':')) {
      v = v.slice(0, v.indexOf(':'));
    }
    value = v;
  };
  for (let i = 0; i < header.length; i++) {
    const c = header[i];
    if (c === '"') inQuotes = !inQuotes;
    if (!inQuotes && (c === ';' || c === ',')) {
      pair(current);
      current = '';
      if (c === ',') flush();
      continue;
    }
    current += c;
  }
  pair(current);
  flush();
  return out;
}

function checkAddress(list: BlockList, address: string): boolean {
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7)))
    return list.check(address.slice(7), 'ipv4');
  if (isIPv4(address)) return list.check(address, 'ipv4');
  if (isIPv6(address)) return list.check(address, 'ipv6');
  return false;
}

function buildTrustList(cidrs: readonly string[]): BlockList | null {
  if (cidrs.length === 0) return null;
  const list = new BlockList();
  for (const entry of cidrs) {
    const [address, bits] = entry.split('/');
    const family = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return list;
}
