import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AdminConfig } from '../config/types.js';
import { channels, type CachePurgeEvent, type CachePurgeRequest } from '../core/events.js';
import type { LogFn } from '../observability/logger.js';
import type { Observability } from '../observability/index.js';
import { dashboardHtml } from './dashboard.js';

/** A server as the admin API sees it (the long-lived Host, structurally). */
export interface AdminServerView {
  readonly origin: string;
  readonly weight: number;
  readonly healthy: boolean;
  draining: boolean;
  /** Passive health took it out for a while (when the host tracks ejections). */
  readonly ejected?: boolean;
  readonly activeRequests: number;
  readonly totalRequests: number;
  readonly state: string;
  /** Preferred over assigning `draining`: lets the host react (slow start, events). */
  setDraining?(draining: boolean): void;
}

export interface AdminUpstreamView {
  readonly name: string;
  readonly config: {
    readonly balancer: string;
    readonly servers: ReadonlyArray<{ url: string; origin: string; weight: number }>;
  };
  readonly hosts: readonly AdminServerView[];
}

export type ReloadResult = { ok: true; changes: string[] } | { ok: false; errors: string[] };

export interface AdminDeps {
  version: string;
  startedAt: Date;
  workers: () => number;
  configLoadedAt: () => Date;
  upstreams: () => Iterable<AdminUpstreamView>;
  observability: Observability;
  /** Config loaded and every listener up. */
  ready: () => boolean;
  /** Reloads the config like SIGHUP; absent when Switchyard was started without a file. */
  reload?: () => Promise<ReloadResult>;
  log: LogFn;
}

const MAX_BODY = 64 * 1024;
const SSE_INTERVAL_MS = 1000;
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly allow?: string,
  ) {
    super(message);
  }
}

/**
 * The admin listener: the JSON API, Prometheus metrics, health endpoints and the dashboard.
 * Separate from the proxy's listeners so it can stay on loopback; with `admin.token` every
 * request must carry `Authorization: Bearer TOKEN`, compared in constant time.
 */
export class AdminServer {
  readonly server: http.Server;
  private config: AdminConfig;
  private tokenDigest: Buffer | null;
  private readonly deps: AdminDeps;
  private readonly streams = new Set<http.ServerResponse>();
  private streamTimer: NodeJS.Timeout | null = null;

