/** What the agent's API says about a container's processes, in the terms both sides use, and their wire form. */
import type { StdioMode__Output } from './generated/vrun/agent/v1/StdioMode.js';

/** How a process's stdio is wired: separate pipes, or one pseudo-terminal (stdout carries its output). */
export type StdioKind = 'pipes' | 'terminal';

/** A StdioKind as the client sends it. */
export const STDIO_WIRE = { pipes: 'STDIO_MODE_PIPES', terminal: 'STDIO_MODE_TERMINAL' } as const satisfies Record<StdioKind, StdioMode__Output>;

/** The StdioKind a request names (unspecified means pipes). */
export function stdioKind(mode: StdioMode__Output): StdioKind {
  return mode === 'STDIO_MODE_TERMINAL' ? 'terminal' : 'pipes';
}

/** How a process ended (WaitProcess). */
export interface WaitResult {
  /** Exit code, or 128+signal when killed by a signal. */
  exitStatus: number;
  /** The signal that killed the process, 0 if it exited by itself. */
  signal: number;
  /** The container's cgroup recorded an OOM kill while the process ran. */
  oomKilled: boolean;
}
