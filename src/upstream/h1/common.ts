/**
 * Errors and the shared coarse timer of the HTTP/1.1 upstream client. Error codes follow undici's
 * (and llhttp's `HPE_*` for parse errors) so `proxy/forward.ts` maps them the same way:
 * `UND_ERR_*_TIMEOUT` become 504, everything else 502.
 */
export class H1ClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export class ConnectTimeoutError extends H1ClientError {
  constructor() {
    super('UND_ERR_CONNECT_TIMEOUT', 'connect timeout');
  }
}

export class HeadersTimeoutError extends H1ClientError {
  constructor() {
    super('UND_ERR_HEADERS_TIMEOUT', 'headers timeout');
  }
}

export class BodyTimeoutError extends H1ClientError {
  constructor() {
    super('UND_ERR_BODY_TIMEOUT', 'body timeout');
  }
}

/** A malformed upstream response (the code names the rule, like llhttp's). */
export class ResponseParseError extends H1ClientError {}

/** The upstream closed or reset the connection before the response was complete. */
export class SocketClosedError extends H1ClientError {
  constructor(message = 'upstream closed the connection before the response ended') {
    super('ECONNRESET', message);
  }
}

export class RequestAbortedError extends H1ClientError {
  constructor() {
    super('UND_ERR_ABORTED', 'request aborted');
  }
}

export class PoolClosedError extends H1ClientError {
  constructor(destroyed: boolean) {
    super(
      destroyed ? 'UND_ERR_DESTROYED' : 'UND_ERR_CLOSED',
      destroyed ? 'the pool was destroyed' : 'the pool is closed',
    );
  }
}

export class InvalidRequestError extends H1ClientError {
  constructor(message: string) {
    super('UND_ERR_INVALID_ARG', message);
  }
}

export class ContentLengthMismatchError extends H1ClientError {
  constructor() {
    super(
      'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
      'request body length does not match content-length',
    );
  }
}

/** Something with a deadline checked by the shared sweep (a connection). 0 = none. */
export interface Expiring {
  deadline: number;
  expire(now: number): void;
}

/**
 * One interval for every connection of every pool instead of a timer per request: arming a
 * deadline is a field write, and the sweep (every `tick` ms, unref'd, stopped when nothing is
 * tracked) fires the expired ones. Timeouts are therefore late by up to one tick; the tick
 * shrinks to a quarter of the smallest timeout seen (10 ms at least, 250 ms at most).
 */
const tracked = new Set<Expiring>();
let tick = 250;
let sweeper: NodeJS.Timeout | null = null;

function sweep(): void {
  if (tracked.size === 0) {
    clearInterval(sweeper!);
    sweeper = null;
    return;
  }
  const now = Date.now();
  for (const item of tracked) {
    if (item.deadline !== 0 && now >= item.deadline) item.expire(now);
  }
}

function startSweeper(): void {
  sweeper = setInterval(sweep, tick);
  sweeper.unref();
}

export function track(item: Expiring): void {
  tracked.add(item);
  if (sweeper === null) startSweeper();
}

export function untrack(item: Expiring): void {
  tracked.delete(item);
}

/** Makes sure the sweep is fine enough for a timeout of `ms`. */
export function noteTimeout(ms: number): void {
  if (ms <= 0) return;
  const wanted = Math.max(10, Math.min(250, Math.floor(ms / 4)));
  if (wanted >= tick) return;
  tick = wanted;
  if (sweeper !== null) {
    clearInterval(sweeper);
    startSweeper();
  }
}