  constructor(config: AdminConfig, deps: AdminDeps) {
    // Validation rejects this too; the guard stays so no code path can expose an open admin API.
    if (config.token === undefined && !isLoopback(config.address.host)) {
      throw new Error(
        `admin.address: refusing to start the admin listener on ${config.addressText} without admin.token; bind it to 127.0.0.1 or set a token`,
      );
    }
    this.config = config;
    this.tokenDigest = config.token === undefined ? null : digest(config.token);
    this.deps = deps;
    this.server = http.createServer(
      { headersTimeout: 10_000, requestTimeout: 30_000 },
      (req, res) => this.handle(req, res),
    );
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  /** Takes a reloaded admin config; the address is fixed for the listener's life. */
  setConfig(config: AdminConfig): void {
    if (config.token === undefined && !isLoopback(config.address.host)) return;
    this.config = config;
    this.tokenDigest = config.token === undefined ? null : digest(config.token);
  }

  get addressText(): string {
    return this.config.addressText;
  }

  async listen(): Promise<string> {
    const { host, port } = this.config.address;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: host === '' ? undefined : host, port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.url();
  }

  url(): string {
    const address = this.server.address();
    if (address === null || typeof address === 'string') return `http://${address}`;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  async close(): Promise<void> {
    if (this.streamTimer !== null) clearInterval(this.streamTimer);
    this.streamTimer = null;
    for (const res of this.streams) res.end();
    this.streams.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private authorized(req: http.IncomingMessage): boolean {
    if (this.tokenDigest === null) return true;
    const header = req.headers.authorization;
    if (typeof header !== 'string' || !/^bearer /i.test(header)) return false;
    // Hashing both sides gives equal lengths, so timingSafeEqual leaks neither length nor bytes.
    return timingSafeEqual(digest(header.slice(7).trim()), this.tokenDigest);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    res.setHeader('cache-control', 'no-store');
    res.setHeader('x-content-type-options', 'nosniff');
    if (!this.authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer realm="switchyard-admin"');
      // The dashboard page (static code, no data) still loads so a browser can ask for the
      // token; it answers 401 like every other unauthenticated admin request.
      if (method === 'GET' && path === '/' && acceptsHtml(req)) {
        this.sendHtml(res, 401, dashboardHtml(true));
        return;
      }
      sendJson(res, 401, {
        error: 'unauthorized',
        message: 'send Authorization: Bearer <admin.token>',
      });
      return;
    }
    this.route(method, path, req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (err.allow !== undefined && !res.headersSent) res.setHeader('allow', err.allow);
        sendJson(res, err.status, { error: err.code, message: err.message });
        return;
      }
      this.deps.log('error', 'admin API error', { path, error: String(err) });
      sendJson(res, 500, { error: 'internal', message: 'internal error; see the process log' });
    });
  }

  private async route(
    method: string,
    path: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<void> {
    const get = method === 'GET' || method === 'HEAD';
    if (path === '/') {
      requireMethod(get, 'GET');
      this.sendHtml(res, 200, dashboardHtml(this.tokenDigest !== null));
      return;
    }
    if (path === '/metrics') {
      requireMethod(get, 'GET');
      const metrics = this.deps.observability.metrics;
      if (metrics === null) throw new HttpError(503, 'unavailable', 'metrics are not running');
      const body = await metrics.text();
      res.writeHead(200, { 'content-type': metrics.contentType });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/healthz') {
      requireMethod(get, 'GET');
      sendJson(res, 200, { status: 'ok' });
      return;
    }
    if (path === '/readyz') {
      requireMethod(get, 'GET');
      const ready = this.deps.ready();
      sendJson(res, ready ? 200 : 503, { ready });
      return;
    }
    if (path === '/api/status') {
      requireMethod(get, 'GET');
      sendJson(res, 200, this.status());
      return;
    }
    if (path === '/api/upstreams') {
      requireMethod(get, 'GET');
      sendJson(res, 200, { upstreams: this.upstreams() });
      return;
    }
    if (path === '/api/dashboard') {
      requireMethod(get, 'GET');
      sendJson(res, 200, this.snapshot());
      return;
    }
    if (path === '/api/events') {
      requireMethod(get, 'GET');
      this.openStream(req, res);
      return;
    }
    const server = /^\/api\/upstreams\/([^/]+)\/(drain|enable)$/.exec(path);
    if (server) {
      requireMethod(method === 'POST', 'POST');
      const body = await readJson(req);
      sendJson(res, 200, this.setDraining(decodeURIComponent(server[1]), body, server[2]));
      return;
    }
    if (path === '/api/cache/purge') {
      requireMethod(method === 'POST', 'POST');
      sendJson(res, 200, await this.purge(await readJson(req)));
      return;
    }
    if (path === '/api/reload') {
      requireMethod(method === 'POST', 'POST');
      await this.reload(res);
      return;
    }
    throw new HttpError(404, 'not_found', `no admin endpoint ${path}`);
  }

  private status() {
    return {
      version: this.deps.version,
      uptimeSeconds: Math.round((Date.now() - this.deps.startedAt.getTime()) / 1000),
      workers: this.deps.workers(),
      configLoadedAt: this.deps.configLoadedAt().toISOString(),
    };
  }

  private upstreams() {
    return [...this.deps.upstreams()].map((group) => ({
      name: group.name,
      balancer: group.config.balancer,
      servers: group.hosts.map((host) => serverJson(group, host)),
    }));
  }

  private snapshot() {
    const obs = this.deps.observability;
    return {
      status: this.status(),
      activeRequests: obs.active,
      upstreams: this.upstreams(),
      ...(obs.stats?.snapshot(obs.routes) ?? {}),
    };
  }

  private setDraining(upstream: string, body: unknown, action: string) {
    const group = [...this.deps.upstreams()].find((g) => g.name === upstream);
    if (group === undefined)
      throw new HttpError(404, 'unknown_upstream', `no upstream named "${upstream}"`);
    const url = (body as { url?: unknown } | null)?.url;
    if (typeof url !== 'string')
      throw new HttpError(400, 'bad_request', 'expected a JSON body { "url": "http://host:port" }');
    const host = findHost(group, url);
    if (host === undefined)
      throw new HttpError(404, 'unknown_server', `upstream "${upstream}" has no server ${url}`);
    if (host.setDraining) host.setDraining(action === 'drain');
    else host.draining = action === 'drain';
    this.deps.log('info', `admin: server ${action === 'drain' ? 'drained' : 'enabled'}`, {
      upstream,
      server: host.origin,
    });
    this.broadcast();
    return { upstream, server: serverJson(group, host) };
  }

  private async purge(body: unknown) {
    const purge = parsePurge(body);
    if (!channels.cachePurge.hasSubscribers) {
      throw new HttpError(
        501,
        'not_implemented',
        'no cache is running: enable `cache` on a route to purge it',
      );
    }
    const message: CachePurgeEvent = { purge };
    channels.cachePurge.publish(message);
    if (message.result === undefined)
      throw new HttpError(501, 'not_implemented', 'the cache did not accept the purge');
    const purged = await message.result;
    return { purged };
  }

  private async reload(res: http.ServerResponse): Promise<void> {
    const reload = this.deps.reload;
    if (reload === undefined)
      throw new HttpError(
        501,
        'not_implemented',
        'this Switchyard was not started from a config file, so it has nothing to reload',
      );
    const result = await reload();
    if (result.ok) sendJson(res, 200, { reloaded: true, changes: result.changes });
    else
      sendJson(res, 422, {
        error: 'invalid_config',
        message: 'the new config is invalid; the old one keeps serving',
        errors: result.errors,
      });
  }

  /** Server-Sent Events: a dashboard snapshot now and every second until the client leaves. */
  private openStream(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    res.write(`data: ${JSON.stringify(this.snapshot())}\n\n`);
    this.streams.add(res);
    req.socket.setTimeout(0);
    res.on('close', () => {
      this.streams.delete(res);
      if (this.streams.size === 0 && this.streamTimer !== null) {
        clearInterval(this.streamTimer);
        this.streamTimer = null;
      }
    });
    if (this.streamTimer === null) {
      this.streamTimer = setInterval(() => this.broadcast(), SSE_INTERVAL_MS);
      this.streamTimer.unref();
    }
  }

  private broadcast(): void {
    if (this.streams.size === 0) return;
    const frame = `data: ${JSON.stringify(this.snapshot())}\n\n`;
    for (const res of this.streams) res.write(frame);
  }

  private sendHtml(res: http.ServerResponse, status: number, html: string): void {
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy':
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      'referrer-policy': 'no-referrer',
    });
    res.end(html);
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

function acceptsHtml(req: http.IncomingMessage): boolean {
  return (req.headers.accept ?? '').includes('text/html');
}

function requireMethod(ok: boolean, allowed: string): void {
  if (!ok) throw new HttpError(405, 'method_not_allowed', `use ${allowed}`, allowed);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, 'too_large', 'the body is over 64 KiB');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'bad_json', 'the body is not valid JSON');
  }
}

