/**
 * The process logger until structured logging (pino) arrives with the observability feature:
 * one line per event on stderr, `LEVEL message {fields}`, cheap enough for error paths.
 */
export type LogLevel = 'info' | 'warn' | 'error';
export type LogFn = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

export function createStderrLogger(options: { quiet?: boolean } = {}): LogFn {
  return (level, message, fields) => {
    if (options.quiet && level === 'info') return;
    const suffix = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    process.stderr.write(
      `${new Date().toISOString()} ${level.toUpperCase()} ${message}${suffix}\n`,
    );
  };
}
