import type { TLSSocket } from 'node:tls';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AccessLogConfig, RouteConfig } from '../config/types.js';
import type { RequestContext } from '../core/context.js';
import { FileLines, StdoutLines, type LineSink } from './log-sink.js';
import type { LogFn } from './logger.js';

/**
 * Opens the access log's output for appending (creating its directory) and returns the file
 * descriptor, 1 for stdout. Synchronous, so that a path that cannot be written fails the start
 * or the reload with a clear message, as nginx does, instead of every line being lost later
 * without a word; and the descriptor opened here is the one the log writes to, so the file is
 * opened once.
 */
function openOutput(output: string): number {
  if (output === 'stdout') return 1;
  try {
    makeDirectory(dirname(output));
    return openSync(output, 'a');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`accessLog.output: cannot open ${output} for writing (${reason})`);
  }
}

/**
 * `mkdir -p`, one level at a time: node's recursive mkdir never returns for a directory that
 * cannot be created under an existing parent in some file systems (e.g. under /proc it gets
 * ENOENT and retries forever), which would hang the start or spin a thread-pool thread.
 */
function makeDirectory(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) makeDirectory(parent);
  mkdirSync(dir);
}

/** A failing disk is reported at most this often. */
const ERROR_REPORT_MS = 60_000;

/** The per-request numbers the observability subscriber measured once for every consumer. */
export interface RequestMeasures {
  status: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `10/Oct/2000:13:55:36 +0000`, the time format of the combined log. */
function clfTime(date: Date): string {
  return `${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}

/**
 * The current time as both logs print it, formatted once per second (the date part) and once per
 * millisecond (the ISO string): under load many lines share a millisecond, and every line of a
 * second shares its date, so a line costs a Date.now() instead of a Date and its formatting.
 */
class LogClock {
  private second = -1;
  private isoPrefix = '';
  private clf = '';
  private ms = -1;
  private iso = '';

  private advance(now: number): void {
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      this.second = second;
      const date = new Date(second * 1000);
      // "2026-11-28T23:21:05." from "2026-11-28T23:21:05.000Z".
      this.isoPrefix = date.toISOString().slice(0, -4);
      this.clf = clfTime(date);
    }
  }

  /** `new Date().toISOString()`, e.g. `2026-11-28T23:21:05.123Z`. */
  isoNow(): string {
    const now = Date.now();
    if (now !== this.ms) {
      this.ms = now;
      this.advance(now);
      const millis = now - this.second * 1000;
      this.iso = `${this.isoPrefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
    }
    return this.iso;
  }

  /** `clfTime(new Date())`. */
  clfNow(): string {
    this.advance(Date.now());
    return this.clf;
  }
}

/**
 * A JSON string literal of `value`, as JSON.stringify writes it. Most values need no escaping,
 * and checking that is cheaper than the generic serializer.
 */
function quote(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff))
      return JSON.stringify(value);
  }
  return `"${value}"`;
}

/**
 * Runs of the JSON line that repeat from one line to the next (the same client, route and
 * connection), each kept as one flat string while its inputs stay the same: comparing a few
 * strings is cheaper than quoting them and joining the pieces again, and a line of a few large
 * pieces is cheaper to flatten (when it is encoded) than one of forty small ones.
 */
function flat(text: string): string {
  // Reading a character flattens a concatenated string in place, once.
  text.charCodeAt(0);
  return text;
}

/** A run made from three strings, rebuilt (by `build`) only when one of them changes. */
class Run3 {
  private a: string | undefined;
  private b = '';
  private c = '';
  private text = '';

  constructor(private readonly build: (a: string, b: string, c: string) => string) {}

  get(a: string, b: string, c: string): string {
    if (a !== this.a || b !== this.b || c !== this.c) {
      this.a = a;
      this.b = b;
      this.c = c;
      this.text = flat(this.build(a, b, c));
    }
    return this.text;
  }
}

/** `,"clientIp":…,"method":…,"host":…,"path":` */
const clientRun = (ip: string, method: string, host: string): string =>
  `,"clientIp":${quote(ip)},"method":${quote(method)},"host":${quote(host)},"path":`;

