/**
 * Turns TypeBox validation errors into one readable issue each, with the key path. The raw
 * errors are precise but terse ("Expected union value"), and a failing union yields an error
 * per variant; here a union is reported once, by descending into the variant whose type fits.
 */
import { Kind, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import type { IssueCollector, PathSegment, Target } from './source.js';

interface Issue {
  path: PathSegment[];
  message: string;
  target: Target;
}

export function reportSchemaErrors(schema: TSchema, value: unknown, issues: IssueCollector): void {
  const found: Issue[] = [];
  collect(value, Value.Errors(schema, value), found);
  // A missing required key also fails its type check at the same path; keep only the first.
  const required = new Set(
    found.filter((i) => i.message.startsWith('missing required key')).map((i) => key(i.path)),
  );
  const seen = new Set<string>();
  for (const issue of found) {
    const k = key(issue.path);
    if (required.has(k) && !issue.message.startsWith('missing required key')) continue;
    const id = `${k}\u0000${issue.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    issues.add(issue.path, issue.message, issue.target);
  }
}

function key(path: PathSegment[]): string {
  return JSON.stringify(path);
}

function collect(root: unknown, errors: Iterable<ValueError>, out: Issue[]): void {
  for (const error of errors) {
    const path = toSegments(root, error.path);
    const described = describe(root, error, path);
    if (Array.isArray(described)) out.push(...described);
    else out.push(described);
  }
}

/** JSON pointer -> segments, with array indexes as numbers (found by walking the value). */
function toSegments(root: unknown, pointer: string): PathSegment[] {
  if (pointer === '') return [];
  const segs: PathSegment[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      segs.push(Number(seg));
      node = node[Number(seg)];
    } else {
      segs.push(seg);
      node =
        node !== null && typeof node === 'object'
          ? (node as Record<string, unknown>)[seg]
          : undefined;
    }
  }
  return segs;
}

function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `"${value}"`;
  return String(value);
}

/** The JSON type a schema accepts, to pick the union variant that a value was meant for. */
function schemaType(schema: TSchema): string {
  switch (schema[Kind]) {
    case 'Object':
    case 'Record':
      return 'object';
    case 'Array':
      return 'array';
    case 'String':
      return 'string';
    case 'Integer':
    case 'Number':
      return 'number';
    case 'Boolean':
      return 'boolean';
    case 'Literal':
      return typeof schema.const;
    default:
      return 'unknown';
  }
}

function valueType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  return typeof value;
}

function describe(root: unknown, error: ValueError, path: PathSegment[]): Issue | Issue[] {
  const schema = error.schema as TSchema & Record<string, any>;
  const value = error.value;
  const at = (message: string, target: Target = 'value'): Issue => ({ path, message, target });
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return at(`missing required key "${String(path[path.length - 1])}"`);
    case ValueErrorType.ObjectAdditionalProperties: {
      const name = String(path[path.length - 1]);
      if (schema.patternProperties) {
        return at(`invalid key "${name}": ${schema.keyErrorMessage ?? 'not allowed here'}`, 'key');
      }
      const hint = suggest(name, Object.keys(schema.properties ?? {}));
      return at(`unknown key "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}`, 'key');
    }
    case ValueErrorType.Union: {
      const variants = (schema.anyOf ?? []) as TSchema[];
      const type = valueType(value);
      const fitting = variants
        .map((v, i) => ({ v, i }))
        .filter(({ v }) => schemaType(v) === type && v[Kind] !== 'Literal');
      if (fitting.length === 1 && error.errors[fitting[0].i]) {
        const nested: Issue[] = [];
        collect(root, error.errors[fitting[0].i], nested);
        if (nested.length > 0) return nested;
      }
      const message =
        schema.errorMessage ??
        `expected ${[...new Set(variants.map((v) => article(schemaType(v))))].join(' or ')}`;
      return at(`${message}, got ${kindOf(value)}`);
    }
    case ValueErrorType.StringPattern:
      return at(schema.patternErrorMessage ?? `must match the pattern ${schema.pattern}`);
    case ValueErrorType.String:
      return at(`${schema.patternErrorMessage ?? 'expected a string'}, got ${kindOf(value)}`);
    case ValueErrorType.Integer:
      return at(`expected a whole number, got ${kindOf(value)}`);
    case ValueErrorType.Number:
      return at(`expected a number, got ${kindOf(value)}`);
    case ValueErrorType.Boolean:
      return at(`expected true or false, got ${kindOf(value)}`);
    case ValueErrorType.Array:
      return at(`expected a list, got ${kindOf(value)}`);
    case ValueErrorType.Object:
      return at(`expected a mapping, got ${kindOf(value)}`);
    case ValueErrorType.Literal:
      return at(`must be ${JSON.stringify(schema.const)}, got ${kindOf(value)}`);
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return at(`must be at least ${schema.minimum}, got ${kindOf(value)}`);
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return at(`must be at most ${schema.maximum}, got ${kindOf(value)}`);
    case ValueErrorType.ArrayMinItems:
      if (path.length === 1 && path[0] === 'listeners')
        return at('at least one listener is required');
      return at(`must have at least ${schema.minItems} item${schema.minItems === 1 ? '' : 's'}`);
    default:
      return at(error.message.charAt(0).toLowerCase() + error.message.slice(1));
  }
}

function article(type: string): string {
  switch (type) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'true or false';
    case 'string':
      return 'a string';
    default:
      return type;
  }
}

/** The closest known key within two edits (or differing only in case), for typos. */
export function suggest(name: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.min(2, Math.ceil(name.length / 3)) + 1;
  for (const candidate of known) {
    if (candidate.toLowerCase() === name.toLowerCase()) return candidate;
    const d = distance(name, candidate);
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}
