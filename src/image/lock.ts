import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VrunError } from '../common/errors.js';
import { fsOps } from './fs-ops.js';

/**
 * Exclusive locks between vrun processes (and between tasks of one process) on a lock file, with flock:
 * the kernel drops the lock when its holder dies, so a killed `vrun pull` never leaves a stale lock behind.
 * A holder may unlink the file on release; a waiter that then wins the now-orphaned inode notices (the path no
 * longer names its inode) and retries on the fresh file, so deleting lock files is safe.
 */
export interface Lock {
  readonly path: string;
  release(opts?: { unlink?: boolean }): void;
}

export interface LockOptions {
  /** Give up after this long (ms); default waits forever. */
  timeoutMs?: number;
  /** Called once if the lock is busy, e.g. to tell the user what we wait for. */
  onWait?: () => void;
  /** A shared (reader) lock: many holders at once, excluded only by an exclusive holder. */
  shared?: boolean;
}

export async function acquireLock(file: string, opts: LockOptions = {}): Promise<Lock> {
  const ops = fsOps();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const started = Date.now();
  let delay = 5;
  let announced = false;
  for (;;) {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600); // libuv opens with O_CLOEXEC already
    let locked = false;
    try {
      locked = ops.fsFlock(fd, !opts.shared, false);
      if (locked && sameInode(fd, file)) return makeLock(file, fd, !opts.shared);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    fs.closeSync(fd); // closing drops the flock too
    if (locked) continue; // the file was replaced under us: lock the new one
    if (!announced) {
      announced = true;
      opts.onWait?.();
      (await import('../common/log.js')).rootLogger().debug({ lock: file }, 'waiting for lock'); // pino only when needed: it is slow to load
    }
    if (opts.timeoutMs !== undefined && Date.now() - started > opts.timeoutMs) {
      throw new VrunError(`timed out after ${Math.round(opts.timeoutMs / 1000)}s waiting for the lock ${file} (another vrun holds it)`);
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 200);
  }
}

export async function withLock<T>(file: string, fn: () => Promise<T>, opts: LockOptions & { unlinkOnRelease?: boolean } = {}): Promise<T> {
  const lock = await acquireLock(file, opts);
  try {
    return await fn();
  } finally {
    lock.release({ unlink: opts.unlinkOnRelease ?? false });
  }
}

function sameInode(fd: number, file: string): boolean {
  try {
    return fs.fstatSync(fd).ino === fs.statSync(file).ino;
  } catch {
    return false;
  }
}

function makeLock(file: string, fd: number, exclusive: boolean): Lock {
  let held = true;
  if (exclusive) try {
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`);
  } catch {
    // the pid is only a hint for people looking at a busy lock
  }
  return {
    path: file,
    release(opts = {}) {
      if (!held) return;
      held = false;
      if (opts.unlink) fs.rmSync(file, { force: true });
      fs.closeSync(fd);
    },
  };
}
