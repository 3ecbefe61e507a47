import type { ClientRequest } from '../core/context.js';

/**
 * The listener's maxBodySize for request bodies whose length is not declared up front
 * (chunked on HTTP/1.1, an HTTP/2 stream without content-length): counted as they stream, never
 * buffered. A declared Content-Length is checked before any of the body is read.
 */

export class BodyTooLargeError extends Error {
  constructor() {
    super('request body exceeds maxBodySize');
  }
}

/**
 * Whether the request has a body of unknown length: chunked (HTTP/1.1 forbids Content-Length
 * with it), or an HTTP/2 stream not ended with its headers and without content-length.
 */
export function hasUndeclaredBody(req: ClientRequest): boolean {
  const headers = req.headers;
  if (headers['content-length'] !== undefined) return false;
  if (headers['transfer-encoding'] !== undefined) return true;
  return (
    req.httpVersionMajor === 2 &&
    !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders
  );
}

/**
 * Counts a body of unknown length as it streams and throws BodyTooLargeError past the limit,
 * so a chunked upload is cut at maxBodySize without being buffered.
 */
export async function* limitBody(body: AsyncIterable<Buffer>, max: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > max) throw new BodyTooLargeError();
    yield chunk;
  }
}
