/**
 * `${NAME}` substitution in string values. It runs on the YAML document before validation, so a
 * substituted value is validated like a written one and an unset variable is reported at its key.
 */
import { isMap, isScalar, isSeq, Scalar, type Document } from 'yaml';
import type { IssueCollector, PathSegment } from './source.js';

const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{/g;

/**
 * Replaces `${NAME}` and `${NAME:-default}` (the default is used when NAME is unset or empty).
 * `$${` stands for a literal `${`. Returns the new text, or undefined when a variable is missing
 * (after reporting it).
 */
export function substitute(
  text: string,
  env: Record<string, string | undefined>,
  report: (message: string) => void,
): string | undefined {
  if (!text.includes('${')) return text;
  let ok = true;
  const out = text.replace(
    REFERENCE,
    (whole, name: string | undefined, def: string | undefined) => {
      if (whole === '$${') return '${';
      if (name === undefined) {
        ok = false;
        report(
          `invalid variable reference in "${text}": write \${NAME} or \${NAME:-default}, or $\${ for a literal \${`,
        );
        return whole;
      }
      const value = env[name];
      if (def !== undefined) return value === undefined || value === '' ? def : value;
      if (value === undefined) {
        ok = false;
        report(
          `environment variable ${name} is not set (write \${${name}:-default} for a default)`,
        );
        return whole;
      }
      return value;
    },
  );
  return ok ? out : undefined;
}

/**
 * Substitutes in every string value of the document, in place. A plain (unquoted) scalar that
 * becomes a number or a boolean takes that type, so `workers: ${WORKERS}` yields a number.
 */
export function substituteDocument(
  doc: Document,
  env: Record<string, string | undefined>,
  issues: IssueCollector,
): void {
  const walk = (node: unknown, path: PathSegment[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        walk(pair.value, [...path, String(key)]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item, [...path, i]));
    } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
      const result = substitute(node.value, env, (message) => issues.add(path, message));
      if (result === undefined) return;
      node.value = node.type === Scalar.PLAIN ? coercePlain(result) : result;
    }
  };
  walk(doc.contents, []);
}

function coercePlain(text: string): string | number | boolean {
  if (/^-?[0-9]+$/.test(text) && Number.isSafeInteger(Number(text))) return Number(text);
  if (/^-?[0-9]+\.[0-9]+$/.test(text)) return Number(text);
  if (text === 'true') return true;
  if (text === 'false') return false;
  return text;
}
