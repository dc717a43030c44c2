import { createWriteStream, type WriteStream } from 'node:fs';
import { VrunError } from '../common/errors.js';

/**
 * The guest's serial console as the host sees it: every byte goes to a log file (kept for failures),
 * complete lines are matched against waiters (readiness, exit status, panics). The guest controls these
 * bytes, so the in-memory tail and the pending partial line are bounded.
 */
interface LineWaiter {
  pattern: RegExp;
  resolve: (m: RegExpExecArray) => void;
  reject: (e: Error) => void;
}

const MAX_LINE = 4096;
const MAX_TAIL_LINES = 200;

/** The line the guest init prints before it ends, with its status: every backend reads the status from it. */
export const GUEST_EXIT_PATTERN = /VRUN-EXIT status=(\d{1,3})\b/;

export class ConsoleLog {
  private partial = '';
  private readonly tail: string[] = [];
  private readonly waiters = new Set<LineWaiter>();
  private readonly listeners = new Set<(line: string) => void>();
  private readonly file: WriteStream | undefined;
  private closedReason: string | undefined;

  constructor(readonly logPath?: string) {
    this.file = logPath ? createWriteStream(logPath, { flags: 'a' }) : undefined;
  }

  write(chunk: Buffer | string): void {
    this.file?.write(chunk);
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
    return this.tail.slice(-n).join('\n');
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
    this.file?.end();
  }
}
