import type { OutgoingHeaders, RequestContext } from '../core/context.js';
import type { Handler } from '../core/filter.js';
import { compileTemplate } from '../core/template.js';

/**
 * The listener's maxBodySize holds on local routes as on upstream ones: a declared
 * Content-Length past it is answered 413 (with Connection: close, so the body is never read).
 * A body these routes do not read (chunked included) is discarded by node after the answer,
 * never buffered; requestTimeout and the minimum body rate still bound it.
 */
function refuseDeclaredBody(ctx: RequestContext): boolean {
  const declared = ctx.req.headers['content-length'];
  if (declared === undefined || !(Number(declared) > ctx.listener.maxBodySize)) return false;
  ctx.sendError('BODY_TOO_LARGE');
  return true;
}

/** Terminal for `redirect`: the Location is a template, e.g. "https://{host}{uri}". */
export function createRedirectHandler(location: string, status: number): Handler {
  const template = compileTemplate(location);
  return (ctx: RequestContext) => {
    if (refuseDeclaredBody(ctx)) return;
    const target = template(ctx);
    ctx.respond(
      status,
      { location: target, 'content-type': 'text/plain; charset=utf-8' },
      `Redirecting to ${target}\n`,
    );
  };
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
  return (ctx: RequestContext) => {
    if (refuseDeclaredBody(ctx)) return;
    const out: OutgoingHeaders = {};
    for (const [name, template] of compiled) out[name] = template(ctx);
    if (!hasType && payload.length > 0) out['content-type'] = 'text/plain; charset=utf-8';
    ctx.respond(status, out, payload);
  };
}
