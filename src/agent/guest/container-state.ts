/**
 * The lifecycles of the agent's containers and of their processes (the init and each exec), and the records
 * that hold them. Operations that await crun (start, pause, resume) pass through an in-flight state, so the
 * init's exit, which can arrive during the await, lands on a state that knows an operation is pending: the
 * operation's completion then leaves the stopped container stopped.
 */
import { transition, type Lifecycle, type PauseCycleEvent } from '../../common/lifecycle.js';
import type { WaitResult } from '../protocol/process.js';
import type { ProcessIo } from './process-io.js';

/** The wait result of a process whose exit the agent could not observe (it outlived an earlier agent). */
export const EXIT_UNKNOWN: WaitResult = { exitStatus: 255, signal: 0, oomKilled: false };

export type ProcessState =
  /** An exec whose `crun exec` has not told its pid yet (its id is reserved); the init while its container is made. */
  | { readonly status: 'starting' }
  | { readonly status: 'running'; readonly pid: number }
  | { readonly status: 'exited'; readonly pid: number; readonly exit: WaitResult };

export type ProcessEvent = { readonly type: 'started'; readonly pid: number } | { readonly type: 'exit'; readonly exit: WaitResult };

export const processLifecycle: Lifecycle<ProcessState, ProcessEvent> = {
  name: 'process',
  edges: {
    starting: { started: (_, e) => ({ status: 'running', pid: e.pid }) },
    running: { exit: (s, e) => ({ status: 'exited', pid: s.pid, exit: e.exit }) },
    exited: {},
  },
};

export type ContainerState =
  /** The bundle is being made and `crun create` runs; the id is taken. */
  | { readonly status: 'creating' }
  | { readonly status: 'created' }
  | { readonly status: 'starting' }
  | { readonly status: 'running' }
  | { readonly status: 'pausing' }
  | { readonly status: 'paused' }
  | { readonly status: 'resuming' }
  | { readonly status: 'stopped'; readonly exit: WaitResult }
  /** Gone for callers; its cgroup, crun state and bundle are being cleaned up, and a new container of the same id waits for that. */
  | { readonly status: 'removing'; readonly cleanup: Promise<void> };

export type ContainerEvent =
  | PauseCycleEvent
  | { readonly type: 'exit'; readonly exit: WaitResult }
  | { readonly type: 'remove'; readonly cleanup: Promise<void> };

const stopped = (_: unknown, e: { exit: WaitResult }): ContainerState => ({ status: 'stopped', exit: e.exit });
const removing = (_: unknown, e: { cleanup: Promise<void> }): ContainerState => ({ status: 'removing', cleanup: e.cleanup });
const unchanged = <S>(s: S): S => s;

export const containerLifecycle: Lifecycle<ContainerState, ContainerEvent> = {
  name: 'container',
  edges: {
    creating: { created: () => ({ status: 'created' }) },
    created: { start: () => ({ status: 'starting' }), exit: stopped, remove: removing },
    starting: { started: () => ({ status: 'running' }), failed: () => ({ status: 'created' }), exit: stopped },
    running: { pause: () => ({ status: 'pausing' }), exit: stopped, remove: removing },
    pausing: { paused: () => ({ status: 'paused' }), failed: () => ({ status: 'running' }), exit: stopped },
    paused: { resume: () => ({ status: 'resuming' }), exit: stopped, remove: removing },
    resuming: { resumed: () => ({ status: 'running' }), failed: () => ({ status: 'paused' }), exit: stopped },
    // The exit won the race against the operation in flight: its completion changes nothing.
    stopped: { started: unchanged, paused: unchanged, resumed: unchanged, failed: unchanged, remove: removing },
    // A forced remove gives up waiting for the exit after a while; the exit may still come.
    removing: { exit: unchanged },
  },
};

export interface Proc {
  execId: string;
  state: ProcessState;
  io: ProcessIo;
  /** Settles with the exit; a sync point for waiters, the state says whether it happened. */
  exit: Promise<WaitResult>;
  /** The cgroup's oom_kill count when the process started: a higher count at exit means an OOM kill. */
  oomBaseline: number;
}

export interface Container {
  id: string;
  bundle: string;
  cgroupDir: string;
  state: ContainerState;
  init: Proc;
  execs: Map<string, Proc>;
  oomKills: number;
  hasPoststartHooks: boolean;
  hasPoststopHooks: boolean;
  /** Serializes operations on one container (start/pause/remove racing each other). */
  busy: Promise<unknown>;
}

/** The process's pid, or 0 before crun told it. */
export function pidOf(p: Proc): number {
  return p.state.status === 'starting' ? 0 : p.state.pid;
}

/** A refused edge is an IllegalTransitionError of kind 'precondition': the host gets FAILED_PRECONDITION. */
export function stepContainer(c: Container, event: ContainerEvent): ContainerState {
  return (c.state = transition(containerLifecycle, c.state, event, c.id));
}

export function stepProcess(p: Proc, event: ProcessEvent): ProcessState {
  return (p.state = transition(processLifecycle, p.state, event, p.execId || 'init'));
}

/**
 * Runs a crun operation between its request and completion edges; a failed call takes the failure edge, so
 * the container is never left in the in-flight state.
 */
export async function inFlight(c: Container, request: 'start' | 'pause' | 'resume', done: 'started' | 'paused' | 'resumed', op: () => Promise<void>): Promise<void> {
  stepContainer(c, { type: request });
  try {
    await op();
  } catch (err) {
    stepContainer(c, { type: 'failed' });
    throw err;
  }
  stepContainer(c, { type: done });
}
