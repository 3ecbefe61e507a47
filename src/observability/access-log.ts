import type { TLSSocket } from 'node:tls';
import { createRequire } from 'node:module';
import type pino from 'pino';

// pino (for its SonicBoom destination) is loaded only when an access log is configured.
const requireLazily = createRequire(import.meta.url);
import type { AccessLogConfig, RouteConfig } from '../config/types.js';
import type { RequestContext } from '../core/context.js';

/** The per-request numbers the observability subscriber measured once for every consumer. */
export interface RequestMeasures {
  status: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
}

type Destination = ReturnType<typeof pino.destination>;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `10/Oct/2000:13:55:36 +0000`, the time format of the combined log. */
function clfTime(date: Date): string {
  return `${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}

/** Escapes a value for a quoted combined-log field the way nginx does (\" \\ and \xHH). */
function clfEscape(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/["\\\x00-\x1f\x7f-\uffff]/.test(value)) return value;
  let out = '';
  for (const ch of value) {
    const code = ch.charCodeAt(0);
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code > 0x7f)
      for (const byte of Buffer.from(ch)) out += `\\x${byte.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out;
}

function header(ctx: RequestContext, name: 'user-agent' | 'referer'): string {
  const value = ctx.req.headers[name];
  return typeof value === 'string' ? value : '';
}

/**
 * One line per request, as pino-format JSON or in the combined format, written through pino's
 * sonic-boom destination in asynchronous mode: the line is handed over in memory and written by the event
 * loop later (consecutive lines are coalesced into one write under load), so a slow disk never
 * stalls a response. The subscriber runs on the response's `close`, after the client has its
 * answer. Reopened on SIGUSR1 so logrotate can move the file away.
 */
export class AccessLog {
  readonly format: 'json' | 'combined';
  readonly output: string;
  private readonly destination: Destination;
  private sampleRatio: number;
  /** Route name -> sample ratio when it differs from the global one (0 = off). */
  private routeRatios = new Map<string, number>();

  constructor(config: AccessLogConfig, routes: readonly RouteConfig[]) {
    this.format = config.format;
    this.output = config.output;
    this.sampleRatio = config.sampleRatio;
    this.destination = (requireLazily('pino') as typeof pino).destination({
      dest: config.output === 'stdout' ? 1 : config.output,
      sync: false,
      mkdir: true,
      append: true,
      // Lines are gathered into writes of at least 4 KiB (one syscall for many requests), and
      // flushed at least twice a second when traffic is light. A disk that cannot keep up
      // makes lines drop past 16 MiB of backlog rather than grow the heap without bound.
      minLength: 4096,
      periodicFlush: 500,
      maxLength: 16 * 1024 * 1024,
    });
    // A bad path must not crash the process later, from inside sonic-boom's callbacks.
    this.destination.on('error', () => undefined);
    this.setRoutes(routes, config.sampleRatio);
  }

  /** True when this log can keep running under a new config (same file and format). */
  sameTarget(config: AccessLogConfig): boolean {
    return config.format === this.format && config.output === this.output;
  }

  setRoutes(routes: readonly RouteConfig[], sampleRatio: number): void {
    this.sampleRatio = sampleRatio;
    const ratios = new Map<string, number>();
    for (const route of routes) {
      const setting = route.features.accessLog;
      if (setting === false) ratios.set(route.name, 0);
      else if (typeof setting === 'object' && setting !== null) {
        const ratio = (setting as { sampleRatio?: number }).sampleRatio;
        if (typeof ratio === 'number') ratios.set(route.name, ratio);
      }
    }
    this.routeRatios = ratios;
  }

  /** Whether this request is logged: route switch, then sampling; server errors always are. */
  wants(ctx: RequestContext, status: number): boolean {
    const routeRatio =
      this.routeRatios.size === 0 ? undefined : this.routeRatios.get(ctx.routeName);
    if (routeRatio === 0) return false;
    if (status >= 500) return true;
    const ratio = routeRatio ?? this.sampleRatio;
    return ratio >= 1 || Math.random() < ratio;
  }

  write(ctx: RequestContext, m: RequestMeasures): void {
    this.destination.write(
      this.format === 'json' ? this.jsonLine(ctx, m) : this.combinedLine(ctx, m),
    );
  }

  /**
   * The line pino would write for `logger.info(record)` (level 30, then the fields), built by
   * hand: pino's generic serializer costs several microseconds a line, this a fraction of it.
   * Every string that can come from a client goes through JSON.stringify (quotes, control
   * characters, lone surrogates are escaped); absent fields are left out, as pino does.
   */
  private jsonLine(ctx: RequestContext, m: RequestMeasures): string {
    const q = JSON.stringify;
    let line = `{"level":30,"time":"${new Date().toISOString()}","requestId":${q(ctx.requestId)}`;
    if (ctx.traceId !== '') line += `,"traceId":"${ctx.traceId}"`;
    line += `,"clientIp":${q(ctx.clientIp)},"method":${q(ctx.method)},"host":${q(ctx.host)},"path":${q(ctx.path)}`;
    if (ctx.query !== '') line += `,"query":${q(ctx.query)}`;
    line += `,"protocol":"HTTP/${ctx.req.httpVersion}","status":${m.status},"bytesIn":${m.bytesIn},"bytesOut":${m.bytesOut},"durationMs":${round(m.durationMs)},"route":${q(ctx.routeName)}`;
    if (ctx.upstreamName !== '') line += `,"upstream":${q(ctx.upstreamName)}`;
    if (ctx.upstreamServer !== '') line += `,"upstreamServer":${q(ctx.upstreamServer)}`;
    if (ctx.upstreamHeadersTime > 0)
      line += `,"upstreamTimeMs":${round(ctx.upstreamHeadersTime - ctx.upstreamStartTime)}`;
    if (ctx.cacheStatus !== '') line += `,"cache":${q(ctx.cacheStatus)}`;
    line += `,"retries":${ctx.retries}`;
    const socket = ctx.req.socket as TLSSocket | undefined;
    if (socket?.encrypted) {
      const version = socket.getProtocol();
      if (version) line += `,"tls":${q(version)}`;
    }
    line += `,"listener":${q(ctx.listener.name)}`;
    const agent = header(ctx, 'user-agent');
    if (agent !== '') line += `,"userAgent":${q(agent)}`;
    const referer = header(ctx, 'referer');
    if (referer !== '') line += `,"referer":${q(referer)}`;
    return `${line}}\n`;
  }

  /** `host - - [time] "METHOD /uri HTTP/1.1" status bytes "referer" "user-agent"` */
  private combinedLine(ctx: RequestContext, m: RequestMeasures): string {
    const uri = ctx.query === '' ? ctx.path : `${ctx.path}?${ctx.query}`;
    const referer = header(ctx, 'referer');
    const agent = header(ctx, 'user-agent');
    return `${ctx.clientIp} - - [${clfTime(new Date())}] "${clfEscape(ctx.method)} ${clfEscape(uri)} HTTP/${ctx.req.httpVersion}" ${m.status} ${m.bytesOut === 0 ? '-' : m.bytesOut} "${referer === '' ? '-' : clfEscape(referer)}" "${agent === '' ? '-' : clfEscape(agent)}"\n`;
  }

  /** Opens the file again by name (after logrotate moved it). stdout needs nothing. */
  reopen(): void {
    if (this.output === 'stdout') return;
    try {
      this.destination.reopen();
    } catch {
      // The destination was not ready yet; its pending open uses the path anyway.
    }
  }

  /** Writes out what is buffered and releases the file. */
  close(): Promise<void> {
    const dest = this.destination;
    return new Promise((resolve) => {
      const done = () => resolve();
      if (this.output === 'stdout') {
        dest.flush(() => done());
        return;
      }
      dest.once('close', done);
      dest.once('error', done);
      dest.end();
    });
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
