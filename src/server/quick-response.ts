import type http from 'node:http';
import type net from 'node:net';

import type { OutgoingHeaders } from '../core/context.js';
import {
  closeHook0,
  closeHook1,
  closeHook2,
  endWithSerializedHead,
  nodeResponseOf,
  onceClosed,
  type CloseHook,
  type CloseHookSlots,
  type SerializedHeadResponse,
} from '../core/http.js';
import type { QuickReply, QuickRequest, QuickResponse } from '../core/quick-answer.js';

/** node's response as the HTTP/1.1 loop makes it (EngineResponse). */
export type NodeResponse = http.ServerResponse & SerializedHeadResponse & CloseHookSlots;

/** What a quick response needs from its connection (the HTTP/1.1 loop's Connection). */
export interface QuickResponseOwner {
  readonly socket: net.Socket;
  /**
   * Writes a complete answer now: `lead` (the status line and first fields, encoded) or, without
   * it, the status line for `status`; then `fields`, the loop's Connection fields and `body`.
   */
  writeQuick(
    keepAlive: boolean,
    status: number,
    fields: string,
    body: Buffer | undefined,
    lead: Buffer | undefined,
    written?: () => void,
  ): void;
  /** The request is kept: it is in flight on the connection, with no node objects yet. */
  quickKept(res: LoopQuickResponse): void;
  /** The kept request's answer is being written (nothing more to make for it). */
  quickAnswered(res: LoopQuickResponse): void;
  /** ... and has been written (or the connection failed under it): as a finished response. */
  quickWritten(res: LoopQuickResponse): void;
  /** node's IncomingMessage and ServerResponse for the kept request, made now, in its place. */
  makeNodeResponse(res: LoopQuickResponse): NodeResponse;
}

/**
 * The loop's QuickResponse (core/quick-answer.ts). A kept request that the upstream answers in
 * one read ends here with one serialized write; anything else makes node's objects, exactly as
 * the usual path would have made them for this request, and forwards to them. The connection
 * makes them too as soon as anything else happens on it (another request, a FIN, bad bytes, an
 * error), so a kept request never has to keep its place in line by itself.
 */
export class LoopQuickResponse implements QuickResponse {
  [closeHook0]: CloseHook | null = null;
  [closeHook1]: CloseHook | null = null;
  [closeHook2]: CloseHook | null = null;
  readonly request: QuickRequest;
  readonly keepAlive: boolean;
  kept = false;
  /** Answered or closed without node's objects. */
  private ended = false;
  private status = 200;
  private node: NodeResponse | null = null;
  private readonly owner: QuickResponseOwner;

  constructor(owner: QuickResponseOwner, request: QuickRequest, keepAlive: boolean) {
    this.owner = owner;
    this.request = request;
    this.keepAlive = keepAlive;
  }

  send(reply: QuickReply): void {
    this.ended = true;
    this.status = reply.status;
    this.owner.writeQuick(this.keepAlive, reply.status, reply.fields, reply.body, reply.lead);
  }

  keep(): void {
    this.kept = true;
    this.owner.quickKept(this);
  }

  [endWithSerializedHead](
    status: number,
    fields: string,
    body: Buffer | undefined,
    lead?: Buffer,
  ): boolean {
    const node = this.node;
    if (node !== null) return node[endWithSerializedHead](status, fields, body, lead);
    if (!this.kept || this.ended || this.owner.socket.destroyed) return false;
    this.ended = true;
    this.status = status;
    this.owner.quickAnswered(this);
    // Closed once written, as node's response closes after 'finish': a stop that closes idle
    // connections must not cut an answer still queued on the socket. The callback runs even
    // when the socket is destroyed first (with an error), so the hooks always run.
    this.owner.writeQuick(this.keepAlive, status, fields, body, lead, () => {
      this.owner.quickWritten(this);
      runCloseHooks(this);
    });
    return true;
  }

  /** The connection closed before the kept request was answered (node's objects never made). */
  connectionClosed(): void {
    if (this.ended || this.node !== null) return;
    this.ended = true;
    runCloseHooks(this);
  }

  /** node's response for this request, made on first need; the exchange goes on through it. */
  nodeResponse(): NodeResponse {
    if (this.node !== null) return this.node;
    if (!this.kept) throw new Error('a quick response was written to before it was kept');
    const node = this.owner.makeNodeResponse(this);
    this.node = node;
    // Its close is this response's close: the hooks set here run then.
    onceClosed(node, () => runCloseHooks(this));
    return node;
  }

  get [nodeResponseOf](): http.ServerResponse | null {
    return this.node;
  }

  writeHead(status: number, headers?: OutgoingHeaders): unknown {
    return this.nodeResponse().writeHead(status, headers);
  }

  write(chunk: Buffer | string): boolean {
    return this.nodeResponse().write(chunk);
  }

  end(chunk?: Buffer | string): unknown {
    return this.nodeResponse().end(chunk);
  }

  addTrailers(headers: Record<string, string>): void {
    this.nodeResponse().addTrailers(headers);
  }

  writeEarlyHints(hints: Record<string, string | string[]>): void {
    this.nodeResponse().writeEarlyHints(hints);
  }

  once(event: 'drain' | 'close', listener: () => void): this {
    // A close watcher (a queued rate-limited request, a cache fill) needs no node objects while
    // a close-hook slot is free (slots fill in order, so the last one tells).
    if (event === 'close' && this.node === null && !this.ended && this[closeHook2] === null) {
      onceClosed(this, listener);
      return this;
    }
    this.nodeResponse().once(event, listener);
    return this;
  }

  destroy(error?: Error): this {
    if (this.node === null && this.ended) return this;
    this.nodeResponse().destroy(error);
    return this;
  }

  getHeader(name: string): number | string | string[] | undefined {
    return this.node?.getHeader(name);
  }

  get headersSent(): boolean {
    return this.node !== null ? this.node.headersSent : this.ended;
  }

  get writableEnded(): boolean {
    return this.node !== null ? this.node.writableEnded : this.ended;
  }

  get destroyed(): boolean {
    return this.node !== null ? this.node.destroyed : this.ended || this.owner.socket.destroyed;
  }

  get statusCode(): number {
    return this.node !== null ? this.node.statusCode : this.status;
  }

  get writableLength(): number {
    return this.node !== null ? this.node.writableLength : 0;
  }

  get socket(): net.Socket | null {
    return this.node !== null ? this.node.socket : this.owner.socket;
  }
}

/** Runs a response's close hooks (core/http.ts) once, in order, with the response as `this`. */
export function runCloseHooks(res: CloseHookSlots): void {
  const hook0 = res[closeHook0];
  if (hook0 !== null) {
    res[closeHook0] = null;
    hook0.call(res);
  }
  const hook1 = res[closeHook1];
  if (hook1 !== null) {
    res[closeHook1] = null;
    hook1.call(res);
  }
  const hook2 = res[closeHook2];
  if (hook2 !== null) {
    res[closeHook2] = null;
    hook2.call(res);
  }
}
