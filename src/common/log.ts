import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

let root: Logger | undefined;

/**
 * The process-wide logger. JSON lines on stderr only when VRUN_DEBUG/--debug is set; otherwise
 * warnings and errors only, so CLI output stays clean for people.
 */
export function rootLogger(): Logger {
  if (!root) {
    const level = process.env.VRUN_LOG_LEVEL ?? (process.env.VRUN_DEBUG ? 'debug' : 'warn');
    root = pino({ level, base: { pid: process.pid } }, pino.destination(2));
  }
  return root;
}

export function setRootLogger(logger: Logger): void {
  root = logger;
}

/** A logger writing JSON lines to `dest` (e.g. a sandbox's log file), optionally also mirrored to stderr. */
export function fileLogger(dest: DestinationStream, opts: { level?: string; mirrorToStderr?: boolean } = {}): Logger {
  const level = opts.level ?? 'debug';
  if (!opts.mirrorToStderr) return pino({ level }, dest);
  return pino({ level }, pino.multistream([{ stream: dest, level: level as pino.Level }, { stream: pino.destination(2), level: level as pino.Level }]));
}

/** The per-sandbox child logger: every line carries the sandbox id. */
export function sandboxLogger(parent: Logger, sandboxId: string): Logger {
  return parent.child({ sandbox: sandboxId });
}
