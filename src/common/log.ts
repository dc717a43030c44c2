import { createRequire } from 'node:module';
import pino, { type Logger, type DestinationStream } from 'pino';
import { peopleReadLogsOf } from './log-audience.js';
import { terminalSafe } from './terminal-text.js';

export type { Logger } from 'pino';

let root: Logger | undefined;

/**
 * The process-wide logger, on stderr: warnings and errors only unless VRUN_DEBUG/--debug is set (or
 * VRUN_LOG_LEVEL). JSON lines, except in a process whose logs people read (logForPeople, the CLI) without
 * --debug: there each line is one plain sentence (see plainLines).
 */
export function rootLogger(): Logger {
  if (!root) {
    const debug = Boolean(process.env.VRUN_DEBUG);
    const level = process.env.VRUN_LOG_LEVEL ?? (debug ? 'debug' : 'warn');
    const program = debug ? undefined : peopleReadLogsOf();
    // Synchronous for people: a command's last warning must not be lost when the CLI exits right after it.
    root = program
      ? pino({ level, hooks: { streamWrite: plainLines(program) } }, pino.destination({ dest: 2, sync: true }))
      : pino({ level, base: { pid: process.pid } }, pino.destination(2));
  }
  return root;
}

/** Fields a person gains nothing from (pino's own, which component spoke, stacks); --debug's JSON has them. */
const NOT_FOR_PEOPLE = ['level', 'time', 'pid', 'hostname', 'msg', 'component', 'type', 'stack'];
const PLAIN_LINE_MAX = 2000;

/** `warn` reads as `warning` (`vrun: warning: ...`, as compilers and git say it). */
function levelWord(level: unknown): string {
  const label = typeof level === 'number' ? pino.levels.labels[level] : undefined;
  return label === 'warn' ? 'warning' : (label ?? 'log');
}

function fieldText(value: unknown): string {
  if (typeof value === 'string') return value;
  // pino's err serializer makes { type, message, stack }: the message is what a person reads.
  if (value && typeof value === 'object' && 'message' in value && typeof value.message === 'string') return value.message;
  return JSON.stringify(value) ?? String(value);
}

/**
 * pino's JSON line made into `<program>: warning: <msg> (key=value, ...)` by pino-pretty's messageFormat, made safe
 * for a terminal (a field may hold a path or text from an image or a guest). pino-pretty is loaded with the first
 * line only: it costs about 20 ms, and most commands never warn.
 */
function plainLines(program: string): (jsonLine: string) => string {
  let pretty: ((jsonLine: string) => string) | undefined;
  return (jsonLine) => {
    pretty ??= (createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty')).prettyFactory({
      colorize: false,
      hideObject: true,
      ignore: NOT_FOR_PEOPLE.join(','),
      messageFormat: (log, messageKey) => {
        const fields = Object.entries(log).filter(([k]) => !NOT_FOR_PEOPLE.includes(k) && k !== messageKey);
        const context = fields.length > 0 ? ` (${fields.map(([k, v]) => `${k}=${fieldText(v)}`).join(', ')})` : '';
        return terminalSafe(`${program}: ${levelWord(log.level)}: ${fieldText(log[messageKey] ?? '')}${context}`, { singleLine: true, maxLength: PLAIN_LINE_MAX });
      },
    });
    return pretty(jsonLine);
  };
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
