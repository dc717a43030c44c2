import { CappedLogFile } from '../common/capped-log-file.js';
import { VrunError, errorMessage } from '../common/errors.js';
import { rootLogger } from '../common/log.js';
import { terminalSafe } from '../common/terminal-text.js';

/**
 * The guest's serial console as the host sees it: every byte goes to a log file (kept for failures),
 * complete lines are matched against waiters (readiness, exit status, panics). The guest controls these
 * bytes, so everything about them is bounded: the in-memory tail and the pending partial line, and the log
 * file (CONSOLE_LOG_MAX_BYTES per file, rotated once to `<log>.1`: at most twice that on disk; created 0600;
 * a full disk or EIO is logged once and the file is no longer written, the VM carries on). The lines quoted
 * in error messages (recent()) have their control characters made visible, since they end up on a terminal.
 */
interface LineWaiter {
  pattern: RegExp;
  resolve: (m: RegExpExecArray) => void;
  reject: (e: Error) => void;
}

const MAX_LINE = 4096;
const MAX_TAIL_LINES = 200;
/** Per console log file; with the one rotated file, the console takes at most 8 MiB of /run per VM. */
export const CONSOLE_LOG_MAX_BYTES = 4 << 20;
/** Console bytes waiting for the disk before more are dropped (with a note in the log saying how many). */
const CONSOLE_LOG_MAX_PENDING = 1 << 20;

export interface ConsoleLogOptions {
  /** Bytes per log file (default CONSOLE_LOG_MAX_BYTES). */
  maxBytes?: number;
  /** Told once when the log file cannot be written (default: a warning on the process's logger). */
  onError?: (err: Error) => void;
}

export class ConsoleLog {
  private partial = '';
  private readonly tail: string[] = [];
  private readonly waiters = new Set<LineWaiter>();
  private readonly listeners = new Set<(line: string) => void>();
  private readonly file: CappedLogFile | undefined;
  private closedReason: string | undefined;
  private fileClosed: Promise<void> | undefined;
  /** Largest record written to the file: a quarter of the cap, so rotation keeps most of a file's worth. */
  private readonly piece: number;

  constructor(
    readonly logPath?: string,
    opts: ConsoleLogOptions = {},
  ) {
    const maxBytes = opts.maxBytes ?? CONSOLE_LOG_MAX_BYTES;
    this.piece = Math.max(1, Math.min(64 * 1024, Math.floor(maxBytes / 4)));
    this.file = logPath
      ? new CappedLogFile(logPath, {
          maxBytes,
          maxPendingBytes: Math.min(CONSOLE_LOG_MAX_PENDING, maxBytes),
          dropNote: (n) => Buffer.from(`\n[vrun: ${n} bytes of guest console output dropped: the log file could not keep up]\n`),
          onError:
            opts.onError ??
            ((err) => rootLogger().warn({ err: errorMessage(err), log: logPath }, 'cannot write the guest console log: no longer writing it')),
        })
      : undefined;
  }

  /** The log file's error, once it is no longer written. */
  get logFailed(): Error | undefined {
    return this.file?.failed;
  }

  /** Console bytes accepted but not yet written to the log file. */
  get logPendingBytes(): number {
    return this.file?.pendingBytes ?? 0;
  }

  write(chunk: Buffer | string): void {
    if (this.file) {
      // Split so a record never exceeds the file cap (CappedLogFile keeps records whole).
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      for (let o = 0; o < b.length; o += this.piece) this.file.write(b.subarray(o, o + this.piece));
    }
    const text = this.partial + (typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
    const lines = text.split('\n');
    this.partial = (lines.pop() ?? '').slice(-MAX_LINE);
    for (const raw of lines) this.line(raw.replace(/\r$/, '').slice(0, MAX_LINE));
  }

  private line(line: string): void {
    this.tail.push(line);
    if (this.tail.length > MAX_TAIL_LINES) this.tail.shift();
    for (const l of this.listeners) l(line);
    for (const w of [...this.waiters]) {
      w.pattern.lastIndex = 0;
      const m = w.pattern.exec(line);
      if (m) {
        this.waiters.delete(w);
        w.resolve(m);
      }
    }
  }

  onLine(fn: (line: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The last lines printed, for error messages. */
  recent(n = 30): string {
    return this.tail
      .slice(-n)
      .map((l) => terminalSafe(l, { singleLine: true, maxLength: 4 * MAX_LINE }))
      .join('\n');
  }

  /** Resolves with the first later line matching `pattern`; rejects on timeout or when the console closes. */
  waitFor(pattern: RegExp, timeoutMs: number, what = pattern.source): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      if (this.closedReason) {
        reject(new VrunError(`guest console closed before "${what}" (${this.closedReason})\n${this.recent()}`));
        return;
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new VrunError(`timed out after ${timeoutMs} ms waiting for "${what}" on the guest console${this.logPath ? ` (log: ${this.logPath})` : ''}\n${this.recent()}`));
      }, timeoutMs);
      const waiter: LineWaiter = {
        pattern,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** The console ended (VM gone): pending waiters fail with the reason. */
  close(reason: string): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
    this.closedReason = reason;
    for (const w of this.waiters) {
      w.reject(
        new VrunError(`guest console closed before "${w.pattern.source}" (${reason})${this.logPath ? ` (log: ${this.logPath})` : ''}\n${this.recent()}`),
      );
    }
    this.waiters.clear();
    this.fileClosed = this.file?.close() ?? Promise.resolve();
  }

  /** Settles once the log file has what was written before close() (bounded: see CappedLogFile.close). */
  whenLogClosed(): Promise<void> {
    return this.fileClosed ?? Promise.resolve();
  }
}
