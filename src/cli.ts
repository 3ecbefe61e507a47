import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  diffConfigs,
  formatIssue,
  jsonSchema,
  loadConfigFile,
  type Config,
} from './config/index.js';
import { runDemo } from './demo.js';
import type { ReloadResult } from './admin/server.js';
import { Switchyard } from './main.js';
import { onFirstLargeBody } from './proxy/forward.js';
import { keepMallocHeap } from './server/malloc-tuning.js';
import { createStderrLogger } from './observability/logger.js';

const HELP = `Usage: switchyard <command> [options]

Commands:
  run [-c FILE]            run the proxy (FILE defaults to ./switchyard.yaml)
  validate -c FILE         check a config without starting anything
  schema                   print the config's JSON Schema (for editor completion)
  diff OLD NEW             print what changes between two configs
  demo                     start built-in origins behind the proxy and print what to try

Options:
  -c, --config FILE        config file (YAML or JSON)
  -h, --help               show this help
  -v, --version            print the version

run and validate also take FILE without -c: switchyard run other.yaml

Signals (run): SIGHUP reloads the config; SIGUSR1 reopens the access log file;
SIGTERM/SIGINT drain in-flight requests and exit.
Docs: docs/README.md in the package.
`;

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

async function loadOrReport(path: string, checkFiles = false): Promise<Config | undefined> {
  const { config, issues } = await loadConfigFile(path, { checkFiles });
  if (issues.length > 0 || !config) {
    for (const issue of issues) process.stderr.write(`${formatIssue(issue)}\n`);
    if (issues.length === 0) process.stderr.write(`${path}: could not be loaded\n`);
    return undefined;
  }
  return config;
}

async function run(configPath: string): Promise<number> {
  const config = await loadOrReport(configPath);
  if (!config) return 1;
  const log = createStderrLogger();
  if (config.workers === 'auto' || config.workers > 1) {
    // Several worker processes under a supervising primary (src/cluster); workers: 1 stays here.
    const { runPrimary } = await import('./cluster/primary.js');
    return runPrimary(configPath, config, log);
  }
  let proxy: Switchyard | undefined;
  let current = config;
  // SIGHUP and POST /api/reload share this path; reloads run one after another.
  let reloadQueue: Promise<unknown> = Promise.resolve();
  const reloadFromFile = (): Promise<ReloadResult> => {
    const attempt = reloadQueue.then(async (): Promise<ReloadResult> => {
      if (!proxy) return { ok: false, errors: ['switchyard is still starting'] };
      try {
        const { config: next, issues } = await loadConfigFile(configPath);
        if (!next || issues.length > 0) {
          const errors = issues.map(formatIssue);
          if (errors.length === 0) errors.push(`${configPath}: could not be loaded`);
          log('error', 'reload refused: the new config is invalid; the old one keeps serving', {
            issues: errors,
          });
          proxy.observability.recordReload(false);
          return { ok: false, errors };
        }
        await proxy.reload(next);
        const changes = diffConfigs(current, next);
        log('info', 'config reloaded', { changes });
        current = next;
        proxy.observability.recordReload(true);
        return { ok: true, changes };
      } catch (err) {
        log('error', 'reload failed; the old config keeps serving', {
          error: (err as Error).message,
        });
        proxy.observability.recordReload(false);
        return { ok: false, errors: [(err as Error).message] };
      }
    });
    reloadQueue = attempt;
    return attempt;
  };
  try {
    proxy = await Switchyard.start(config, { log, reload: reloadFromFile });
  } catch (err) {
    process.stderr.write(`switchyard: ${(err as Error).message}\n`);
    return 1;
  }
  const running = proxy;
  onFirstLargeBody(() => keepMallocHeap());
  installCrashGuards(log);
  process.on('SIGHUP', () => void reloadFromFile());
  if (config.features.watch === true) {
    const { watchConfigFile } = await import('./cluster/watch.js');
    watchConfigFile(configPath, () => void reloadFromFile(), log);
  }
  // Log rotation: the access log file is opened again by name.
  process.on('SIGUSR1', () => running.reopenLogs());
  return await new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      log('info', `${signal} received: draining in-flight requests`, {
        timeoutMs: current.shutdownTimeoutMs,
      });
      void running.stop(current.shutdownTimeoutMs).then(() => resolve(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/**
 * A proxy that dies takes every site with it. An error that escapes a request's own handling is
 * logged and the process keeps serving; every request path also has its own guard.
 */
function installCrashGuards(log: ReturnType<typeof createStderrLogger>): void {
  process.on('uncaughtException', (err) => {
    log('error', 'uncaught exception (process kept running)', { error: err.stack ?? String(err) });
  });
  process.on('unhandledRejection', (reason) => {
    log('error', 'unhandled rejection (process kept running)', { error: String(reason) });
  });
}

async function validate(configPath: string): Promise<number> {
  const config = await loadOrReport(configPath, true);
  if (!config) return 1;
  process.stdout.write('config OK\n');
  return 0;
}

async function diff(oldPath: string, newPath: string): Promise<number> {
  const a = await loadOrReport(oldPath);
  const b = await loadOrReport(newPath);
  if (!a || !b) return 1;
  const lines = diffConfigs(a, b);
  process.stdout.write(lines.length === 0 ? 'no changes\n' : `${lines.join('\n')}\n`);
  return 0;
}

/**
 * The config file a command reads (`run FILE` and `validate FILE` mean `-c FILE`), or the usage
 * error for arguments the command does not take: nothing given is silently ignored.
 */
function checkArguments(
  command: string | undefined,
  config: string | undefined,
  positionals: string[],
): string | { error: string } {
  const extra = positionals.slice(1);
  switch (command) {
    case 'run':
    case 'validate':
      if (extra.length > 1) return { error: `unexpected argument "${extra[1]}"` };
      if (extra.length === 1) {
        if (config !== undefined && resolve(config) !== resolve(extra[0]))
          return { error: `two config files given: -c ${config} and ${extra[0]}; give one` };
        return extra[0];
      }
      return config ?? './switchyard.yaml';
    case 'schema':
    case 'demo':
      if (extra.length > 0) return { error: `unexpected argument "${extra[0]}"` };
      if (config !== undefined) return { error: `-c is not used by ${command}` };
      return '';
    case 'diff':
      if (config !== undefined) return { error: '-c is not used by diff: diff OLD NEW' };
      return '';
    default:
      return '';
  }
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    process.stderr.write(`switchyard: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`switchyard ${version()}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = checkArguments(command, values.config, positionals);
  if (typeof usage === 'object') {
    process.stderr.write(`switchyard ${command}: ${usage.error}\nSee switchyard --help.\n`);
    return 2;
  }
  const configPath = usage;
  if (command !== 'run' && command !== 'demo') {
    // `switchyard schema | head`: a reader that stops early is not a crash with a stack trace.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  switch (command) {
    case 'run':
      return run(configPath);
    case 'validate':
      return validate(configPath);
    case 'schema':
      process.stdout.write(`${JSON.stringify(jsonSchema(), null, 2)}\n`);
      return 0;
    case 'diff':
      if (positionals.length !== 3) {
        process.stderr.write('switchyard diff: expected two config files: diff OLD NEW\n');
        return 2;
      }
      return diff(positionals[1], positionals[2]);
    case 'demo':
      return runDemo();
    case undefined:
      process.stderr.write(HELP);
      return 2;
    default:
      process.stderr.write(`switchyard: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}
