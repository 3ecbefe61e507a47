/**
 * Key paths and source positions. Every issue names a key path in the contract's style
 * (`routes[2].upstream`) and, when the config came from text, the line:column of that node.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import type { ConfigIssue } from './types.js';

export type PathSegment = string | number;

/** Where an issue points: the value at the path, or the key that introduces it. */
export type Target = 'value' | 'key';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `['routes', 2, 'upstream']` -> `routes[2].upstream`; odd keys are quoted: `errorPages["502"]`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENTIFIER.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** `<path>: <message> (<line>:<col>)`, the shape the CLI prints. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? ` (${issue.line}:${issue.column})` : '';
  return `${issue.path === '' ? '' : `${issue.path}: `}${issue.message}${where}`;
}

/** Collects issues, resolving each path to a position in the YAML document when there is one. */
export class IssueCollector {
  readonly issues: ConfigIssue[] = [];

  constructor(
    private readonly doc?: Document,
    private readonly lineCounter?: LineCounter,
  ) {}

  add(path: readonly PathSegment[], message: string, target: Target = 'value'): void {
    const { line, column } = this.position(path, target);
    this.issues.push({ path: formatPath(path), message, line, column });
  }

  get count(): number {
    return this.issues.length;
  }

  /**
   * The position of the node at `path`. When part of the path is missing (a required key that
   * is absent), the nearest existing ancestor is used, which is the parent mapping.
   */
  position(
    path: readonly PathSegment[],
    target: Target = 'value',
  ): { line: number; column: number } {
    if (!this.doc || !this.lineCounter) return { line: 0, column: 0 };
    let node: unknown = this.doc.contents;
    let offset = (node as Node | null)?.range?.[0] ?? 0;
    for (let i = 0; i < path.length; i++) {
      if (isAlias(node)) node = node.resolve(this.doc);
      const seg = path[i];
      let next: unknown;
      let keyOffset: number | undefined;
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => String(isScalar(p.key) ? p.key.value : p.key) === String(seg),
        );
        if (pair) {
          next = pair.value;
          keyOffset = (pair.key as Node | null)?.range?.[0];
          // `key:` with nothing after it has no value node; point at the key then.
          if (next === null || (next as Node).range === undefined) next = pair.key;
        }
      } else if (isSeq(node) && typeof seg === 'number') {
        next = node.items[seg];
      }
      if (next === undefined || next === null) break;
      node = next;
      const last = i === path.length - 1;
      offset =
        last && target === 'key' && keyOffset !== undefined
          ? keyOffset
          : ((node as Node).range?.[0] ?? offset);
    }
    const { line, col } = this.lineCounter.linePos(offset);
    return { line, column: col };
  }
}
