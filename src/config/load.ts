/**
 * Loading: YAML text -> document with positions -> env substitution -> schema validation ->
 * normalization -> cross-key checks. Every stage reports issues with a key path and line:col;
 * a config is returned only when there are none.
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import { substituteDocument } from './env.js';
import { checkConfigFiles } from './files.js';
import { normalizeConfig } from './normalize.js';
import { ConfigSchema, type RawConfig } from './schema.js';
import { reportSchemaErrors } from './schema-errors.js';
import { IssueCollector } from './source.js';
import type { Config, ConfigIssue } from './types.js';
import { validateConfig } from './validate.js';

export interface LoadOptions {
  /** The file the text came from, for messages and `config.sourcePath`. */
  path?: string;
  /** Variables for `${NAME}`; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Also check that the files the config names can be read (`switchyard validate`). */
  checkFiles?: boolean;
}

export interface LoadResult {
  /** Present only when there are no issues. */
  config?: Config;
  issues: ConfigIssue[];
}

export async function loadConfigFile(
  path: string,
  options: Omit<LoadOptions, 'path'> = {},
): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const reason = err.code === 'ENOENT' ? 'no such file' : err.message;
    return {
      issues: [{ path: '', message: `cannot read ${path}: ${reason}`, line: 0, column: 0 }],
    };
  }
  return loadConfigText(text, { ...options, path });
}

export function loadConfigText(text: string, options: LoadOptions = {}): LoadResult {
  const lineCounter = new LineCounter();
  // JSON is YAML, so one parser serves both; `uniqueKeys` turns a repeated key into an error.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  const issues = new IssueCollector(doc, lineCounter);

  if (doc.errors.length > 0) {
    for (const error of doc.errors) {
      const pos = error.linePos?.[0] ?? lineCounter.linePos(error.pos[0]);
      issues.issues.push({
        path: '',
        // The parser's wording for this one tells the user to call a library function.
        message:
          error.code === 'MULTIPLE_DOCS'
            ? 'the config must be a single YAML document; a second one starts here'
            : `YAML syntax error: ${firstLine(error.message)}`,
        line: pos.line,
        column: pos.col,
      });
    }
    return { issues: issues.issues };
  }
  if (doc.contents === null) {
    return {
      issues: [
        {
          path: '',
          message: 'the config is empty; at least one listener is required',
          line: 1,
          column: 1,
        },
      ],
    };
  }

  substituteDocument(doc, options.env ?? process.env, issues);
  if (issues.count > 0) return { issues: issues.issues };

  const raw: unknown = doc.toJS({ maxAliasCount: 1000 });
  reportSchemaErrors(ConfigSchema, raw, issues);
  if (issues.count > 0) return { issues: sortIssues(issues.issues) };

  const config = normalizeConfig(raw as RawConfig, issues);
  validateConfig(raw as RawConfig, config, issues);
  if (options.checkFiles === true) checkConfigFiles(raw as RawConfig, options.path, issues);
  if (issues.count > 0) return { issues: sortIssues(issues.issues) };
  if (options.path !== undefined) config.sourcePath = options.path;
  return { config, issues: [] };
}

/** `Implicit keys need to be ... at line 3, column 1:\n\n...` -> the sentence alone. */
function firstLine(message: string): string {
  return message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
}

/** File order reads best: the user fixes problems top to bottom. */
function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues
    .map((issue, i) => ({ issue, i }))
    .sort((p, q) => p.issue.line - q.issue.line || p.issue.column - q.issue.column || p.i - q.i)
    .map(({ issue }) => issue);
}
