/** The slice of the native addon (native/src/process_ops.cc, fd_passing.cc, fs_ops.cc) the agent uses. */
import { loadNative } from '../../common/native.js';

export interface AgentNative {
  procSetChildSubreaper(): void;
  /** null while the child runs; the exit once reaped (code is 128+signal for a signal death). */
  procWaitPid(pid: number): { code: number; signal: number } | null;
  procPipe(sizeBytes?: number): [number, number];
  /**
   * Starts a program without forking the agent (a vfork-style clone, PATH searched): stdio[i] becomes fd i
   * (-1: /dev/null); returns the pid, for the Reaper to collect. Throws, naming the step, if the program
   * could not be started (no child is left behind then).
   */
  procSpawn(file: string, argv: string[], stdio: [number, number, number]): number;
  ttySetWinsize(fd: number, rows: number, cols: number): void;
  fdListenUnix(path: string): number;
  fdRecvFromListener(listenFd: number, timeoutMs: number): Promise<number>;
  fdClose(fd: number): void;
  fdWaitReadable(fd: number, timeoutMs: number): Promise<'readable' | 'hup' | 'timeout' | 'error'>;
  /** mount(2) on the thread pool; '' passes NULL; rejects with a node:fs-shaped error (code, syscall 'mount'). */
  fsMount(source: string, target: string, fstype: string, flags: ('bind' | 'remount' | 'rdonly' | 'nosuid' | 'nodev' | 'noexec')[], data: string): Promise<void>;
}

export function agentNative(): AgentNative {
  return loadNative<AgentNative>();
}