function parsePurge(body: unknown): CachePurgeRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b !== 'object' || Array.isArray(b)) throw badPurge();
  if (b.all === true) return { all: true };
  if (typeof b.url === 'string' && isHttpUrl(b.url)) return { url: b.url };
  if (typeof b.prefix === 'string' && isHttpUrl(b.prefix)) return { prefix: b.prefix };
  if (typeof b.tag === 'string' && b.tag.trim() !== '') return { tag: b.tag.trim() };
  throw badPurge();
}

function badPurge(): HttpError {
  return new HttpError(
    400,
    'bad_request',
    'expected { "url": "http://host/path" }, { "prefix": "http://host/static/" }, { "tag": "name" } or { "all": true }',
  );
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

function serverJson(group: AdminUpstreamView, host: AdminServerView) {
  return {
    url: serverUrl(group, host),
    weight: host.weight,
    state: host.state,
    // Passive health counts: an ejected server is not healthy (like the metric and snapshot()).
    healthy: host.healthy && host.ejected !== true,
    ejected: host.ejected === true,
    activeRequests: host.activeRequests,
    totalRequests: host.totalRequests,
  };
}

/** The server's URL as configured (so clients can send back what they read). */
function serverUrl(group: AdminUpstreamView, host: AdminServerView): string {
  return group.config.servers.find((s) => s.origin === host.origin)?.url ?? host.origin;
}

/** Finds a server by its URL as configured, or by the same origin written another way. */
function findHost(group: AdminUpstreamView, url: string): AdminServerView | undefined {
  const configured = group.config.servers.find((s) => s.url === url);
  let origin = configured?.origin;
  if (origin === undefined) {
    try {
      const u = new URL(url);
      const port = u.port || (u.protocol === 'https:' ? '443' : '80');
      origin = `${u.protocol}//${u.hostname}:${port}`;
    } catch {
      return undefined;
    }
  }
  return group.hosts.find((h) => h.origin === origin || h.origin === url);
}
