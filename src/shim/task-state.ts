/**
 * The lifecycle of the shim's tasks and exec processes, and the record of each. Every call into the guest
 * that changes a task (start, pause, resume) passes through an in-flight state, so an exit reported while
 * the call is awaited wins: the call's completion leaves the task stopped, with its exit status.
 */
import type { OciProcess } from '../common/oci-spec.js';
import { transition, type Lifecycle, type PauseCycleEvent } from '../common/lifecycle.js';
import type { FifoStdio, StdioPaths } from './fifo-stdio.js';
import { TaskStatus } from './protocol/types.js';

export type TaskState =
  /** The init while its container is being made in the guest (no pid yet). */
  | { readonly status: 'creating' }
  /** Created in the guest (the init), or, for an exec, only known to the shim: `process` waits for Start. */
  | { readonly status: 'created'; readonly process?: OciProcess }
  | { readonly status: 'starting'; readonly process?: OciProcess }
  | { readonly status: 'running' }
  | { readonly status: 'pausing' }
  | { readonly status: 'paused' }
  | { readonly status: 'resuming' }
  | { readonly status: 'stopped'; readonly exitStatus: number; readonly exitedAt: Date };

export type TaskEvent =
  | PauseCycleEvent
  | { readonly type: 'exit'; readonly exitStatus: number; readonly exitedAt: Date };

const stopped = (_: unknown, e: { exitStatus: number; exitedAt: Date }): TaskState => ({ status: 'stopped', exitStatus: e.exitStatus, exitedAt: e.exitedAt });
const unchanged = <S>(s: S): S => s;

export const taskLifecycle: Lifecycle<TaskState, TaskEvent> = {
  name: 'task',
  edges: {
    // An exit here is a Delete that came while the guest was still making the container: the Create fails.
    creating: { created: () => ({ status: 'created' }), exit: stopped },
    created: { start: (s) => ({ status: 'starting', process: s.process }), exit: stopped },
    starting: { started: () => ({ status: 'running' }), failed: (s) => ({ status: 'created', process: s.process }), exit: stopped },
    running: { pause: () => ({ status: 'pausing' }), exit: stopped },
    pausing: { paused: () => ({ status: 'paused' }), failed: () => ({ status: 'running' }), exit: stopped },
    paused: { resume: () => ({ status: 'resuming' }), exit: stopped },
    resuming: { resumed: () => ({ status: 'running' }), failed: () => ({ status: 'paused' }), exit: stopped },
    // The exit won the race against the call in flight: its completion changes nothing.
    stopped: { started: unchanged, paused: unchanged, resumed: unchanged, failed: unchanged },
  },
};

/** What containerd's State reports: an operation in flight shows as the state it started from (pausing excepted). */
const STATUS: Record<TaskState['status'], TaskStatus> = {
  creating: TaskStatus.CREATED,
  created: TaskStatus.CREATED,
  starting: TaskStatus.CREATED,
  running: TaskStatus.RUNNING,
  pausing: TaskStatus.PAUSING,
  paused: TaskStatus.PAUSED,
  resuming: TaskStatus.PAUSED,
  stopped: TaskStatus.STOPPED,
};

export interface Proc {
  readonly containerId: string;
  readonly execId: string;
  pid: number;
  state: TaskState;
  /** Resolves when the state becomes stopped. */
  readonly exited: Promise<void>;
  stdio: StdioPaths;
  io: FifoStdio | undefined;
  /** Opens once the start event went out, so an exit event can never overtake it. */
  readonly startGate: Promise<void>;
  openGate(): void;
  /** Takes `event` through the lifecycle; a refused one throws IllegalTransitionError (kind 'precondition'). */
  step(event: TaskEvent): TaskState;
  status(): TaskStatus;
  /** The exit status, 0 before the exit. */
  exitStatus(): number;
  exitedAt(): Date | undefined;
}

export function newProc(containerId: string, execId: string, stdio: StdioPaths, state: TaskState): Proc {
  let resolveExit: () => void = () => undefined;
  let openGate: () => void = () => undefined;
  const p: Proc = {
    containerId,
    execId,
    pid: 0,
    state,
    exited: new Promise<void>((r) => (resolveExit = r)),
    stdio,
    io: undefined,
    startGate: new Promise<void>((r) => (openGate = r)),
    openGate: () => openGate(),
    step(event) {
      p.state = transition(taskLifecycle, p.state, event, execId ? `${containerId} exec ${execId}` : containerId);
      if (p.state.status === 'stopped') resolveExit();
      return p.state;
    },
    status: () => STATUS[p.state.status],
    exitStatus: () => (p.state.status === 'stopped' ? p.state.exitStatus : 0),
    exitedAt: () => (p.state.status === 'stopped' ? p.state.exitedAt : undefined),
  };
  return p;
}

/**
 * Runs a guest call between its request and completion edges; a failed call takes the failure edge, so the
 * task is never left in the in-flight state. Returns the state the task ended in (stopped when the exit won).
 */
export async function inFlight<T>(p: Proc, request: 'start' | 'pause' | 'resume', done: 'started' | 'paused' | 'resumed', call: () => Promise<T>): Promise<{ value: T; state: TaskState }> {
  p.step({ type: request });
  let value: T;
  try {
    value = await call();
  } catch (err) {
    p.step({ type: 'failed' });
    throw err;
  }
  return { value, state: p.step({ type: done }) };
}