/** `,"route":…` and, when there is one, `,"upstream":…,"upstreamServer":…` */
function routeRun(route: string, upstream: string, server: string): string {
  let text = `,"route":${quote(route)}`;
  if (upstream !== '') text += `,"upstream":${quote(upstream)}`;
  if (server !== '') text += `,"upstreamServer":${quote(server)}`;
  return text;
}

/** `,"retries":0` when none, then `,"tls":…`, `,"listener":…`, `,"userAgent":…`, `,"referer":…}` */
class TailRun {
  private noRetries = false;
  private tls: string | undefined;
  private listener = '';
  private agent = '';
  private referer = '';
  private text = '';

  get(noRetries: boolean, tls: string, listener: string, agent: string, referer: string): string {
    if (
      noRetries !== this.noRetries ||
      tls !== this.tls ||
      listener !== this.listener ||
      agent !== this.agent ||
      referer !== this.referer
    ) {
      this.noRetries = noRetries;
      this.tls = tls;
      this.listener = listener;
      this.agent = agent;
      this.referer = referer;
      let text = noRetries ? ',"retries":0' : '';
      if (tls !== '') text += `,"tls":${quote(tls)}`;
      text += `,"listener":${quote(listener)}`;
      if (agent !== '') text += `,"userAgent":${quote(agent)}`;
      if (referer !== '') text += `,"referer":${quote(referer)}`;
      this.text = flat(`${text}}\n`);
    }
    return this.text;
  }
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
 * One line per request, as pino-format JSON or in the combined format, handed to a LineSink
 * (log-sink.ts) in memory and written later in large asynchronous writes (many lines each under
 * load), so a slow disk never stalls a response. The subscriber runs on the response's `close`, after the client has its
 * answer. Reopened on SIGUSR1 so logrotate can move the file away.
 *
 * The file is opened once, by the constructor (which throws when it cannot be), and closed by
 * `close`: a reload that changes the output builds a new AccessLog before it switches and
 * closes the old one after.
 */
export class AccessLog {
  readonly format: 'json' | 'combined';
  readonly output: string;
  private sink: LineSink;
  /** Sinks replaced by `reopen` that are still writing out what they had. */
  private retiring: Promise<void>[] = [];
  private readonly log: LogFn | undefined;
  private sampleRatio: number;
  /** Route name -> sample ratio when it differs from the global one (0 = off). */
  private routeRatios = new Map<string, number>();
  private readonly clock = new LogClock();
  private readonly runs = {
    client: new Run3(clientRun),
    route: new Run3(routeRun),
    tail: new TailRun(),
  };
  /** When a write error was last reported: a failing disk is reported once a minute. */
  private errorReportedAt = -Infinity;
  private readonly onWriteError = (err: Error): void => {
    const now = Date.now();
    if (this.log === undefined || now - this.errorReportedAt < ERROR_REPORT_MS) return;
    this.errorReportedAt = now;
    this.log('error', 'access log write failed; lines are being lost', {
      output: this.output,
      error: (err as NodeJS.ErrnoException).code ?? err.message,
    });
  };

  constructor(config: AccessLogConfig, routes: readonly RouteConfig[], log?: LogFn) {
    this.format = config.format;
    this.output = config.output;
    this.sampleRatio = config.sampleRatio;
    this.log = log;
    this.sink = this.sinkFor(openOutput(config.output));
    this.setRoutes(routes, config.sampleRatio);
  }

  /** The sink for an open descriptor (1: stdout); it closes a file's descriptor on end. */
  private sinkFor(fd: number): LineSink {
    return fd === 1 ? new StdoutLines(this.onWriteError) : new FileLines(fd, this.onWriteError);
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
    this.sink.write(this.format === 'json' ? this.jsonLine(ctx, m) : this.combinedLine(ctx, m));
  }

