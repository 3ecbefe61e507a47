import { createHash } from 'node:crypto';
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

const DEBOUNCE_MS = 250;

function digest(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

/**
 * `watch: true`: calls `onChange` when the config file's content changes. The directory is
 * watched rather than the file, because editors and config management replace files by rename
 * (a watch on the old inode would go quiet). Events are debounced and compared by content, so a
 * save that changes nothing, or a half-written file followed by the full one, reloads once.
 * `onChange` runs the usual reload, which validates first. Returns a function that stops it.
 */
export function watchConfigFile(
  path: string,
  onChange: () => void,
  log: (
    level: 'info' | 'warn' | 'error',
    message: string,
    fields?: Record<string, unknown>,
  ) => void,
): () => void {
  const file = resolve(path);
  const name = basename(file);
  let last = digest(file);
  let timer: NodeJS.Timeout | null = null;
  let watcher: FSWatcher;
  try {
    watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name) return;
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        const now = digest(file);
        if (now === null || now === last) return;
        last = now;
        log('info', 'config file changed; reloading', { path: file });
        onChange();
      }, DEBOUNCE_MS);
    });
  } catch (err) {
    log('warn', 'cannot watch the config file; reload with SIGHUP instead', {
      path: file,
      error: (err as Error).message,
    });
    return () => {};
  }
  watcher.on('error', (err) =>
    log('warn', 'config file watch failed', { path: file, error: err.message }),
  );
  log('info', 'watching the config file for changes', { path: file });
  return () => {
    if (timer !== null) clearTimeout(timer);
    watcher.close();
  };
}
