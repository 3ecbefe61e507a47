import type { RequestContext } from '../../core/context.js';
import type { Part } from './rules.js';

/** Bodies larger than this are not inspected (they stream through untouched). */
export const MAX_INSPECTED_BODY = 64 * 1024;

const PERCENT = /%([0-9a-fA-F]{2})/g;
const ENTITY = /&#(x[0-9a-f]+|[0-9]+);?/gi;
const NAMED_ENTITIES: Record<string, string> = {
  '&lt;': '<',
  '&gt;': '>',
  '&quot;': '"',
  '&apos;': "'",
  '&#39;': "'",
  '&amp;': '&',
  '&colon;': ':',
  '&lpar;': '(',
  '&rpar;': ')',
  '&tab;': '\t',
  '&newline;': '\n',
};
const NAMED = /&(?:lt|gt|quot|apos|amp|colon|lpar|rpar|tab|newline);/gi;

/**
 * The text rules see: percent-decoded (twice, so double encoding does not hide a payload),
 * HTML entities resolved, SQL inline comments turned into spaces, lowercased. Malformed escapes
 * are left as they are rather than failing.
 */
export function normalizeValue(text: string, plusIsSpace: boolean): string {
  let out = plusIsSpace ? text.replace(/\+/g, ' ') : text;
  for (let round = 0; round < 2 && out.includes('%'); round++) {
    out = out.replace(PERCENT, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  }
  if (out.includes('&')) {
    out = out
      .replace(ENTITY, (_, code: string) =>
        String.fromCodePoint(
          Math.min(
            code[0] === 'x' || code[0] === 'X' ? parseInt(code.slice(1), 16) : Number(code),
            0x10ffff,
          ),
        ),
      )
      .replace(NAMED, (m) => NAMED_ENTITIES[m.toLowerCase()] ?? m);
  }
  if (out.includes('/*')) out = out.replace(/\/\*(?!!)[\s\S]*?\*\//g, ' ');
  return out.toLowerCase();
}

/** Query or form body: every name and value decoded, one per line. */
function formText(query: string): string {
  if (query === '') return '';
  const parts: string[] = [];
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq === -1) parts.push(normalizeValue(pair, true));
    else
      parts.push(normalizeValue(pair.slice(0, eq), true), normalizeValue(pair.slice(eq + 1), true));
  }
  return parts.join('\n');
}

/**
 * The parts of one request, computed on first use and kept for the other rules: a request with
 * no query or cookies pays nothing for rules on them.
 */
export class RequestParts {
  private readonly ctx: RequestContext;
  private readonly cache = new Map<Part, string>();
  body: Buffer | null = null;
  bodyType = '';

  constructor(ctx: RequestContext) {
    this.ctx = ctx;
  }

  /** Raw (undecoded) text for custom rules on uri/path/query. */
  raw(part: Part): string {
    const ctx = this.ctx;
    if (part === 'uri') return ctx.query === '' ? ctx.path : `${ctx.path}?${ctx.query}`;
    if (part === 'path') return ctx.path;
    if (part === 'query') return ctx.query;
    return this.get(part);
  }

  get(part: Part): string {
    let value = this.cache.get(part);
    if (value === undefined) {
      value = this.compute(part);
      this.cache.set(part, value);
    }
    return value;
  }

  private compute(part: Part): string {
    const ctx = this.ctx;
    switch (part) {
      case 'path':
        return normalizeValue(ctx.path, false);
      case 'query':
        return formText(ctx.query);
      case 'uri':
        return normalizeValue(ctx.query === '' ? ctx.path : `${ctx.path}?${ctx.query}`, false);
      case 'args': {
        const query = this.get('query');
        const body = this.get('body');
        let text = this.get('path');
        if (query !== '') text += `\n${query}`;
        if (body !== '') text += `\n${body}`;
        return text;
      }
      case 'body': {
        if (this.body === null || this.body.length === 0) return '';
        const text = this.body.toString('latin1');
        return this.bodyType.includes('x-www-form-urlencoded')
          ? formText(text)
          : normalizeValue(text, false);
      }
      case 'headers': {
        const raw = ctx.req.rawHeaders;
        const lines: string[] = [];
        for (let i = 0; i < raw.length; i += 2)
          lines.push(`${raw[i]}: ${raw[i + 1]}`.toLowerCase());
        return lines.join('\n');
      }
      case 'cookies': {
        const cookie = ctx.req.headers.cookie;
        return cookie === undefined ? '' : normalizeValue(cookie, false);
      }
      case 'ua': {
        const ua = ctx.req.headers['user-agent'];
        return ua === undefined ? '' : ua.toLowerCase();
      }
      case 'method':
        return ctx.method.toLowerCase();
    }
  }
}

/** Media types whose bodies are inspected. */
export function inspectableBody(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const t = contentType.toLowerCase();
  return (
    t.startsWith('application/x-www-form-urlencoded') ||
    t.startsWith('application/json') ||
    t.startsWith('text/') ||
    t.startsWith('application/xml') ||
    t.includes('+json') ||
    t.includes('+xml')
  );
}

/**
 * Reads a small body with a known length and puts it back into the request stream, so the
 * proxy still streams it upstream unchanged. Resolves null when the client went away first.
 */
export function peekBody(ctx: RequestContext, length: number): Promise<Buffer | null> {
  const req = ctx.req;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (complete: boolean) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.pause();
      const body = Buffer.concat(chunks);
      if (body.length > 0 && !req.readableEnded) req.unshift(body);
      resolve(complete ? body : null);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= length) finish(true);
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(false);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onClose);
  });
}
