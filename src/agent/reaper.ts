/**
 * Collects the exit status of container processes. crun leaves a container's init (and detached exec
 * processes) behind as orphans; with the agent a child subreaper they become its children, and this
 * module waits for exactly those pids (never waitpid(-1), which would steal libuv's own children).
 */
import type { Logger } from '../common/log.js';
import { agentNative } from './native-ops.js';

export interface Exit {
  /** Exit code, or 128+signal. */
  code: number;
  signal: number;
}

const POLL_MS = 50;

export class Reaper {
  private readonly watched = new Map<number, { resolve: (e: Exit) => void }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly log: Logger) {
    agentNative().procSetChildSubreaper();
    process.on('SIGCHLD', () => this.poll());
  }

  /** Resolves when `pid` exits. The pid may not be our child yet (its parent crun is still exiting). */
  watch(pid: number): Promise<Exit> {
    return new Promise((resolve) => {
      this.watched.set(pid, { resolve });
      this.timer ??= setInterval(() => this.poll(), POLL_MS);
      this.poll();
    });
  }

  private poll(): void {
    const native = agentNative();
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
        // Alive but not our child yet: crun, its parent, is still on its way out.
        if (alive) continue;
        this.log.warn({ pid }, 'process exited without being reaped by the agent; exit status unknown');
        exit = { code: 255, signal: 0 };
      }
      if (exit) {
        this.watched.delete(pid);
        w.resolve(exit);
      }
    }
    if (this.watched.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}
