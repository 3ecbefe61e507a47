import { randomFillSync } from 'node:crypto';
import type { RequestContext, TraceContext } from '../core/context.js';
import type { LogFn } from './logger.js';

/** The `tracing` config section, as written (validated by the schema). */
export interface TracingSettings {
  enabled?: boolean;
  serviceName?: string;
  sampleRatio?: number;
  otlp?: { endpoint: string; headers?: Record<string, string> };
}

const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';
const HEX = /^[0-9a-f]+$/;

export interface ParsedTraceparent {
  traceId: string;
  parentSpanId: string;
  sampled: boolean;
}

/**
 * Parses a W3C `traceparent` (Trace Context level 1, §3.2). Unknown future versions are read
 * by their first four fields, as the spec asks; anything malformed yields undefined, and the
 * proxy then starts a new trace instead of propagating garbage.
 */
export function parseTraceparent(value: string): ParsedTraceparent | undefined {
  if (value.length < 55) return undefined;
  const version = value.slice(0, 2);
  if (version === 'ff' || !HEX.test(version)) return undefined;
  if (version === '00' && value.length !== 55) return undefined;
  if (value.length > 55 && value[55] !== '-') return undefined;
  if (value[2] !== '-' || value[35] !== '-' || value[52] !== '-') return undefined;
  const traceId = value.slice(3, 35);
  const parentSpanId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!HEX.test(traceId) || !HEX.test(parentSpanId) || !HEX.test(flags)) return undefined;
  if (traceId === ZERO_TRACE || parentSpanId === ZERO_SPAN) return undefined;
  return { traceId, parentSpanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/**
 * Random ids from a pooled buffer: one randomFillSync per 256 ids instead of one per request.
 * Ids only need to be unique, not secret, but crypto randomness keeps them unpredictable anyway.
 */
class IdSource {
  private readonly pool = Buffer.allocUnsafe(4096);
  private offset = this.pool.length;

  hex(bytes: number): string {
    if (this.offset + bytes > this.pool.length) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const id = this.pool.toString('hex', this.offset, this.offset + bytes);
    this.offset += bytes;
    return id;
  }
}

interface SpanRecord {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** Milliseconds since the epoch (fractional). */
  startMs: number;
  endMs: number;
  status: number;
  method: string;
  path: string;
  host: string;
  route: string;
  upstream: string;
  clientIp: string;
  scheme: string;
}

const MAX_QUEUE = 4096;
const BATCH = 512;
const FLUSH_INTERVAL_MS = 1000;
const EXPORT_TIMEOUT_MS = 5000;

/**
 * Batches finished server spans and posts them as OTLP/HTTP JSON (`/v1/traces`). Never blocks a
 * request: spans are queued, and a full queue drops the newest ones (counted) rather than grow.
 */
export class OtlpExporter {
  readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly serviceName: string;
  private readonly version: string;
  private readonly log: LogFn;
  private queue: SpanRecord[] = [];
  private readonly timer: NodeJS.Timeout;
  private inFlight: Promise<void> | null = null;
  private lastErrorLog = 0;
  dropped = 0;
  exported = 0;
  failed = 0;

  constructor(
    otlp: { endpoint: string; headers?: Record<string, string> },
    serviceName: string,
    version: string,
    log: LogFn,
  ) {
    const base = otlp.endpoint.replace(/\/+$/, '');
    this.url = base.endsWith('/v1/traces') ? base : `${base}/v1/traces`;
    this.headers = { 'content-type': 'application/json', ...(otlp.headers ?? {}) };
    this.serviceName = serviceName;
    this.version = version;
    this.log = log;
    this.timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  add(span: SpanRecord): void {
    if (this.queue.length >= MAX_QUEUE) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= BATCH && this.inFlight === null) void this.flush();
  }

  /** Sends what is queued (one request at a time); resolves when that export is done. */
  async flush(): Promise<void> {
    if (this.inFlight !== null) await this.inFlight;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.inFlight = this.send(batch).finally(() => {
      this.inFlight = null;
    });
    await this.inFlight;
  }

  private async send(batch: SpanRecord[]): Promise<void> {
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: this.headers,
        body: JSON.stringify(this.payload(batch)),
        signal: AbortSignal.timeout(EXPORT_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) throw new Error(`the collector answered ${res.status}`);
      this.exported += batch.length;
    } catch (err) {
      this.failed += batch.length;
      const now = Date.now();
      // One line a minute at most: a collector that is down must not flood the process log.
      if (now - this.lastErrorLog > 60_000) {
        this.lastErrorLog = now;
        this.log('warn', 'tracing: span export failed; spans are dropped until it recovers', {
          endpoint: this.url,
          error: (err as Error).message,
        });
      }
    }
  }

  private payload(batch: SpanRecord[]): unknown {
    return {
      resourceSpans: [
        {
          resource: {
            attributes: [
              str('service.name', this.serviceName),
              str('service.version', this.version),
              str('telemetry.sdk.name', 'switchyard'),
            ],
          },
          scopeSpans: [
            {
              scope: { name: 'switchyard', version: this.version },
              spans: batch.map((s) => ({
                traceId: s.traceId,
                spanId: s.spanId,
                ...(s.parentSpanId === '' ? {} : { parentSpanId: s.parentSpanId }),
                name: s.name,
                kind: 2, // SPAN_KIND_SERVER
                startTimeUnixNano: unixNanos(s.startMs),
                endTimeUnixNano: unixNanos(s.endMs),
                attributes: [
                  str('http.request.method', s.method),
                  int('http.response.status_code', s.status),
                  str('url.path', s.path),
                  str('url.scheme', s.scheme),
                  str('server.address', s.host),
                  str('http.route', s.route),
                  str('client.address', s.clientIp),
                  ...(s.upstream === '' ? [] : [str('switchyard.upstream', s.upstream)]),
                ],
                // STATUS_CODE_ERROR for server errors, UNSET otherwise (OTel HTTP conventions).
                status: s.status >= 500 || s.status === 0 ? { code: 2 } : { code: 0 },
              })),
            },
          ],
        },
      ],
    };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

function str(key: string, value: string) {
  return { key, value: { stringValue: value } };
}

function int(key: string, value: number) {
  return { key, value: { intValue: String(value) } };
}

/** Milliseconds (fractional) to a uint64 nanosecond string without losing precision. */
function unixNanos(ms: number): string {
  const whole = Math.floor(ms);
  const fraction = Math.round((ms - whole) * 1e6);
  return (BigInt(whole) * 1_000_000n + BigInt(fraction)).toString();
}

/**
 * W3C trace context for every request (on by default): keeps the caller's trace id, or starts a
 * trace; names the proxy's own span in the `traceparent` sent upstream; `tracestate` passes
 * through untouched. With an OTLP endpoint, sampled server spans are exported.
 */
export class Tracing {
  private readonly ids = new IdSource();
  private readonly sampleRatio: number;
  readonly exporter: OtlpExporter | null;

  constructor(settings: TracingSettings, version: string, log: LogFn) {
    this.sampleRatio = settings.sampleRatio ?? 1;
    this.exporter = settings.otlp
      ? new OtlpExporter(settings.otlp, settings.serviceName ?? 'switchyard', version, log)
      : null;
  }

  /**
   * Called at request start: the context's trace fields and upstream traceparent are filled in
   * when first read (RequestContext.traceInit).
   */
  start(ctx: RequestContext): void {
    ctx.traceInit = this.fill;
  }

  private readonly fill = (ctx: RequestContext): TraceContext => {
    const incoming = ctx.req.headers.traceparent;
    const parent = typeof incoming === 'string' ? parseTraceparent(incoming) : undefined;
    let traceId: string;
    let parentSpanId = '';
    let sampled: boolean;
    if (parent !== undefined) {
      traceId = parent.traceId;
      parentSpanId = parent.parentSpanId;
      // Parent-based sampling: the caller's decision wins, so traces are never cut in half.
      sampled = parent.sampled;
    } else {
      traceId = this.ids.hex(16);
      if (traceId === ZERO_TRACE) traceId = this.ids.hex(16);
      sampled = this.sampleRatio >= 1 || Math.random() < this.sampleRatio;
    }
    let spanId = this.ids.hex(8);
    if (spanId === ZERO_SPAN) spanId = this.ids.hex(8);
    const traceparent = `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
    return { traceId, spanId, parentSpanId, sampled, traceparent };
  };

  /** Called at request end with the final status. */
  end(ctx: RequestContext, status: number, durationMs: number): void {
    if (this.exporter === null) return;
    const trace = ctx.trace;
    if (!trace.sampled || trace.spanId === '') return;
    const startMs = performance.timeOrigin + ctx.startTime;
    this.exporter.add({
      traceId: trace.traceId,
      spanId: trace.spanId,
      parentSpanId: trace.parentSpanId,
      name: ctx.routeName === '' ? ctx.method : `${ctx.method} ${ctx.routeName}`,
      startMs,
      endMs: startMs + durationMs,
      status,
      method: ctx.method,
      path: ctx.path,
      host: ctx.hostname,
      route: ctx.routeName,
      upstream: ctx.upstreamName,
      clientIp: ctx.clientIp,
      scheme: ctx.scheme,
    });
  }

  async close(): Promise<void> {
    await this.exporter?.close();
  }
}
