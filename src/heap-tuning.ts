import { setFlagsFromString } from 'node:v8';

/**
 * The V8 heap settings `switchyard run` and `demo` start with.
 *
 * V8's defaults suit a short-lived script: a young generation of two 16 MiB semi-spaces and an
 * old generation allowed to grow up to several times its live size between full collections.
 * A proxy with 1,000 busy keep-alive connections keeps every request's objects alive across a
 * scavenge, so both fill up with what is already garbage: 150-180 MiB resident. Two 4 MiB
 * semi-spaces and an old generation that grows by 30% between full collections keep the same
 * load near 100 MiB, with the same CPU per request at 1 KiB and 100 KiB (measured in
 * docs/performance.md, "Memory at 1,000 clients").
 *
 * V8 sizes its heap when the process starts, so these must be on node's command line:
 * `bin/switchyard` puts them there when run directly (its first lines are a shell script), and
 * `node bin/switchyard run` relaunches itself with them in place (`process.execve`, Node.js
 * 22.15 and later: same process id, same stdio). Older nodes get what can still be set at run
 * time (the growing factor; the semi-space size cannot change once the heap exists). A flag the
 * user already gave node wins, and
 * `SWITCHYARD_HEAP_TUNING=0` turns all of this off. Keep bin/switchyard's shell line in step
 * with HEAP_FLAGS (test/heap-tuning.test.mjs checks it).
 */
export const HEAP_FLAGS: readonly string[] = [
  '--max-semi-space-size=4',
  '--heap-growing-percent=30',
];

/** HEAP_FLAGS that `execArgv` does not already set (by name, whatever the value). */
export function missingHeapFlags(execArgv: readonly string[]): string[] {
  const given = new Set(execArgv.map((arg) => arg.split('=')[0]!.replaceAll('_', '-')));
  return HEAP_FLAGS.filter((flag) => !given.has(flag.split('=')[0]!));
}

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/** The flags V8 still honours when set after start-up. */
const RUNTIME_SETTABLE = new Set(['--heap-growing-percent']);

/**
 * Replaces this process with the same node, script and arguments plus the missing HEAP_FLAGS,
 * when that is possible and wanted. Returns when it is not (flags already there, turned off,
 * or a Node.js without `process.execve`, which gets the run-time settable ones instead);
 * otherwise it does not return.
 */
export function relaunchWithHeapFlags(script: string, args: readonly string[]): void {
  if (process.env.SWITCHYARD_HEAP_TUNING === '0') return;
  // Guards against a loop should node ever drop a flag from execArgv.
  if (process.env.SWITCHYARD_HEAP_TUNED === '1') return;
  const missing = missingHeapFlags(process.execArgv);
  if (missing.length === 0) return;
  const execve = (process as unknown as { execve?: Execve }).execve;
  if (typeof execve !== 'function') {
    for (const flag of missing)
      if (RUNTIME_SETTABLE.has(flag.split('=')[0]!)) setFlagsFromString(flag);
    return;
  }
  try {
    execve(process.execPath, [process.execPath, ...process.execArgv, ...missing, script, ...args], {
      ...process.env,
      SWITCHYARD_HEAP_TUNED: '1',
    });
  } catch {
    // execve refused (e.g. node's binary not executable by this user): run on as started.
  }
}