  /**
   * The line pino would write for `logger.info(record)` (level 30, then the fields), built by
   * hand: pino's generic serializer costs several microseconds a line, this a fraction of it.
   * Every string is written as JSON.stringify would (quotes, control characters, lone surrogates
   * escaped; `quote` only skips the serializer when nothing needs escaping); absent fields are
   * left out, as pino does.
   */
  private jsonLine(ctx: RequestContext, m: RequestMeasures): string {
    const runs = this.runs;
    let line = `{"level":30,"time":"${this.clock.isoNow()}","requestId":${quote(ctx.requestId)}`;
    const traceId = ctx.trace.traceId;
    if (traceId !== '') line += `,"traceId":"${traceId}"`;
    line += runs.client.get(ctx.clientIp, ctx.method, ctx.host);
    line += quote(ctx.path);
    if (ctx.query !== '') line += `,"query":${quote(ctx.query)}`;
    line += `,"protocol":"HTTP/${ctx.req.httpVersion}","status":${m.status},"bytesIn":${m.bytesIn},"bytesOut":${m.bytesOut},"durationMs":${millis(m.durationMs)}`;
    line += runs.route.get(ctx.routeName, ctx.upstreamName, ctx.upstreamServer);
    if (ctx.upstreamHeadersTime > 0)
      line += `,"upstreamTimeMs":${millis(ctx.upstreamHeadersTime - ctx.upstreamStartTime)}`;
    if (ctx.cacheStatus !== '') line += `,"cache":${quote(ctx.cacheStatus)}`;
    if (ctx.retries !== 0) line += `,"retries":${ctx.retries}`;
    const socket = ctx.req.socket as TLSSocket | undefined;
    const version = socket?.encrypted ? (socket.getProtocol() ?? '') : '';
    return (
      line +
      runs.tail.get(
        ctx.retries === 0,
        version,
        ctx.listener.name,
        header(ctx, 'user-agent'),
        header(ctx, 'referer'),
      )
    );
  }

  /** `host - - [time] "METHOD /uri HTTP/1.1" status bytes "referer" "user-agent"` */
  private combinedLine(ctx: RequestContext, m: RequestMeasures): string {
    const uri = ctx.query === '' ? ctx.path : `${ctx.path}?${ctx.query}`;
    const referer = header(ctx, 'referer');
    const agent = header(ctx, 'user-agent');
    return `${ctx.clientIp} - - [${this.clock.clfNow()}] "${clfEscape(ctx.method)} ${clfEscape(uri)} HTTP/${ctx.req.httpVersion}" ${m.status} ${m.bytesOut === 0 ? '-' : m.bytesOut} "${referer === '' ? '-' : clfEscape(referer)}" "${agent === '' ? '-' : clfEscape(agent)}"\n`;
  }

  /**
   * Opens the file again by name (after logrotate moved it). stdout needs nothing. When the path
   * cannot be opened, lines keep going to the current file and the error is logged.
   */
  reopen(): void {
    if (this.output === 'stdout') return;
    // Lines of requests that finished before the signal belong to the old file.
    this.sink.flush();
    let fd: number;
    try {
      fd = openOutput(this.output);
    } catch (err) {
      this.log?.('error', 'access log not reopened; lines keep going to the previous file', {
        error: (err as Error).message,
      });
      return;
    }
    const previous = this.sink;
    this.sink = this.sinkFor(fd);
    const ending: Promise<void> = previous.end().then(() => {
      this.retiring = this.retiring.filter((p) => p !== ending);
    });
    this.retiring.push(ending);
  }

  /** Writes out what is buffered and releases the file. */
  async close(): Promise<void> {
    await Promise.all([this.sink.end(), ...this.retiring]);
  }
}

/**
 * `String(Math.round(ms * 1000) / 1000)`, printed from integers: whole microseconds are small
 * integers, which print from V8's number-string cache, where a fraction goes through the
 * shortest-digits conversion (a fifth of the line's cost). Exact for durations under 35 minutes;
 * longer or negative ones take the plain conversion.
 */
function millis(ms: number): string {
  const us = Math.round(ms * 1000);
  if (!(us > 0 && us < 2 ** 31)) return String(Math.round(ms * 1000) / 1000);
  const frac = us % 1000;
  const whole = (us - frac) / 1000;
  if (frac === 0) return String(whole);
  if (frac % 100 === 0) return `${whole}.${frac / 100}`;
  if (frac % 10 === 0) return `${whole}.${frac < 100 ? '0' : ''}${frac / 10}`;
  return `${whole}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`;
}
