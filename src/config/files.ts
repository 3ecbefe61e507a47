/**
 * Files the config names (certificates, keys, CA bundles, error pages) must be readable, as
 * `nginx -t` and `caddy validate` check: `switchyard validate` reports a missing or unreadable
 * one with its key path and line:column instead of saying "config OK" to a config `run` refuses.
 * Only readability is checked here; whether a PEM parses is `run`'s (and the reload's) job.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { RawConfig } from './schema.js';
import type { IssueCollector, PathSegment } from './source.js';

interface NamedFile {
  path: PathSegment[];
  file: string;
}

/** TLS files are opened relative to the working directory, error pages to the config's. */
export function checkConfigFiles(
  raw: RawConfig,
  sourcePath: string | undefined,
  issues: IssueCollector,
): void {
  const cwdFiles: NamedFile[] = [];
  (raw.listeners ?? []).forEach((listener, i) => {
    const tls = listener.tls;
    if (tls === undefined) return;
    (tls.certificates ?? []).forEach((c, j) => {
      for (const key of ['cert', 'key'] as const) {
        const file = c[key];
        if (file !== undefined)
          cwdFiles.push({ path: ['listeners', i, 'tls', 'certificates', j, key], file });
      }
    });
    if (tls.clientAuth?.ca !== undefined)
      cwdFiles.push({ path: ['listeners', i, 'tls', 'clientAuth', 'ca'], file: tls.clientAuth.ca });
  });
  for (const [name, upstream] of Object.entries(raw.upstreams ?? {})) {
    const tls = upstream.tls;
    if (tls === undefined) continue;
    for (const key of ['ca', 'cert', 'key'] as const) {
      const file = tls[key];
      if (file !== undefined) cwdFiles.push({ path: ['upstreams', name, 'tls', key], file });
    }
  }
  for (const { path, file } of cwdFiles) report(issues, path, file, resolve(file));
  const base = sourcePath === undefined ? process.cwd() : dirname(resolve(sourcePath));
  for (const [status, file] of Object.entries(raw.errorPages ?? {}))
    report(issues, ['errorPages', status], file, resolve(base, file));
}

function report(issues: IssueCollector, path: PathSegment[], file: string, full: string): void {
  const problem = unreadable(full);
  if (problem !== null) issues.add(path, `cannot read ${file}: ${problem}`);
}

function unreadable(full: string): string | null {
  try {
    if (statSync(full).isDirectory()) return 'is a directory';
    accessSync(full, constants.R_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied';
    return code ?? (err as Error).message;
  }
}
