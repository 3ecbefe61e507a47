/**
 * Every error a client can see, as a table of codes. The body never names an upstream, a server
 * address or an internal message: only the status text and the request id, so an error page
 * reveals nothing about the topology behind the proxy.
 */

export interface ErrorSpec {
  status: number;
  /** Short, public text for the response body. */
  text: string;
}

export const ERRORS = {
  BAD_REQUEST: { status: 400, text: 'Bad Request' },
  UNAUTHORIZED: { status: 401, text: 'Unauthorized' },
  FORBIDDEN: { status: 403, text: 'Forbidden' },
  ROUTE_NOT_FOUND: { status: 404, text: 'Not Found' },
  REQUEST_TIMEOUT: { status: 408, text: 'Request Timeout' },
  BODY_TOO_LARGE: { status: 413, text: 'Payload Too Large' },
  URI_TOO_LONG: { status: 414, text: 'URI Too Long' },
  RATE_LIMITED: { status: 429, text: 'Too Many Requests' },
  HEADERS_TOO_LARGE: { status: 431, text: 'Request Header Fields Too Large' },
  INTERNAL: { status: 500, text: 'Internal Server Error' },
  UPSTREAM_FAILED: { status: 502, text: 'Bad Gateway' },
  NO_HEALTHY_UPSTREAM: { status: 503, text: 'Service Unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, text: 'Gateway Timeout' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error that maps to a client-facing status. `cause` is for logs only, never for the client. */
export class ProxyError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ?? ERRORS[code].text, options);
    this.name = 'ProxyError';
    this.code = code;
    this.status = ERRORS[code].status;
  }
}

export function errorBody(code: ErrorCode, requestId: string): string {
  const spec = ERRORS[code];
  return `${spec.status} ${spec.text}\nrequest id: ${requestId}\n`;
}
