import type { RequestContext } from './context.js';

/**
 * Placeholder templates such as "https://{host}{uri}", compiled once at config load into a
 * function, so a request pays only for the string it builds. `{{` and `}}` are literal braces.
 */
export type Template = (ctx: RequestContext) => string;

type Part = string | Template;

const HEADER_PREFIX = 'header.';
const COOKIE_PREFIX = 'cookie.';

export const PLACEHOLDERS = [
  'host',
  'path',
  'query',
  'uri',
  'scheme',
  'method',
  'client_ip',
  'request_id',
  'tls_client_subject',
] as const;

function joinHeader(value: string | string[] | undefined): string {
  if (value === undefined) return '';
  return typeof value === 'string' ? value : value.join(', ');
}

interface PeerCertificateSource {
  authorized?: boolean;
  getPeerX509Certificate?: () => { subject: string } | undefined;
}

/**
 * The subject of the client certificate, verified against the listener's clientAuth CA, as
 * `CN=alice,O=Example` (its fields in certificate order); '' without one or when unverified.
 */
function tlsClientSubject(ctx: RequestContext): string {
  const socket = ctx.req.socket as unknown as PeerCertificateSource | null;
  if (!socket || socket.authorized !== true || socket.getPeerX509Certificate === undefined)
    return '';
  const cert = socket.getPeerX509Certificate();
  return cert === undefined ? '' : cert.subject.split('\n').join(',');
}

function placeholder(name: string): Template {
  switch (name) {
    case 'host':
      return (ctx) => ctx.host;
    case 'path':
      return (ctx) => ctx.path;
    case 'query':
      return (ctx) => ctx.query;
    case 'uri':
      return (ctx) => (ctx.query === '' ? ctx.path : `${ctx.path}?${ctx.query}`);
    case 'scheme':
      return (ctx) => ctx.scheme;
    case 'method':
      return (ctx) => ctx.method;
    case 'client_ip':
      return (ctx) => ctx.clientIp;
    case 'request_id':
      return (ctx) => ctx.requestId;
    case 'tls_client_subject':
      return tlsClientSubject;
  }
  if (name.startsWith(HEADER_PREFIX) && name.length > HEADER_PREFIX.length) {
    const header = name.slice(HEADER_PREFIX.length).toLowerCase();
    return (ctx) => joinHeader(ctx.req.headers[header]);
  }
  if (name.startsWith(COOKIE_PREFIX) && name.length > COOKIE_PREFIX.length) {
    const cookie = name.slice(COOKIE_PREFIX.length);
    return (ctx) => ctx.cookie(cookie) ?? '';
  }
  throw new Error(`unknown placeholder {${name}}`);
}

/** Splits a template into literal text and placeholder names; throws on an unknown one. */
export function parseTemplate(source: string): Array<{ literal: string } | { name: string }> {
  const parts: Array<{ literal: string } | { name: string }> = [];
  let literal = '';
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '{' && source[i + 1] === '{') {
      literal += '{';
      i++;
    } else if (c === '}' && source[i + 1] === '}') {
      literal += '}';
      i++;
    } else if (c === '{') {
      const end = source.indexOf('}', i);
      if (end === -1) throw new Error(`unclosed "{" at offset ${i}`);
      const name = source.slice(i + 1, end);
      placeholder(name); // validates
      if (literal !== '') parts.push({ literal });
      literal = '';
      parts.push({ name });
      i = end;
    } else {
      literal += c;
    }
  }
  if (literal !== '') parts.push({ literal });
  return parts;
}

export function compileTemplate(source: string): Template {
  const parts: Part[] = parseTemplate(source).map((p) =>
    'literal' in p ? p.literal : placeholder(p.name),
  );
  if (parts.length === 0) return () => '';
  if (parts.length === 1) {
    const only = parts[0];
    return typeof only === 'string' ? () => only : only;
  }
  return (ctx) => {
    let out = '';
    for (const part of parts) out += typeof part === 'string' ? part : part(ctx);
    return out;
  };
}

/** True when the template has no placeholder, so its value can be computed once. */
export function isStaticTemplate(source: string): boolean {
  return parseTemplate(source).every((p) => 'literal' in p);
}
