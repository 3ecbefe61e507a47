import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { ResponseWriter } from './context.js';
import type { CloseHookSlots, SerializedHeadResponse } from './http.js';

/**
 * Quick answers: a GET or HEAD whose whole answer is already in memory (a fresh cache hit) is
 * answered from inside the HTTP/1.1 loop's parser callback, before node's IncomingMessage and
 * ServerResponse exist. Those two streams, their events and the ticks between them are most of
 * what such a request costs in JavaScript; the answer itself is one write of ready bytes.
 *
 * The loop offers every plain request (GET or HEAD, no body, no Expect, no repeated field, no
 * response still owed on the connection) to the server's answerer; the listener and the runtime
 * make the same checks, routing and events as for any request, and ask the route's first filter.
 * Whoever declines, at any step, leaves the request to the usual path, which then does all of it
 * again with node's objects: a quick answer must be byte for byte what that path would write.
 *
 * A request can also be kept: a route with an upstream takes it with its QuickResponse, runs its
 * chain and answers it later (an upstream's answer, complete in one read, leaves as one write).
 * node's objects are made only if the response needs them after all (it streams, an error page,
 * another request pipelined behind it), and then the exchange goes on through them.
 */

/**
 * The request as the loop parsed it: the fields of node's IncomingMessage that the listener's
 * checks, routing, request ids, cache keys and the access log read. Not a stream: there is no
 * body, and nothing may listen for events on it.
 */
export interface QuickRequest {
  readonly method: string;
  /** The request target; the listener's normalisation may rewrite it, as it does req.url. */
  url: string;
  /** Lowercased names, one string each (a request with a repeated field is not offered). */
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly httpVersion: string;
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  readonly socket: Socket;
  readonly complete: true;
}

/**
 * A complete answer: `lead` is the start of the head already encoded (status line and the fields
 * that never change), `fields` the rest as `name: value\r\n` lines, checked against RFC 9110's
 * field syntax, with Content-Length and without Connection. A filter's reply has no
 * X-Request-Id: the runtime gives the request its id only once there is an answer, and adds the
 * field last, as it does to every response. The loop adds Connection and Keep-Alive.
 */
export interface QuickReply {
  status: number;
  lead: Buffer;
  fields: string;
  body: Buffer | undefined;
}

/**
 * The response the loop gives an offered request. An answerer either sends a complete reply at
 * once (`send`), or keeps the request (`keep`) and answers it later through the ResponseWriter
 * methods. Until `keep`, nothing but `send` may be used. After it:
 * - `endWithSerializedHead` answers without node's objects, when nothing is owed before it;
 * - every other method makes node's IncomingMessage and ServerResponse for the request (as the
 *   usual path would have) and continues through them;
 * - the close hooks run once the answer is written or the connection closed, never during the
 *   `quickAnswer` call that kept the request.
 */
export interface QuickResponse extends ResponseWriter, SerializedHeadResponse, CloseHookSlots {
  /** Writes a complete reply on the request's connection, at once. */
  send(reply: QuickReply): void;
  /** The answerer takes the request; it must be answered (or closed) through this response. */
  keep(): void;
  readonly kept: boolean;
}

/** What the loop asks (the listener). */
export interface QuickAnswerer {
  /**
   * Whether any request could be answered at once now (the current config has a route that
   * can). Read before the loop builds a QuickRequest, so other configs pay one property read.
   */
  readonly quickReady: boolean;
  /**
   * Answers `req` through `res` (sent at once, or kept) and returns true, or returns false having
   * written nothing.
   */
  quickAnswer(req: QuickRequest, res: QuickResponse): boolean;
}

/** Where an HTTP/1.1 loop's server object keeps its answerer (set by the listener). */
export const quickAnswerer = Symbol('switchyard.quickAnswerer');

export interface QuickAnswerServer {
  [quickAnswerer]?: QuickAnswerer;
}
