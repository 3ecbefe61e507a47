/** Placeholders usable in header values, redirects and keys, e.g. `https://{host}{uri}`. */

export { PLACEHOLDERS } from '../core/template.js';
import { PLACEHOLDERS } from '../core/template.js';

const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

function isKnownPlaceholder(name: string): boolean {
  if ((PLACEHOLDERS as readonly string[]).includes(name)) return true;
  const dot = name.indexOf('.');
  if (dot < 0) return false;
  const kind = name.slice(0, dot);
  return (kind === 'header' || kind === 'cookie') && TOKEN.test(name.slice(dot + 1));
}

/**
 * Checks a template and returns a message for its first problem, or undefined when it is fine.
 * `{{` and `}}` stand for literal braces; a lone `}` is also taken literally.
 */
export function checkTemplate(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '}' && text[i + 1] === '}') {
      i++;
      continue;
    }
    if (c !== '{') continue;
    if (text[i + 1] === '{') {
      i++;
      continue;
    }
    const close = text.indexOf('}', i + 1);
    if (close < 0) return `unclosed "{" in "${text}"; write "{{" for a literal brace`;
    const name = text.slice(i + 1, close);
    if (!isKnownPlaceholder(name)) {
      return `unknown placeholder "{${name}}"; known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(' ')} {header.NAME} {cookie.NAME}`;
    }
    i = close;
  }
  return undefined;
}
