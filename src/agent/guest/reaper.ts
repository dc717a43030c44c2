/**
 * Collects the exit status of container processes. crun leaves a container's init (and detached exec
 * processes) behind as orphans; with the agent a child subreaper they become its children, and this
 * module waits for exactly those pids (never waitpid(-1), which would steal libuv's own children).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import type { Logger } from '../../common/log.js';
import { isOwnChild } from './own-children.js';
import { agentNative } from './native-ops.js';

export interface Exit {
  /** Exit code, or 128+signal. */
  code: number;
  signal: number;
}

/** Polling only while some watched pid is not our child (yet): its exit brings us no SIGCHLD. */
const POLL_MS = 50;
/** Otherwise SIGCHLD drives everything; this slow pass only guards against a lost wakeup. */
const SAFETY_POLL_MS = 1000;
const SWEEP_MS = 1000;
/**
 * A detached exec (`crun exec --detach`) can exit and be swept before the agent has read its pid file and
 * called watch(); its exit is kept this long for that late watch(). Short, so a reused pid is not confused.
 */
const LATE_WATCH_MS = 30_000;
const MAX_UNCLAIMED = 1024;

export class Reaper {
  private readonly watched = new Map<number, { resolve: (e: Exit) => void }>();
  /** Exits the sweep collected with nobody watching yet, by pid. */
  private readonly unclaimed = new Map<number, { exit: Exit; at: number }>();
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private lastSweep = 0;
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(private readonly log: Logger) {
    agentNative().procSetChildSubreaper();
    process.on('SIGCHLD', () => {
      this.poll();
      this.scheduleSweep();
    });
  }

  /** Orphans nobody waits for (adopted as subreaper) are collected at most once per SWEEP_MS. */
  private scheduleSweep(): void {
    if (this.sweepTimer) return;
    const wait = Math.max(0, this.lastSweep + SWEEP_MS - Date.now());
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = null;
      this.lastSweep = Date.now();
      void this.sweep();
    }, wait);
    this.sweepTimer.unref();
  }

  private async sweep(): Promise<void> {
    const native = agentNative();
    const me = String(process.pid);
    for (const entry of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      if (this.watched.has(pid) || isOwnChild(pid)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z' || ppid !== me || isOwnChild(pid)) continue;
      try {
        const exit = native.procWaitPid(pid);
        if (exit) this.collected(pid, exit);
      } catch {
        // Reaped in between by someone else: nothing to do.
      }
    }
  }

  /** An exit the sweep reaped: its watcher may have come during the sweep's awaits, or may come later. */
  private collected(pid: number, exit: Exit): void {
    const w = this.watched.get(pid);
    if (w) {
      this.watched.delete(pid);
      w.resolve(exit);
      return;
    }
    this.log.debug({ pid, ...exit }, 'reaped an orphan');
    const now = Date.now();
    for (const [p, u] of this.unclaimed) if (now - u.at > LATE_WATCH_MS || this.unclaimed.size >= MAX_UNCLAIMED) this.unclaimed.delete(p);
    this.unclaimed.set(pid, { exit, at: now });
  }

  private claim(pid: number): Exit | undefined {
    const u = this.unclaimed.get(pid);
    this.unclaimed.delete(pid);
    return u && Date.now() - u.at <= LATE_WATCH_MS ? u.exit : undefined;
  }

  /** Resolves when `pid` exits. The pid may not be our child yet (its parent crun is still exiting). */
  watch(pid: number): Promise<Exit> {
    const early = this.claim(pid);
    // A live process under that pid means the kept exit was an earlier holder's (pids are reused, and the
    // guest's pid_max is small): wait for the new one instead.
    if (early && !existsSync(`/proc/${pid}`)) return Promise.resolve(early);
    return new Promise((resolve) => {
      this.watched.set(pid, { resolve });
      this.poll();
    });
  }

  private poll(): void {
    const native = agentNative();
    let strangers = false;
    for (const [pid, w] of this.watched) {
      let exit: Exit | null;
      try {
        exit = native.procWaitPid(pid);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ECHILD') throw err;
        let alive = true;
        try {
          process.kill(pid, 0);
        } catch {
          alive = false;
        }
        // Alive but not our child: crun, its parent, is still on its way out, or the process outlived an
        // earlier agent (restart) and its exit status will never reach us.
        if (alive) {
          strangers = true;
          continue;
        }
        exit = this.claim(pid) ?? null;
        if (!exit) {
          this.log.warn({ pid }, 'process exited without being reaped by the agent; exit status unknown');
          exit = { code: 255, signal: 0 };
        }
      }
      if (exit) {
        this.watched.delete(pid);
        w.resolve(exit);
      }
    }
    this.schedule(this.watched.size === 0 ? 0 : strangers ? POLL_MS : SAFETY_POLL_MS);
  }

  private schedule(ms: number): void {
    if (ms === this.timerMs) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.timerMs = ms;
    if (ms > 0) {
      this.timer = setInterval(() => this.poll(), ms);
      this.timer.unref();
    }
  }
}
