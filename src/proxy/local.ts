import type { OutgoingHeaders, RequestContext } from '../core/context.js';
import type { Handler } from '../core/filter.js';
import { compileTemplate } from '../core/template.js';
import { BodyTooLargeError, hasUndeclaredBody, limitBody } from './body-limit.js';

/**
 * The listener's maxBodySize holds on local routes as on upstream ones: a declared
 * Content-Length past it is answered 413 (with Connection: close, so the body is never read).
 */
function refuseDeclaredBody(ctx: RequestContext): boolean {
  const declared = ctx.req.headers['content-length'];
  if (declared === undefined || !(Number(declared) > ctx.listener.maxBodySize)) return false;
  ctx.sendError('BODY_TOO_LARGE');
  return true;
}

/**
 * A body of unknown length (chunked) is read and thrown away before the answer, counted as it
 * streams: one that passes maxBodySize is answered 413 and the connection closed, as on upstream
 * routes; one within it gets the route's answer and the connection stays usable. A smaller
 * declared body is never read: node discards it after the answer.
 */
async function answerAfterBody(
  ctx: RequestContext,
  answer: (ctx: RequestContext) => void,
): Promise<void> {
  try {
    for await (const _chunk of limitBody(ctx.req, ctx.listener.maxBodySize)) {
      // Discarded: these routes have no use for the body.
    }
  } catch (err) {
    // Anything else is the client going away mid-body: there is no one left to answer.
    if (err instanceof BodyTooLargeError) ctx.sendError('BODY_TOO_LARGE');
    return;
  }
  answer(ctx);
}

/** A local route's handler: `answer`, once the request's body is known to fit maxBodySize. */
function answerWithinBodyLimit(answer: (ctx: RequestContext) => void): Handler {
  return (ctx: RequestContext) => {
    if (refuseDeclaredBody(ctx)) return;
    if (hasUndeclaredBody(ctx.req)) return answerAfterBody(ctx, answer);
    answer(ctx);
  };
}

/** Terminal for `redirect`: the Location is a template, e.g. "https://{host}{uri}". */
export function createRedirectHandler(location: string, status: number): Handler {
  const template = compileTemplate(location);
  const answer = (ctx: RequestContext) => {
    const target = template(ctx);
    ctx.respond(
      status,
      { location: target, 'content-type': 'text/plain; charset=utf-8' },
      `Redirecting to ${target}\n`,
    );
  };
  return answerWithinBodyLimit(answer);
}

/** Terminal for `respond`: a fixed answer; header values may use placeholders. */
export function createRespondHandler(
  status: number,
  body: string,
  headers: Record<string, string>,
): Handler {
  const payload = Buffer.from(body);
  const compiled = Object.entries(headers).map(
    ([name, value]) => [name.toLowerCase(), compileTemplate(value)] as const,
  );
  const hasType = compiled.some(([name]) => name === 'content-type');
  const answer = (ctx: RequestContext) => {
    const out: OutgoingHeaders = {};
    for (const [name, template] of compiled) out[name] = template(ctx);
    if (!hasType && payload.length > 0) out['content-type'] = 'text/plain; charset=utf-8';
    ctx.respond(status, out, payload);
  };
  return answerWithinBodyLimit(answer);
}
