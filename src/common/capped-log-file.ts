import { closeSync, constants, createWriteStream, fchmodSync, fstatSync, openSync, renameSync, type WriteStream } from 'node:fs';
import { finished } from 'node:stream';

/**
 * An append-only log file whose content someone else controls (the guest's console, a container's output):
 * bounded on disk, in memory, and in what a failure can do.
 *
 * - Disk: at most `maxBytes` per file. A record that would take the file past that rotates it: the file is
 *   renamed to `<path>.1` (replacing the previous one) and a fresh file is started, so the two together hold at
 *   most 2 x maxBytes, the newest output always kept (Docker's json-file `max-size` with `max-file=2`).
 *   Records are never split across the two files (container.log's frames stay whole in each).
 * - Memory: records waiting for the disk are bounded by `maxPendingBytes`; past that they are dropped and
 *   counted, and `dropNote` (if given) writes a line saying how much was lost once the disk catches up.
 * - Failure: a full disk, EIO or a vanished directory is reported once through `onError`, and the file stops
 *   being written; nothing throws into the caller and no 'error' event goes unhandled.
 * - Created 0600 (and an existing file is chmod 0600), opened with O_NOFOLLOW.
 *
 * Readers that follow the file across a rotation (replayContainerLog) rely on one ordering: the old file's writes
 * have all completed before it is renamed, so once `<path>` is a new inode, the old one is complete.
 */
export interface CappedLogFileOptions {
  /** Bytes per file (the current one and `.1`). */
  maxBytes: number;
  /** Bytes waiting to be written before further records are dropped; default 4 MiB, never more than maxBytes. */
  maxPendingBytes?: number;
  /** Called once, with the first error; the file is not written after it. */
  onError?: (err: Error) => void;
  /** The record that says `bytes` were dropped (it counts toward the file's size). */
  dropNote?: (bytes: number) => Buffer | undefined;
  /** How long close() waits for a slow disk before giving up on what is still pending; default 5 s. */
  closeTimeoutMs?: number;
}

const OPEN_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW;

export class CappedLogFile {
  readonly rotatedPath: string;
  private stream: WriteStream | undefined;
  private size = 0;
  /** Records that arrived while the old file was being finished (set only during a rotation). */
  private queue: Buffer[] | undefined;
  private queued = 0;
  private dropped = 0;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private rotation: Promise<void> = Promise.resolve();
  private readonly maxPending: number;

  constructor(
    readonly path: string,
    private readonly opts: CappedLogFileOptions,
  ) {
    if (!(opts.maxBytes >= 1)) throw new RangeError(`log cap must be positive, got ${opts.maxBytes}`);
    this.rotatedPath = `${path}.1`;
    this.maxPending = Math.max(1, Math.min(opts.maxPendingBytes ?? 4 << 20, opts.maxBytes));
    this.size = this.open();
  }

  /** The first error, once the file is no longer written. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Bytes accepted but not yet on disk. */
  get pendingBytes(): number {
    return (this.stream?.writableLength ?? 0) + this.queued;
  }

  /** Bytes dropped since the last drop note. */
  get droppedBytes(): number {
    return this.dropped;
  }

  /** Appends one record (kept whole: a record longer than maxBytes keeps only its last maxBytes). */
  write(record: Buffer | string): void {
    if (this.failure || this.closing) return;
    let rec = typeof record === 'string' ? Buffer.from(record) : record;
    if (rec.length === 0) return;
    if (rec.length > this.opts.maxBytes) rec = rec.subarray(rec.length - this.opts.maxBytes);
    if (this.pendingBytes + rec.length > this.maxPending) {
      this.dropped += rec.length;
      return;
    }
    this.flushDropNote();
    this.put(rec);
  }

  private flushDropNote(): void {
    if (this.dropped === 0) return;
    const note = this.opts.dropNote?.(this.dropped);
    this.dropped = 0;
    if (note && note.length > 0 && note.length <= this.opts.maxBytes) this.put(note);
  }

  private put(rec: Buffer): void {
    if (!this.queue && this.size > 0 && this.size + rec.length > this.opts.maxBytes) this.rotate();
    this.size += rec.length;
    if (this.queue) {
      this.queue.push(rec);
      this.queued += rec.length;
    } else this.stream?.write(rec);
  }

  /** Opens (creates) the file and returns its current size. */
  private open(): number {
    let fd: number | undefined;
    try {
      fd = openSync(this.path, OPEN_FLAGS, 0o600);
      fchmodSync(fd, 0o600);
      const size = fstatSync(fd).size;
      const stream = createWriteStream(this.path, { fd, flags: 'a' });
      fd = undefined;
      stream.on('error', (err) => this.fail(err));
      this.stream = stream;
      return size;
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      this.fail(err as Error);
      return 0;
    }
  }

  /** Finishes the current file, renames it to `.1`, starts a new one; records meanwhile wait in `queue`. */
  private rotate(): void {
    const old = this.stream;
    this.stream = undefined;
    this.queue = [];
    this.queued = 0;
    this.size = 0;
    this.rotation = new Promise<void>((resolve) => {
      const next = () => {
        const waiting = this.queue ?? [];
        this.queue = undefined;
        this.queued = 0;
        if (!this.failure) {
          try {
            renameSync(this.path, this.rotatedPath);
          } catch (err) {
            this.fail(err as Error);
          }
        }
        if (!this.failure) {
          // The records that waited are counted in `size` already; a new file is empty.
          this.size += this.open();
          for (const r of waiting) this.stream?.write(r);
        }
        resolve();
      };
      if (!old || old.destroyed) next();
      else {
        finished(old, () => next());
        old.end();
      }
    });
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.queue = undefined;
    this.queued = 0;
    const s = this.stream;
    this.stream = undefined;
    if (s && !s.destroyed) s.destroy();
    try {
      this.opts.onError?.(err);
    } catch {
      // a reporter that throws must not take the writer down with it
    }
  }

  /** Writes what is pending (a drop note included), then closes; bounded by closeTimeoutMs. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    if (!this.failure) this.flushDropNote();
    this.closing = (async () => {
      const timeoutMs = this.opts.closeTimeoutMs ?? 5000;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), timeoutMs);
        timer.unref();
      });
      const done = (async () => {
        await this.rotation;
        const s = this.stream;
        if (!s || s.destroyed) return;
        await new Promise<void>((r) => {
          finished(s, () => r());
          s.end();
        });
      })();
      const r = await Promise.race([done.then(() => 'done' as const), timeout]);
      clearTimeout(timer);
      if (r === 'timeout') {
        this.stream?.destroy();
        this.stream = undefined;
      }
    })();
    return this.closing;
  }
}
